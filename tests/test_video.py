"""Video in, anime video out (`twingan.video`), on clips the tests write themselves.

Uses the tiny random checkpoint, so the faces are noise; the tests check the file (MP4, H.264,
every frame, the size, the sound), the limits and their messages, the progress callback, that a
face's colours are decided once, and that box smoothing lowers the flicker on a still face.
"""

from __future__ import annotations

import shutil

import av
import numpy as np
import pytest

from clips import flicker, read_frames, sound_peak, still_frames, write_clip
from conftest import ASTRONAUT
from twingan.faces import NoFaceError
from twingan.pipeline import AUTO, KEEP, TranslationPipeline
from twingan.tracking import Detection, FaceTracker, match, smooth_box
from twingan.video import VideoError, output_size, translate_video

FPS = 12


@pytest.fixture(scope="module")
def pipeline(tiny_checkpoints):
    return TranslationPipeline.load(tiny_checkpoints.twingan, device="cpu", tagger=None,
                                    hair_classifier=tiny_checkpoints.hair)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """12 frames (1 s) of the astronaut with sensor noise and 1 px shake, and a 440 Hz tone (AAC)."""
    return write_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", still_frames(12, noise=3, shake=1), FPS)


def face_box(pipeline, frame):
    return pipeline.detect(frame)[0].box


def test_output_is_h264_mp4_with_every_frame_and_the_sound(pipeline, clip, tmp_path):
    result = translate_video(pipeline, clip, tmp_path / "out.mp4", hair="red")
    with av.open(str(result.path)) as out:
        assert "mp4" in out.format.name.split(",")
        video = out.streams.video[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert len(out.streams.audio) == 1 and out.streams.audio[0].codec_context.name == "aac"
    frames, source = read_frames(result.path), read_frames(clip)
    assert len(frames) == len(source) == 12 and frames[0].shape == source[0].shape == (240, 320, 3)
    assert (result.frames, result.faces, result.size, result.audio) == (12, 1, (320, 240), True)
    assert result.seconds == pytest.approx(1.0) and result.fps == pytest.approx(FPS)
    seconds, peak = sound_peak(result.path)
    assert seconds == pytest.approx(1.0, abs=0.1) and peak == pytest.approx(440, abs=5)
    # Every frame's face is replaced; the frame around it is the source's (up to the H.264 round trip).
    x0, y0, x1, y1 = (int(v) for v in face_box(pipeline, source[0]))
    for out, src in zip(frames, source):
        face = np.abs(out[y0 + 10:y1 - 10, x0 + 10:x1 - 10].astype(float) - src[y0 + 10:y1 - 10, x0 + 10:x1 - 10])
        corner = np.abs(out[:, :30].astype(float) - src[:, :30])
        assert face.mean() > 20 and corner.mean() < 3


def test_other_sound_is_reencoded_to_aac(pipeline, tmp_path):
    src = write_clip(tmp_path / "clip.webm", still_frames(6), FPS, sound="libopus", tone=660.0, codec="libvpx")
    result = translate_video(pipeline, src, tmp_path / "out.mp4", hair=AUTO)
    with av.open(str(result.path)) as out:
        assert out.streams.video[0].codec_context.name == "h264"
        assert out.streams.audio[0].codec_context.name == "aac"
    seconds, peak = sound_peak(result.path)
    assert result.frames == 6 and seconds == pytest.approx(0.5, abs=0.1) and peak == pytest.approx(660, abs=5)


def test_clip_without_sound(pipeline, tmp_path):
    src = write_clip(tmp_path / "silent.mp4", still_frames(4), FPS, sound=None)
    result = translate_video(pipeline, src, tmp_path / "out.mp4", hair=AUTO)
    with av.open(str(result.path)) as out:
        assert not out.streams.audio and out.streams.video[0].frames == 4
    assert result.frames == 4 and not result.audio


def test_length_limit_has_a_message_and_leaves_no_file(pipeline, clip, tmp_path):
    with pytest.raises(VideoError, match=r"The video is 1\.0 s long; at most 0\.5 s can be translated"):
        translate_video(pipeline, clip, tmp_path / "out.mp4", max_seconds=0.5)
    assert not (tmp_path / "out.mp4").exists()
    assert translate_video(pipeline, clip, tmp_path / "out.mp4", hair=AUTO, max_seconds=1).frames == 12


def _wav(path):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


@pytest.mark.parametrize("name, make, message", [
    ("notes.mp4", lambda p: p.write_text("this is not a video\n"), "The file is not a video, or it is corrupt"),
    ("photo.png", lambda p: shutil.copy(ASTRONAUT, p), "still image, not a video"),
    ("tone.wav", _wav, "no video stream"),
    ("cut.mp4", None, "not a video, or it is corrupt|truncated or corrupt"),
    ("missing.mp4", lambda p: None, "Cannot read the file .*missing.mp4"),
])
def test_files_that_are_not_videos_get_a_message(pipeline, clip, tmp_path, name, make, message):
    src = tmp_path / name
    if make is None:  # the first half of an MP4 whose index is at its end
        src.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    else:
        make(src)
    with pytest.raises(VideoError, match=message) as err:
        translate_video(pipeline, src, tmp_path / "out.mp4")
    assert "Traceback" not in str(err.value) and len(str(err.value)) < 200
    assert not (tmp_path / "out.mp4").exists()


def test_video_without_a_face(pipeline, tmp_path):
    grey = [np.full((96, 128, 3), 128, np.uint8)] * 3
    with pytest.raises(NoFaceError, match="No face found in the video"):
        translate_video(pipeline, write_clip(tmp_path / "grey.mp4", grey, FPS), tmp_path / "out.mp4")
    assert not (tmp_path / "out.mp4").exists()


def test_bad_control_fails_before_any_work(pipeline, clip, tmp_path):
    with pytest.raises(ValueError, match="between 0 and 1"):
        translate_video(pipeline, clip, tmp_path / "out.mp4", hair="red", hair_strength=2.0)
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_progress_callback_counts_every_frame(pipeline, clip, tmp_path):
    calls = []
    translate_video(pipeline, clip, tmp_path / "out.mp4", hair=AUTO, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 12) for i in range(1, 13)]


@pytest.mark.slow
def test_big_frames_are_downscaled_to_even_sizes_and_rotation_is_applied(pipeline, tmp_path):
    assert output_size(1920, 1080, 0) == (1280, 720)
    assert output_size(1081, 1921, 0) == (720, 1280)  # 1921 -> 1280 makes 720.4 -> 720; odd sizes go even
    assert output_size(1920, 1080, 1) == (720, 1280)  # a phone's portrait clip, stored sideways
    big = write_clip(tmp_path / "big.mp4", still_frames(2, size=(1400, 800)), FPS, sound=None)
    result = translate_video(pipeline, big, tmp_path / "big-out.mp4", hair=AUTO)
    assert result.size == (1280, 730) and read_frames(result.path)[0].shape == (730, 1280, 3)
    assert result.notes[0] == "Frames downscaled from 1400x800 to 1280x730."
    # Stored sideways (turned a quarter clockwise), shown upright through the display rotation.
    sideways = [np.ascontiguousarray(np.rot90(f, -1)) for f in still_frames(3)]
    rotated = write_clip(tmp_path / "rotated.mp4", sideways, FPS, sound=None, rotation=90)
    result = translate_video(pipeline, rotated, tmp_path / "rotated-out.mp4", hair=AUTO)
    assert result.size == (320, 240) and result.faces == 1  # the face is found only upright


@pytest.mark.slow
def test_keep_my_hair_colour_is_read_once_per_face(pipeline, clip, tmp_path, monkeypatch):
    import twingan.pipeline

    monkeypatch.setattr(twingan.pipeline, "HAIR_MIN_CONFIDENCE", 0.0)  # the tiny classifier is never sure
    reads = []
    read_hair = pipeline.read_hair
    monkeypatch.setattr(pipeline, "read_hair", lambda faces: reads.append(len(faces)) or read_hair(faces))
    result = translate_video(pipeline, clip, tmp_path / "out.mp4", hair=KEEP, detect_every=1)
    assert reads == [1] and result.faces == 1  # 12 detections, one face, one read
    assert result.notes[0].startswith("Hair colour read from the video: ")


@pytest.mark.slow
def test_smoothing_reduces_flicker_on_a_still_face(pipeline, tmp_path, monkeypatch):
    frames = still_frames(12, noise=4)  # the photo held still; only the sensor noise changes
    src = write_clip(tmp_path / "still.mp4", frames, FPS, sound=None)
    box = face_box(pipeline, frames[0])
    # The four runs decode the same frames: each frame's detection is computed once and reused (the
    # detector is deterministic, so the boxes are the ones a fresh detection gives; 31 -> 13 detections).
    detect, seen = pipeline.cropper.detect, {}

    def detect_once(image):
        key = (image.size, image.tobytes())
        if key not in seen:
            seen[key] = detect(image)
        return tuple(a.copy() for a in seen[key])

    monkeypatch.setattr(pipeline.cropper, "detect", detect_once)
    for detect_every in (1, 4):
        measured = {}
        for smooth in (False, True):
            out = translate_video(pipeline, src, tmp_path / f"{detect_every}-{smooth}.mp4", hair=AUTO,
                                  detect_every=detect_every, smooth=smooth)
            measured[smooth] = flicker(read_frames(out.path), box)
        assert measured[True] < 0.7 * measured[False], (detect_every, measured)


# ---------------------------------------------------------------------------------------------
# The tracker on its own


def test_smooth_box_averages_jitter_and_follows_a_move():
    box = (100.0, 100.0, 200.0, 200.0)
    jittered = smooth_box(box, (101.0, 99.0, 201.0, 199.0))
    assert jittered == pytest.approx((100.25, 99.75, 200.25, 199.75))  # 1% of the side: a quarter of it
    assert smooth_box(box, (130.0, 100.0, 230.0, 200.0)) == (130.0, 100.0, 230.0, 200.0)  # 30%: at once


def test_tracks_are_matched_by_overlap_and_started_once():
    a, b = (0.0, 0.0, 100.0, 100.0), (300.0, 0.0, 400.0, 100.0)
    assert match([a, b], [(302.0, 0.0, 402.0, 100.0), (1.0, 1.0, 101.0, 101.0)]) == [(0, 1), (1, 0)]
    assert match([a], [b]) == []
    started = []
    frames = iter([[a, b], [b], [], [], [], [a]])  # face a is missed, then lost, then back: a new track

    def detect(frame):
        return [Detection(box, 0.0, None) for box in next(frames)]

    tracker = FaceTracker(detect, lambda frame, d: started.append(d.box) or np.zeros(1), detect_every=1)
    shown = [[f.track for f in tracker.push(None, i)[0][2]] for i in range(6)]
    assert shown == [[0, 1], [0, 1], [0, 1], [1], [], [2]]  # a missed 3 times: dropped
    assert started == [a, b, a]


# ---------------------------------------------------------------------------------------------
# The app's Video tab through its HTTP API


@pytest.fixture(scope="module")
def client(app_server):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(app_server.url, verbose=False, download_files=str(app_server.tmp / "downloads"))


@pytest.mark.slow
def test_app_video_endpoint_returns_the_anime_mp4(client, clip):
    from gradio_client import handle_file

    video, status = client.predict(handle_file(str(clip)), api_name="/video")
    assert len(read_frames(video)) == 12 and sound_peak(video)[1] == pytest.approx(440, abs=5)
    assert status.startswith("12 frames (1.0 s at 12 frames/s), 1 face, sound kept.")


@pytest.mark.slow
def test_app_video_limits_reach_the_user(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    long = write_clip(tmp_path / "long.mp4", still_frames(21, size=(64, 64)), fps=1, sound=None)  # 21 s
    with pytest.raises(AppError, match=r"The video is 21\.0 s long; at most 20 s can be translated here"):
        client.predict(handle_file(str(long)), api_name="/video")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(AppError, match="The file is not a video"):
        client.predict(handle_file(str(tmp_path / "notes.mp4")), api_name="/video")

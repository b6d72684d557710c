"""Video in, anime video out: every frame's faces translated and pasted back, the sound kept.

`translate_video(pipeline, src, dst)` reads what FFmpeg reads (through PyAV, whose wheels carry
FFmpeg: nothing to install or download) and writes an MP4: H.264 in yuv420p at even dimensions,
with the source's sound (AAC copied as it is, any other codec re-encoded to AAC) and its timestamps.

Temporal stability. Faces are detected every `detect_every` frames and each detection is matched
to a face track by IoU (`twingan.tracking.FaceTracker`). With `smooth`, a track's box follows its
detections by an exponential moving average whose weight grows with how far the face moved (detector
jitter is averaged away, a real move is followed at once), and the frames between two detections take boxes
interpolated between them. Without it, the frames between reuse the last detected box, as the
app's live mode does. Either way a track's tag vector is fixed when the track starts: "keep my
hair colour" is read and "auto" eyes are drawn once per face, so a face keeps its colours for the
whole clip.

Limits: frames whose long side is over MAX_SIDE are downscaled before processing (the output has
the smaller size), `max_seconds` refuses longer clips, and still images, files without a video
stream and unreadable files are refused; each raises `VideoError` with a message for people.
Importing this module does no I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np
import torch
from PIL import Image

from twingan.controls import AUTO, KEEP, face_seed, hair_read_lines
from twingan.faces import FaceCrop, NoFaceError, crop_box, crop_face, paste_back
from twingan.images import MIN_SIDE, ImageError, fit, images_to_tensor
from twingan.pipeline import TranslationPipeline
from twingan.tracking import Detection, Face, FaceTracker

VideoSource = str | os.PathLike | BinaryIO
Progress = Callable[[int, int | None], None]  # (frames done, total frames or None when unknown)

MAX_SIDE = 1280  # px: longer frames are downscaled first (720p keeps faces sharp; detection and paste cost ~pixels)
DEFAULT_FPS = 30  # when the container gives no frame rate
X264_OPTIONS = {"crf": "20", "preset": "veryfast"}  # near-transparent quality; encoding stays a small part of a frame
AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_IMAGE_FORMATS = ("image2", "gif")  # demuxers of still images (plus FFmpeg's "*_pipe" image readers)


class VideoError(ImageError):
    """The input cannot be used as a video; the message says why in user words."""


@dataclass
class VideoResult:
    path: Path  # the MP4 written
    frames: int  # frames written (every frame of the source)
    seconds: float  # duration of the video
    fps: float  # average frame rate
    faces: int  # face tracks; a face lost for more than tracking.TRACK_PATIENCE detections counts again
    size: tuple[int, int] = (0, 0)  # (width, height) of the output frames
    audio: bool = False  # whether the output has the source's sound
    notes: list[str] = field(default_factory=list)  # for the status line: hair colours read, downscaling


# ---------------------------------------------------------------------------------------------
# The pipeline on frames


class _FaceWork:
    """Detection, the per-track tags and the translation of faces for one clip."""

    def __init__(self, pipeline: TranslationPipeline, hair: str, hair_strength: float, eye: str,
                 eye_strength: float):
        self.pipeline = pipeline
        self.controls = (hair, hair_strength, eye, eye_strength)
        pipeline.tag_vectors(1, *self.controls)  # a bad control fails now, before any decoding
        self.read_hair = hair == KEEP and pipeline.hair_classifier is not None
        self.hair_notes: list[tuple[str | None, str | None]] = []  # per track: (colour read, why unsure)

    def detect(self, frame: Image.Image) -> list[Detection]:
        cropper = self.pipeline.cropper
        size = fit(frame.size, cropper.detect_size)
        small = frame if size == frame.size else frame.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        boxes, _, points = cropper.detect(small)
        scale = np.array([frame.width / small.width, frame.height / small.height])
        out = []
        for face_box, pts in zip(boxes * np.tile(scale, 2), points * scale):
            box, angle = crop_box(face_box, pts, cropper.margins, cropper.align)
            context = (crop_box(face_box, pts, cropper.context_margins, cropper.align)[0]
                       if cropper.context_margins else None)
            out.append(Detection(box, angle, context))
        return out

    @torch.no_grad()
    def start(self, frame: Image.Image, d: Detection) -> torch.Tensor:
        """The tags of a new track: the controls, with the hair read from this frame for "keep" and
        "auto" eyes drawn with this frame's face as the seed."""
        probs = None
        if self.read_hair:
            res = self.pipeline.hair_classifier.config.resolution
            context = crop_face(frame, d.context_box or d.box, res, d.angle, fade_outside=False)
            names, probs, unreliable = self.pipeline.read_hair(images_to_tensor([context]))
            self.hair_notes.append((names[0], unreliable[0]))
        seed = face_seed(crop_face(frame, d.box, self.pipeline.model.config.resolution, d.angle))
        return self.pipeline.tag_vectors(1, *self.controls, keep_probs=probs, eye_seeds=[seed])[0]

    @torch.no_grad()
    def render(self, frame: Image.Image, faces: list[Face]) -> Image.Image:
        """The frame with each face translated and pasted back."""
        if not faces:
            return frame
        p = self.pipeline
        res = p.model.config.resolution
        crops = [FaceCrop(crop_face(frame, f.box, res, f.angle), f.box, None, 0.0, angle=f.angle) for f in faces]
        x = images_to_tensor([c.image for c in crops]).to(p.device, p.dtype)  # (B, 3, R, R)
        tags = torch.stack([f.tags for f in faces]).to(p.device, p.dtype) if p.conditioned else None
        out = p.model.translate(x, "human", "anime", tags)  # (B, 3, R, R)
        anime = (out.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return paste_back(frame, crops, [p.upscale(Image.fromarray(a)) for a in anime])

    def notes(self) -> list[str]:
        hair = self.controls[0]
        if hair == KEEP and self.pipeline.hair_classifier is None:
            return ['"Keep my hair colour" is unavailable (no hair classifier); the model infers it']
        return hair_read_lines(self.hair_notes, "video")


# ---------------------------------------------------------------------------------------------
# Reading and writing


def _open(src: VideoSource):
    """Open a video for reading: (container, video stream). Raises VideoError."""
    name = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
    try:
        container = av.open(name if name is not None else src, "r")
    except FileNotFoundError as e:
        raise VideoError(f"Cannot read the file {name!r}: No such file or directory") from e
    except PermissionError as e:
        raise VideoError(f"Cannot read the file {name!r}: Permission denied") from e
    except av.error.FFmpegError as e:
        raise VideoError("The file is not a video, or it is corrupt (use MP4, WebM or MOV)") from e
    fmt = container.format.name
    if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
        container.close()
        raise VideoError("The file is a still image, not a video (translate it as a photo)")
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        container.close()
        raise VideoError("The file has no video stream (is it sound only?)")
    return container, streams[0]


def _duration(container, stream) -> float | None:
    """Seconds, from the stream or else the container; None when neither knows."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _checked(items, what: str = "The video file is truncated or corrupt"):
    """Iterate over PyAV's demuxing or decoding, turning its errors into VideoError."""
    it = iter(items)
    while True:
        try:
            item = next(it)
        except StopIteration:
            return
        except av.error.FFmpegError as e:
            raise VideoError(f"{what} ({e.strerror or e})") from e
        yield item


class _Writer:
    """The output MP4. It opens at the first decoded frame, when the frame size is known; sound
    that comes before is held until then. AAC is copied as it is, other sound re-encoded to AAC."""

    def __init__(self, dst: Path, rate: Fraction, time_base: Fraction, audio_src):
        self.dst, self.rate, self.time_base, self.audio_src = dst, rate, time_base, audio_src
        self.output = self.video = self.audio = None
        self.held: list = []  # audio packets before the output opened
        self.copy = audio_src is not None and audio_src.codec_context.name == "aac"

    def open(self, width: int, height: int) -> None:
        self.output = av.open(str(self.dst), "w", format="mp4", options={"movflags": "+faststart"})
        self.video = self.output.add_stream("libx264", rate=self.rate, options=dict(X264_OPTIONS))
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.time_base = self.video.codec_context.time_base = self.time_base  # the source's timestamps
        src = self.audio_src
        if src is not None and self.copy:
            self.audio = self.output.add_stream_from_template(src)
        elif src is not None:
            rate = src.rate if src.rate in AAC_RATES else 48000
            self.audio = self.output.add_stream("aac", rate=rate, layout=src.layout.name if src.channels <= 2 else "stereo")
        for packet in self.held:
            self.sound(packet)
        self.held = []

    def frame(self, image: Image.Image, pts: int) -> None:
        frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        self.output.mux(self.video.encode(frame))

    def sound(self, packet) -> None:
        if self.output is None:
            self.held.append(packet)
        elif self.copy:
            if packet.dts is not None:  # the demuxer's empty end-of-stream packet has none
                packet.stream = self.audio
                self.output.mux(packet)
        else:
            for frame in _checked(packet.decode()):
                frame.pts = None  # the encoder counts the samples itself (AAC frames are 1024 samples)
                self.output.mux(self.audio.encode(frame))

    def finish(self) -> None:
        self.output.mux(self.video.encode(None))
        if self.audio is not None and not self.copy:
            self.output.mux(self.audio.encode(None))
        self.output.close()

    def abort(self) -> None:
        if self.output is not None:
            try:
                self.output.close()
            except av.error.FFmpegError:
                pass  # the file is removed next; the first error is the one to report
        self.dst.unlink(missing_ok=True)


def output_size(width: int, height: int, turns: int) -> tuple[int, int]:
    """(width, height) of the output frames: the stored size turned by `turns` quarter turns (phones
    store portrait clips sideways), at most MAX_SIDE on the long side, even (yuv420p)."""
    shown = (height, width) if turns % 2 else (width, height)
    w, h = fit(shown, MAX_SIDE)
    return max(2, 2 * (w // 2)), max(2, 2 * (h // 2))


def translate_video(pipeline: TranslationPipeline, src: VideoSource, dst: str | os.PathLike,
                    hair: str = KEEP, hair_strength: float = 1.0, eye: str = AUTO, eye_strength: float = 1.0,
                    max_seconds: float | None = None, progress: bool | Progress = False,
                    detect_every: int = 4, smooth: bool = True) -> VideoResult:
    """Translate every face of every frame of a video; write the result to `dst` as MP4.

    src: a path or a binary file object. The controls are the photo's (`pipeline.translate`), and
    are fixed per face for the whole clip. max_seconds: refuse longer clips (None: any length).
    progress: True for a tqdm bar, or a callback (frames done, total frames or None). detect_every,
    smooth: see the module doc. Raises VideoError (not a video, too long, too small, corrupt),
    NoFaceError (no face in any frame) and ValueError (bad control); `dst` is removed then.
    """
    work = _FaceWork(pipeline, hair, hair_strength, eye, eye_strength)
    tracker = FaceTracker(work.detect, work.start, detect_every, smooth, pipeline.cropper.max_faces)
    container, vin = _open(src)
    ain = container.streams.audio[0] if container.streams.audio else None
    rate = vin.average_rate or vin.guessed_rate or Fraction(DEFAULT_FPS)
    time_base = vin.time_base or 1 / rate
    writer = _Writer(Path(dst), rate, time_base, ain)
    bar = None
    try:
        duration = _duration(container, vin)
        if max_seconds is not None and duration is not None and round(duration, 1) > max_seconds:
            raise VideoError(f"The video is {duration:.1f} s long; at most {max_seconds:g} s can be "
                             "translated here (trim it first)")
        total = vin.frames or (round(duration * rate) if duration else None)
        bar, report = _progress(progress, total)
        vin.thread_type = "AUTO"
        step = max(1, round(1 / (rate * time_base)))  # one frame in time-base units
        first_pts = last_pts = None
        size = turns = None
        frames = 0
        notes: list[str] = []

        def write(ready) -> None:
            nonlocal frames
            for image, pts, faces in ready:
                writer.frame(work.render(image, faces), pts)
                frames += 1
                report(frames)

        for packet in _checked(container.demux(*(s for s in (vin, ain) if s is not None))):
            if packet.stream is not vin:
                writer.sound(packet)
                continue
            for frame in _checked(packet.decode()):
                pts = last_pts = _frame_pts(frame, last_pts, step)
                first_pts = pts if first_pts is None else first_pts
                if max_seconds is not None and float((pts - first_pts) * time_base) > max_seconds:
                    raise VideoError(f"The video is longer than {max_seconds:g} s, the most that can be "
                                     "translated here (trim it first)")
                if size is None:
                    size, turns, notes = _output_frame(frame)
                    writer.open(*size)
                write(tracker.push(_upright_image(frame, size, turns), pts))
        if size is None:
            raise VideoError("The video has no readable frames")
        write(tracker.flush())
        writer.finish()
        if tracker.started == 0:
            raise NoFaceError("No face found in the video")
        seconds = float((last_pts - first_pts + step) * time_base)
        return VideoResult(writer.dst, frames, seconds, frames / seconds, tracker.started, size,
                           ain is not None, notes + work.notes())
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        container.close()


def _frame_pts(frame, last_pts: int | None, step: int) -> int:
    """The frame's timestamp: one step after the last where it has none, and always after the last
    (the encoder needs strictly increasing timestamps)."""
    pts = frame.pts if frame.pts is not None else (last_pts + step if last_pts is not None else 0)
    return last_pts + 1 if last_pts is not None and pts <= last_pts else pts


def _output_frame(frame) -> tuple[tuple[int, int], int, list[str]]:
    """For a clip whose first frame is `frame`: the output (width, height), the counter-clockwise
    quarter turns that show it upright, and a note when it is downscaled. VideoError when too small."""
    turns = round(frame.rotation / 90) % 4
    shown = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    size = output_size(frame.width, frame.height, turns)
    if min(shown) < MIN_SIDE:
        raise VideoError(f"The video is too small ({shown[0]}x{shown[1]}); it needs at "
                         f"least {MIN_SIDE} px per side")
    if size != shown and max(shown) > MAX_SIDE:
        return size, turns, [f"Frames downscaled from {shown[0]}x{shown[1]} to {size[0]}x{size[1]}."]
    return size, turns, []


def _upright_image(frame, size: tuple[int, int], turns: int) -> Image.Image:
    """`frame` as an RGB image of `size` (width, height, as shown), turned upright."""
    stored = (size[1], size[0]) if turns % 2 else size
    rgb = frame.to_ndarray(format="rgb24", width=stored[0], height=stored[1])
    return Image.fromarray(np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb)


def _progress(progress: bool | Progress, total: int | None):
    """(tqdm bar or None, report(frames done))."""
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="frame", desc="video", leave=False)
        return bar, lambda done: bar.update(1)
    if callable(progress):
        return None, lambda done: progress(done, total)
    return None, lambda done: None

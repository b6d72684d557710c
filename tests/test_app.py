"""The app through its HTTP API (gradio_client against a local server) and the pipeline behind it.

Uses a tiny random checkpoint, so outputs are noise; the tests check the plumbing: faces found,
shapes, controls that change the output, and clear errors that leave the server serving.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ASTRONAUT, ROOT, data_root
from samples import crowd, encode, oriented_jpeg, png_header, webcam_frame
from twingan.pipeline import AUTO, KEEP

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server.url, verbose=False, download_files=str(app_server.tmp / "downloads"))


def translate(client, photo, hair=AUTO, hair_strength=1.0, eye=AUTO, eye_strength=1.0, reference=None,
              paste=False, max_faces=4, upscale=True, plain_background=True):
    return client.predict(handle_file(str(photo)), hair, hair_strength, eye, eye_strength,
                          handle_file(str(reference)) if reference else None, paste, max_faces, upscale,
                          plain_background, api_name="/translate")


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_translate_photo_returns_crop_and_portrait_as_png(client):
    gallery, pasted, info = translate(client, ASTRONAUT, paste=True)
    assert len(gallery) == 2, gallery  # one face: its crop, then its anime portrait
    assert [item["caption"] for item in gallery] == ["Face 1: photo", "Face 1: anime"]
    for item in gallery:
        image = Image.open(item["image"])
        assert image.format == "PNG" and image.size == (256, 256)
    assert Image.open(pasted).size == (512, 512)  # the photo, with the face pasted back
    assert info.startswith("1 face translated")


def test_changing_hair_colour_changes_the_portrait(client):
    blonde = pixels(translate(client, ASTRONAUT, hair="blonde")[0][1]["image"])
    blue = pixels(translate(client, ASTRONAUT, hair="blue")[0][1]["image"])
    again = pixels(translate(client, ASTRONAUT, hair="blonde")[0][1]["image"])
    assert np.abs(blonde - blue).mean() > 0.1
    assert np.array_equal(blonde, again)  # deterministic for the same controls


def test_keep_my_hair_colour_reports_the_colour_read(client, app_server, monkeypatch):
    import twingan.pipeline

    monkeypatch.setattr(twingan.pipeline, "HAIR_MIN_CONFIDENCE", 0.0)  # the tiny classifier is never sure
    _, _, info = translate(client, ASTRONAUT, hair=KEEP)
    assert "Hair colour read from the photo:" in info and "not read reliably" not in info


def test_unsure_or_greyscale_hair_reads_are_reported_and_still_condition_the_portrait(client, app_server, tmp_path,
                                                                                       monkeypatch):
    import twingan.pipeline

    pipeline = app_server.pipeline
    crops = pipeline.detect(ASTRONAUT)
    hair = pipeline.vocab.hair_slice
    unsure = pipeline.translate_crops(crops, KEEP)[0]  # the random classifier: top probability < 0.5
    assert unsure.hair_unreliable.startswith("low confidence")
    assert sum(unsure.tags[hair]) == pytest.approx(1.0, abs=1e-4) and max(unsure.tags[hair]) < 0.5  # a hedge
    monkeypatch.setattr(twingan.pipeline, "HAIR_MIN_CONFIDENCE", 0.0)
    sure = pipeline.translate_crops(crops, KEEP)[0]
    assert sure.hair_unreliable is None and sure.tags[hair] == pytest.approx(unsure.tags[hair])
    _astronaut().convert("L").save(tmp_path / "grey.png")
    grey = pipeline.translate(tmp_path / "grey.png", KEEP).faces[0]
    assert grey.hair_unreliable == "greyscale photo" and sum(grey.tags[hair]) == pytest.approx(1.0, abs=1e-4)
    _, _, info = translate(client, tmp_path / "grey.png", hair=KEEP)
    assert "Hair colour not read reliably (greyscale photo): the portrait mixes the likely colours" in info


def test_photo_without_a_face_gets_the_message(client, tmp_path):
    y, x = np.mgrid[0:256, 0:256]
    Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8)).save(tmp_path / "gradient.png")
    with pytest.raises(AppError, match="No face found in the image"):
        translate(client, tmp_path / "gradient.png")


def test_non_image_upload_is_refused_and_the_server_keeps_serving(client, tmp_path):
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(AppError, match="not an image"):
        translate(client, tmp_path / "notes.png")
    gallery, _, _ = translate(client, ASTRONAUT)
    assert len(gallery) == 2


def test_shortest_api_call_needs_only_the_photo(client):
    gallery, pasted, info = client.predict(handle_file(str(ASTRONAUT)), api_name="/translate")
    assert len(gallery) == 2 and pasted is None and info.startswith("1 face translated")
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/translate"]["parameters"]
    assert [p["parameter_has_default"] for p in params] == [False] + [True] * 9
    # The newest last, so older positional calls still work.
    assert [p["parameter_name"] for p in params[-2:]] == ["upscale", "plain_background"]


def test_upscale_input_turns_the_anime_upscaler_off(client):
    sharpened = translate(client, ASTRONAUT)[0][1]["image"]
    resized = translate(client, ASTRONAUT, upscale=False)[0][1]["image"]
    assert Image.open(sharpened).size == Image.open(resized).size == (256, 256)
    assert np.abs(pixels(sharpened) - pixels(resized)).mean() > 0.5


def test_plain_background_input_switches_the_segmenter(client, app_server, monkeypatch):
    asked = []
    original = app_server.pipeline.translate_crops

    def record(crops, *args, **kwargs):
        asked.append(kwargs["background"])
        return original(crops, *args, **kwargs)

    monkeypatch.setattr(app_server.pipeline, "translate_crops", record)
    plain = translate(client, ASTRONAUT)[0][1]["image"]
    photo = translate(client, ASTRONAUT, plain_background=False)[0][1]["image"]
    assert asked == ["plain", "photo"]
    assert np.abs(pixels(plain) - pixels(photo)).mean() > 0.5


# ---------------------------------------------------------------------------------------------
# Bad inputs through the server: each gets a clear message or a result, and the server keeps serving

def _astronaut() -> Image.Image:
    return Image.open(ASTRONAUT).convert("RGB")


def _animated_gif() -> bytes:
    frames = [_astronaut(), _astronaut().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _iso_box(brand: bytes) -> bytes:
    """Just the 'ftyp' box of an ISO media file: what makes a file HEIC or AVIF, with no image data."""
    return (24).to_bytes(4, "big") + b"ftyp" + brand + b"\0\0\0\0" + brand + b"mif1"


CORPUS = {  # name: (file name, bytes factory, expected message (a regex) or None for a result)
    "truncated-jpeg": ("cut.jpg", lambda: encode(_astronaut(), "JPEG")[:20_000], "truncated or corrupt"),
    "png-bomb": ("bomb.png", lambda: png_header(20000, 20000, b"\0" * 64), "too large"),
    "cmyk-jpeg": ("cmyk.jpg", lambda: encode(_astronaut().convert("CMYK"), "JPEG"), None),
    "16-bit-png": ("deep.png", lambda: encode(Image.fromarray(
        np.asarray(_astronaut().convert("L"), np.uint16) * 257), "PNG"), None),
    "palette-png-transparent": ("palette.png", lambda: encode(_astronaut().quantize(64), "PNG", transparency=0), None),
    "animated-gif": ("animated.gif", _animated_gif, None),
    "tiff": ("photo.tiff", lambda: encode(_astronaut(), "TIFF"), None),
    "heic": ("photo.heic", lambda: _iso_box(b"heic"), "not an image|unsupported|corrupt"),
    "avif": ("photo.avif", lambda: _iso_box(b"avif"), "not an image|unsupported|corrupt"),
    "panorama-30000x10": ("wide.png", lambda: encode(Image.new("RGB", (30000, 10), "gray"), "PNG"), "too small"),
    "1x1": ("dot.png", lambda: encode(Image.new("RGB", (1, 1), "gray"), "PNG"), "too small"),
    "face-cut-by-border": ("cut-face.png", lambda: encode(_astronaut().crop((200, 0, 512, 400)), "PNG"), None),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_bad_input_corpus(client, tmp_path, case):
    name, make, message = CORPUS[case]
    (tmp_path / name).write_bytes(make())
    if message is None:
        gallery, _, info = translate(client, tmp_path / name, paste=True)
        assert len(gallery) == 2 and info.startswith("1 face translated")
    else:
        with pytest.raises(AppError, match=message) as err:
            translate(client, tmp_path / name)
        assert "Traceback" not in str(err.value) and len(str(err.value)) < 200
    assert len(translate(client, ASTRONAUT)[0]) == 2  # the server keeps serving


def test_crowd_of_50_faces_uses_the_largest_4_cheaply(client, app_server, tmp_path, monkeypatch):
    """A big group photo costs what a selfie does: detection on a small copy, 4 faces translated.
    (The time it takes is printed by `python -m benchmarks.app_latency`.)"""
    photo, squares = crowd()
    (tmp_path / "crowd.jpg").write_bytes(encode(photo, "JPEG", quality=90))
    gallery, _, info = translate(client, tmp_path / "crowd.jpg")
    assert len(gallery) == 8 and info.startswith("4 faces translated")
    pipeline = app_server.pipeline
    detected, translated = [], []
    detect, translate_crops = pipeline.cropper.detect, pipeline.translate_crops
    monkeypatch.setattr(pipeline.cropper, "detect", lambda image: detected.append(image.size) or detect(image))
    monkeypatch.setattr(pipeline, "translate_crops",
                        lambda crops, *a, **k: translated.append(len(crops)) or translate_crops(crops, *a, **k))
    faces = pipeline.translate(tmp_path / "crowd.jpg", AUTO).faces
    assert detected == [(pipeline.cropper.detect_size, pipeline.cropper.detect_size // 2)]  # 2500x1250 shrunk
    assert translated == [4]
    for face in faces:  # each face box lies in one of the 4 largest faces
        x0, y0, x1, y1 = face.box
        assert any(sx0 - 40 < (x0 + x1) / 2 < sx1 + 40 and sy0 - 40 < (y0 + y1) / 2 < sy1 + 40
                   for sx0, sy0, sx1, sy1 in squares[:4]), (face.box, squares[:4])


@pytest.mark.parametrize("paste", [False, True], ids=["no-paste", "paste"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_applied_once(app_server, orientation, paste):
    """A phone photo stored sideways (or mirrored) is turned upright exactly once, paste or not."""
    upright = webcam_frame()
    expected = app_server.pipeline.detect(upright)[0].box
    result = app_server.pipeline.translate(oriented_jpeg(upright, orientation), AUTO, paste=paste)
    assert len(result.faces) == 1
    assert np.allclose(result.faces[0].box, expected, atol=4.0)  # the face where the upright photo has it
    if paste:
        assert result.pasted.size == (640, 480)


def test_sideways_phone_photo_with_paste_through_the_api(client, tmp_path):
    (tmp_path / "phone.jpg").write_bytes(oriented_jpeg(webcam_frame(), 6))
    gallery, pasted, _ = translate(client, tmp_path / "phone.jpg", paste=True)
    assert len(gallery) == 2 and Image.open(pasted).size == (640, 480)


def test_reference_image_sets_the_colour_controls(client, app_server):
    hair, hair_strength, eye, eye_strength, info = client.predict(
        handle_file(str(ASTRONAUT)), api_name="/reference_tags")
    vocab = app_server.pipeline.vocab
    assert hair in vocab.hair and eye in vocab.eye
    assert hair_strength == eye_strength == 1.0
    assert info.startswith("Reference:")


def test_reference_image_adds_its_binary_tags(client, app_server, tmp_path):
    pipeline = app_server.pipeline
    binary = pipeline.vocab.binary_slice
    reference = pipeline.reference_tags(ASTRONAUT)["probs"][binary]
    plain = pipeline.translate(ASTRONAUT, AUTO).faces[0]
    referenced = pipeline.translate(ASTRONAUT, AUTO, reference=ASTRONAUT).faces[0]
    assert not any(plain.tags[binary]) and torch.allclose(torch.tensor(referenced.tags[binary]), reference)
    assert np.abs(pixels_of(plain.anime) - pixels_of(referenced.anime)).mean() > 0.1
    with_ref = pixels(translate(client, ASTRONAUT, reference=ASTRONAUT)[0][1]["image"])
    without = pixels(translate(client, ASTRONAUT)[0][1]["image"])
    assert np.abs(with_ref - without).mean() > 0.1


def test_lookalikes_finds_the_same_face_among_humans(client):
    anime, human = client.predict(handle_file(str(ASTRONAUT)), api_name="/lookalikes")
    assert len(anime) == 3 and len(human) == 2
    assert human[0]["caption"].startswith("astronaut-face.png")  # its own crop is nearest


def test_api_endpoints_are_named(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/translate", "/reference_tags", "/lookalikes", "/live", "/video", "/reverse"} <= names


def test_anime_to_human_returns_the_centre_square_and_a_portrait(client, tmp_path):
    wide = Image.new("RGB", (300, 200), "#3a6fd8")
    wide.paste(Image.new("RGB", (200, 200), "#f29ac0"), (50, 0))  # the centre square is pink, the sides blue
    wide.save(tmp_path / "anime.png")
    gallery = client.predict(handle_file(str(tmp_path / "anime.png")), api_name="/reverse")
    assert [item["caption"] for item in gallery] == ["anime (centre square)", "human"]
    square, human = (Image.open(item["image"]) for item in gallery)
    assert square.size == human.size == (256, 256) and human.format == "PNG"
    assert np.abs(pixels(gallery[0]["image"]) - np.array([242, 154, 192])).max() <= 2  # no blue side left
    (tmp_path / "notes.png").write_text("this is not an image\n")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(tmp_path / "notes.png")), api_name="/reverse")


def test_a_checkpoint_trained_one_way_has_no_anime_to_human(tiny_checkpoints, tmp_path):
    import shutil

    import app
    from twingan.pipeline import TranslationPipeline

    one_way = shutil.copytree(tiny_checkpoints.twingan, tmp_path / "one-way")
    (one_way / "training.json").unlink()  # an older export: trained human -> anime only
    pipeline = TranslationPipeline.load(one_way, device="cpu", tagger=None, hair_classifier=None, upscaler=None)
    assert not pipeline.translates_back
    with pytest.raises(ValueError, match="not trained to translate anime faces"):
        pipeline.to_human(ASTRONAUT)
    config = app.create_demo(pipeline).config
    tab = next(c for c in config["components"] if c["props"].get("label") == "Anime to human")
    assert tab["props"]["visible"] is False
    reverse = next(d for d in config["dependencies"] if d["api_name"] == "reverse")
    assert reverse["api_visibility"] == "private"


def test_real_selfie_from_shared_data(client):
    folder = data_root() / "selfie2anime" / "testA"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder} (set TWINGAN_DATA)")
    gallery, _, _ = translate(client, sorted(folder.glob("*.jpg"))[0])
    assert len(gallery) >= 2


# ---------------------------------------------------------------------------------------------
# The pipeline without the server


def test_tag_vector_strength_blends_each_colour_group_from_every_colour_alike(app_server):
    """Strength 0 and "auto" ask for every colour of the group at 1/n, for the hair and the eyes
    alike: an all-zero group (never asked in training) draws a blotchy face."""
    p = app_server.pipeline
    v = p.vocab
    n, n_eye, red, blue = len(v.hair), len(v.eye), v.hair_index("red"), v.eye_index("blue")
    full = p.tag_vectors(2, "red", 1.0, "blue", 1.0)
    assert full.shape == (2, v.dim)
    assert full[0, red] == 1.0 and full[0, v.hair_slice].sum() == 1.0
    assert full[0, v.eye_slice.start + blue] == 1.0 and full[0, v.eye_slice].sum() == 1.0
    half_eye = p.tag_vectors(1, "red", 1.0, "blue", 0.5)[0, v.eye_slice]
    assert float(half_eye[blue]) == pytest.approx(0.5 + 0.5 / n_eye) and float(half_eye.sum()) == pytest.approx(1.0)
    uniform, uniform_eye = torch.full((1, n), 1 / n), torch.full((1, n_eye), 1 / n_eye)
    auto = p.tag_vectors(1, AUTO)
    assert torch.allclose(auto[:, v.hair_slice], uniform) and torch.allclose(auto[:, v.eye_slice], uniform_eye)
    assert torch.allclose(p.tag_vectors(1, "red", 0.0)[:, v.hair_slice], uniform)  # strength 0: the model settles
    assert torch.allclose(p.tag_vectors(1, "red", 1.0, "blue", 0.0)[:, v.eye_slice], uniform_eye)
    half = p.tag_vectors(1, "red", 0.5)[0, v.hair_slice]
    assert float(half[red]) == pytest.approx(0.5 + 0.5 / n) and float(half.sum()) == pytest.approx(1.0)
    keep = torch.tensor([[0.0] * (n - 1) + [1.0]])
    assert torch.allclose(p.tag_vectors(1, KEEP, 0.5, keep_probs=keep)[:, v.hair_slice], keep * 0.5 + 0.5 / n)
    assert torch.allclose(p.tag_vectors(1, KEEP)[:, v.hair_slice], uniform)  # keep without a read: as auto
    with pytest.raises(ValueError, match="unknown hair colour 'plaid'"):
        p.tag_vectors(1, "plaid")
    with pytest.raises(ValueError, match="between 0 and 1"):
        p.tag_vectors(1, "red", 1.5)


@pytest.fixture(scope="module")
def eye_counts_pipeline(tiny_checkpoints, tmp_path_factory):
    """The tiny TwinGAN with eye colour counts in its config: red hair only ever has green eyes,
    blonde hair blue eyes 3 times in 4 and brown eyes once (every other hair colour: none counted)."""
    import shutil

    from train.helpers.eye_prior import write_counts
    from twingan.pipeline import TranslationPipeline
    from twingan.vocab import DEFAULT_VOCAB as v

    folder = tmp_path_factory.mktemp("eyes") / "twingan"
    shutil.copytree(tiny_checkpoints.twingan, folder)
    counts = [[0] * len(v.eye) for _ in v.hair]
    counts[v.hair_index("red")][v.eye_index("green")] = 5
    counts[v.hair_index("blonde")][v.eye_index("blue")] = 30
    counts[v.hair_index("blonde")][v.eye_index("brown")] = 10
    write_counts(folder, tuple(map(tuple, counts)))
    return TranslationPipeline.load(folder, device="cpu", tagger=None, hair_classifier=None, upscaler=None)


def test_auto_eyes_are_one_colour_drawn_from_the_hair_colours_counts(eye_counts_pipeline):
    p = eye_counts_pipeline
    v = p.vocab
    eyes = lambda tags: [v.eye[int(i)] for i in tags[:, v.eye_slice].argmax(1)]  # noqa: E731
    red = p.tag_vectors(50, "red", eye=AUTO, eye_seeds=list(range(50)))
    assert set(eyes(red)) == {"green"} and torch.all(red[:, v.eye_slice].sum(1) == 1)  # one-hot, not a mix
    blonde = eyes(p.tag_vectors(400, "blonde", eye=AUTO, eye_seeds=list(range(400))))
    assert set(blonde) == {"blue", "brown"} and 0.68 < blonde.count("blue") / 400 < 0.82
    assert eyes(p.tag_vectors(1, "blonde", eye_seeds=[7])) * 5 == eyes(p.tag_vectors(5, "blonde", eye_seeds=[7] * 5))
    # A hair read that mixes colours mixes their rows; one with no counts at all gets every colour alike.
    mixed = torch.zeros(200, len(v.hair))
    mixed[:, [v.hair_index("red"), v.hair_index("blonde")]] = 0.5
    drawn = eyes(p.tag_vectors(200, KEEP, keep_probs=mixed, eye_seeds=list(range(200))))
    assert set(drawn) == {"green", "blue", "brown"} and 0.35 < drawn.count("green") / 200 < 0.65
    assert len(set(eyes(p.tag_vectors(200, "black", eye_seeds=list(range(200)))))) == len(v.eye)
    half = p.tag_vectors(1, "red", eye=AUTO, eye_strength=0.5)[0, v.eye_slice]  # strength blends as for a chosen colour
    assert float(half[v.eye_index("green")]) == pytest.approx(0.5 + 0.5 / len(v.eye))
    assert eyes(p.tag_vectors(1, "red", eye="purple")) == ["purple"]  # a chosen colour is not drawn
    with pytest.raises(ValueError, match="need 2 eye seeds"):
        p.tag_vectors(2, "red", eye_seeds=[1])


def test_auto_eyes_follow_the_photo_and_stay_on_a_live_face(eye_counts_pipeline):
    p = eye_counts_pipeline
    first, again = (p.translate(ASTRONAUT, "blonde").faces[0] for _ in range(2))
    assert first.eye_drawn in ("blue", "brown") and again.eye_drawn == first.eye_drawn
    assert first.tags[len(p.vocab.hair) + p.vocab.eye_index(first.eye_drawn)] == 1.0
    assert p.translate(ASTRONAUT, "blonde", eye="green").faces[0].eye_drawn is None
    assert p.translate(ASTRONAUT, "blonde", eye_strength=0.0).faces[0].eye_drawn is None  # every colour alike
    import app

    translate, _ = app.translate_handlers(p)
    assert f"Eye colour the model chose: {first.eye_drawn}." in translate(str(ASTRONAUT), "blonde")[2]
    assert "Eye colour the model chose" not in translate(str(ASTRONAUT), "blonde", eye="green")[2]
    from twingan.pipeline import LIVE_REDETECT_EVERY

    frame = np.asarray(webcam_frame())
    _, track = p.translate_frame(frame, "blonde")
    seed, ages = track.eye_seed, []
    brighter = np.clip(frame.astype(int) + 3, 0, 255).astype(np.uint8)  # other pixels: another face_seed
    for _ in range(LIVE_REDETECT_EVERY):  # past a new detection: the face keeps its first frame's seed
        _, track = p.translate_frame(brighter, "blonde", track=track)
        ages.append(track.age)
    assert ages[-1] == 0 and track.eye_seed == seed


def test_eye_counts_need_a_row_per_hair_colour_and_a_column_per_eye_colour():
    from twingan.config import TwinGANConfig

    with pytest.raises(ValueError, match="must be 12 rows"):
        TwinGANConfig(eye_given_hair=((1.0,) * 10,) * 11)
    with pytest.raises(ValueError, match="none may be negative"):
        TwinGANConfig(eye_given_hair=((-1.0,) + (1.0,) * 9,) * 12)


def test_gallery_index_is_cached_and_reused(app_server, tmp_path):
    from twingan.lookalikes import LatentIndex

    cache = app_server.tmp / "index-cache"
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")
    gallery = app_server.pipeline.index.root
    calls = []

    def encode(images, domain):  # what the index asks of an encoder: (B, D) unit vectors
        calls.append((len(images), images[0].size, domain))
        return torch.nn.functional.normalize(torch.rand(len(images), 8), dim=1)

    key = app_server.pipeline.checkpoint_fingerprint() + ":32"
    again = LatentIndex.build(gallery, encode, key, 32, cache)
    assert calls == []  # the pipeline's cached index is found by the same key
    assert torch.equal(again.latents["anime"], app_server.pipeline.index.latents["anime"])
    Image.new("RGB", (96, 96), "white").save(gallery / "anime" / "new.png")  # content changed: new key
    try:
        bigger = LatentIndex.build(gallery, encode, key, 32, cache)
        other_model = LatentIndex.build(gallery, encode, "other-weights:32", 32, cache)
    finally:
        (gallery / "anime" / "new.png").unlink()
    assert len(bigger.files["anime"]) == 4 and len(list(cache.iterdir())) == 6
    assert calls[:2] == [(4, (32, 32), "anime"), (2, (32, 32), "human")]
    assert len(calls) == 4 and not torch.equal(other_model.latents["anime"], bigger.latents["anime"])


def test_portraits_are_framed_for_the_whole_head_in_photos_and_live(app_server, tiny_checkpoints):
    from twingan.faces import PORTRAIT_MARGINS, TRAIN_A_MARGINS
    from twingan.pipeline import TranslationPipeline

    p = app_server.pipeline
    assert p.cropper.margins == PORTRAIT_MARGINS and p.live_cropper.margins == PORTRAIT_MARGINS
    tight = TranslationPipeline.load(tiny_checkpoints.twingan, device="cpu", tagger=None, hair_classifier=None,
                                     upscaler=None, framing=TRAIN_A_MARGINS)
    loose_box, tight_box = p.translate(ASTRONAUT, AUTO).faces[0].box, tight.translate(ASTRONAUT, AUTO).faces[0].box
    assert (loose_box[2] - loose_box[0]) / (tight_box[2] - tight_box[0]) == pytest.approx(1.94 / 1.56, rel=0.05)


def test_missing_optional_models_only_disable_their_feature(tiny_checkpoints, tmp_path):
    from twingan.pipeline import TranslationPipeline

    p = TranslationPipeline.load(tiny_checkpoints.twingan, device="cpu", tagger=tmp_path / "none",
                                 hair_classifier=None)
    assert p.tagger is None and KEEP not in p.hair_choices and p.default_hair == AUTO
    assert any("Reference images are off" in n for n in p.notes)
    with pytest.raises(ValueError, match="Reference images are disabled"):
        p.reference_tags(ASTRONAUT)
    assert len(p.translate(ASTRONAUT, hair=AUTO).faces) == 1


def test_missing_checkpoint_exits_with_one_line(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "app.py"), "--checkpoint", str(tmp_path / "missing")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == f"app.py: checkpoint folder {tmp_path / 'missing'} does not exist"


def test_live_frame_translates_the_largest_face(app_server):
    frame = webcam_frame()
    out, track = app_server.pipeline.translate_frame(np.asarray(frame), "red", 1.0, AUTO, 1.0)
    assert out.size == (256, 256) and out.mode == "RGB" and track.age == 0
    again, track = app_server.pipeline.translate_frame(np.asarray(frame), "red", 1.0, AUTO, 1.0, track)
    assert track.age == 1  # the box was reused, not detected again
    assert np.abs(pixels_of(again) - pixels_of(out)).mean() < 2  # same place, same portrait


def pixels_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)

"""The app through its HTTP API (gradio_client against a local server) and the pipeline behind it.

Uses a tiny random checkpoint, so outputs are noise; the tests check the plumbing: faces found,
shapes, controls that change the output, and clear errors that leave the server serving.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ASTRONAUT, ROOT, data_root
from twingan.pipeline import AUTO, KEEP

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server.url, verbose=False, download_files=str(app_server.tmp / "downloads"))


def translate(client, photo, hair=AUTO, hair_strength=1.0, eye=AUTO, eye_strength=1.0, reference=None,
              paste=False, max_faces=4):
    return client.predict(handle_file(str(photo)), hair, hair_strength, eye, eye_strength,
                          handle_file(str(reference)) if reference else None, paste, max_faces,
                          api_name="/translate")


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


def test_keep_my_hair_colour_reports_the_colour_read(client):
    _, _, info = translate(client, ASTRONAUT, hair=KEEP)
    assert "Hair colour read from the photo:" in info


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


def test_too_large_image_is_refused(client, tmp_path):
    # A PNG that claims 20000 x 20000 pixels: refused from its header, never decoded.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(AppError, match="too large"):
        translate(client, tmp_path / "bomb.png")


def test_reference_image_sets_the_colour_controls(client, app_server):
    hair, hair_strength, eye, eye_strength, info = client.predict(
        handle_file(str(ASTRONAUT)), api_name="/reference_tags")
    vocab = app_server.pipeline.vocab
    assert hair in vocab.hair and eye in vocab.eye
    assert hair_strength == eye_strength == 1.0
    assert info.startswith("Reference:")


def test_lookalikes_finds_the_same_face_among_humans(client):
    anime, human = client.predict(handle_file(str(ASTRONAUT)), api_name="/lookalikes")
    assert len(anime) == 3 and len(human) == 2
    assert human[0]["caption"].startswith("astronaut-face.png")  # its own crop is nearest


def test_api_endpoints_are_named(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/translate", "/reference_tags", "/lookalikes", "/live"} <= names


def test_real_selfie_from_shared_data(client):
    folder = data_root() / "selfie2anime" / "testA"
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder} (set TWINGAN_DATA)")
    gallery, _, _ = translate(client, sorted(folder.glob("*.jpg"))[0])
    assert len(gallery) >= 2


# ---------------------------------------------------------------------------------------------
# The pipeline without the server


def test_tag_vector_strength_blends_from_unconditioned_to_the_colour(app_server):
    p = app_server.pipeline
    v = p.vocab
    red = v.hair_index("red")
    full = p.tag_vectors(2, "red", 1.0, "blue", 0.5)
    assert full.shape == (2, v.dim)
    assert full[0, red] == 1.0 and full[0, v.hair_slice].sum() == 1.0
    assert full[0, v.eye_slice.start + v.eye_index("blue")] == 0.5
    assert p.tag_vectors(1, "red", 0.0, AUTO, 1.0).abs().sum() == 0  # strength 0: the model infers
    keep = torch.tensor([[0.0] * (len(v.hair) - 1) + [1.0]])
    assert torch.equal(p.tag_vectors(1, KEEP, 0.5, keep_probs=keep)[:, v.hair_slice], keep * 0.5)
    with pytest.raises(ValueError, match="unknown hair colour 'plaid'"):
        p.tag_vectors(1, "plaid")
    with pytest.raises(ValueError, match="between 0 and 1"):
        p.tag_vectors(1, "red", 1.5)


def test_gallery_index_is_cached_and_reused(app_server, tmp_path):
    from twingan.pipeline import LatentIndex

    cache = app_server.tmp / "index-cache"
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 2 and files[0].endswith(".json") and files[1].endswith(".safetensors")
    gallery = app_server.pipeline.index.root
    again = LatentIndex.build(app_server.pipeline, gallery, cache)
    assert torch.equal(again.latents["anime"], app_server.pipeline.index.latents["anime"])
    Image.new("RGB", (96, 96), "white").save(gallery / "anime" / "new.png")  # content changed: new key
    try:
        bigger = LatentIndex.build(app_server.pipeline, gallery, cache)
    finally:
        (gallery / "anime" / "new.png").unlink()
    assert len(bigger.files["anime"]) == 4 and len(list(cache.iterdir())) == 4


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
    frame = Image.new("RGB", (640, 480), (40, 40, 40))
    frame.paste(Image.open(ASTRONAUT).convert("RGB").resize((480, 480)), (80, 0))
    out, track = app_server.pipeline.translate_frame(np.asarray(frame), "red", 1.0, AUTO, 1.0)
    assert out.size == (256, 256) and out.mode == "RGB" and track.age == 0
    again, track = app_server.pipeline.translate_frame(np.asarray(frame), "red", 1.0, AUTO, 1.0, track)
    assert track.age == 1  # the box was reused, not detected again
    assert np.abs(pixels_of(again) - pixels_of(out)).mean() < 2  # same place, same portrait


def pixels_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float32)

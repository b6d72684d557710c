"""The portrait segmenter behind the app's plain background: the network, where the detector's face
lies in a crop, the compositing, the pipeline's switch, and the training helper end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from twingan import save_pretrained
from twingan.checkpoint import load_pretrained
from twingan.faces import OUTSIDE_GREY, PORTRAIT_MARGINS, crop_box, crop_face
from twingan.segmenter import PortraitSegmenter, SegmenterConfig, face_guard, face_in_crop, plain_background

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "portrait-segmenter"
ASTRONAUT = ROOT / "examples" / "astronaut.png"


def test_masks_come_back_at_the_input_size_in_0_1():
    model = PortraitSegmenter(SegmenterConfig(resolution=32, channels=(4, 8, 8))).eval()
    for size in (32, 64, 50):
        mask = model(torch.rand(2, 3, size, size))
        assert mask.shape == (2, 1, size, size)
        assert 0 <= mask.min() and mask.max() <= 1
    with pytest.raises(ValueError, match="shape"):
        model.logits(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match="divisible"):
        PortraitSegmenter(SegmenterConfig(resolution=8, channels=(4, 8, 8, 8)))


@pytest.mark.parametrize("tilt", [0.0, 25.0, -40.0])
def test_face_in_crop_finds_the_face_where_crop_face_puts_it(tilt):
    """A bright disk at the face box's centre, cropped (and turned, for a tilted face) as the app
    crops it, lands where `face_in_crop` says the face's centre is."""
    photo = Image.new("RGB", (500, 500), (40, 40, 40))
    cx, cy = 260.0, 230.0
    ImageDraw.Draw(photo).ellipse((cx - 12, cy - 12, cx + 12, cy + 12), fill=(255, 255, 255))
    face_box = (cx - 40, cy - 50, cx + 40, cy + 50)
    a = np.radians(tilt)
    eyes = np.array([[cx - 20 * np.cos(a), cy - 20 * np.sin(a)], [cx + 20 * np.cos(a), cy + 20 * np.sin(a)]])
    landmarks = np.vstack([eyes, [[cx, cy]] * 3])
    box, angle = crop_box(face_box, landmarks, PORTRAIT_MARGINS, align=True)
    assert angle == pytest.approx(tilt)
    crop = np.asarray(crop_face(photo, box, 200, angle, fade_outside=False).convert("L"), dtype=np.float64)
    ys, xs = np.nonzero(crop > 128)
    x0, y0, x1, y1 = face_in_crop(box, face_box, angle)
    assert (xs.mean() + 0.5) / 200 == pytest.approx((x0 + x1) / 2, abs=0.01)
    assert (ys.mean() + 0.5) / 200 == pytest.approx((y0 + y1) / 2, abs=0.01)
    # Upright, the face sits above the crop's centre (the frame shows more below the chin than above).
    assert (y0 + y1) / 2 < 0.5
    assert (x1 - x0) == pytest.approx(80 / (box[2] - box[0]))


def test_the_face_guard_keeps_the_face_and_nothing_far_from_it():
    guard = face_guard(100, (0.3, 0.2, 0.7, 0.7))
    assert guard[45, 50] == 1 and guard[22, 50] == 1  # the centre, just inside the top
    assert guard[5, 5] == 0 and guard[95, 50] == 0 and guard[45, 95] == 0
    assert 0 < guard[45, 71] < 1  # just outside the side: the soft edge


def test_plain_background_keeps_the_person_and_greys_the_rest():
    images = torch.rand(1, 3, 8, 8)
    person = torch.zeros(1, 1, 8, 8)
    person[..., 2:6, 2:6] = 1
    out = plain_background(images, person, 0.9)
    assert torch.equal(out[..., 2:6, 2:6], images[..., 2:6, 2:6])
    assert torch.allclose(out[..., 0, :], torch.full_like(out[..., 0, :], 0.9))


def _pipeline(tiny_checkpoints, segmenter):
    from twingan.pipeline import TranslationPipeline

    return TranslationPipeline.load(tiny_checkpoints.twingan, device="cpu", tagger=None, hair_classifier=None,
                                    upscaler=None, segmenter=segmenter)


def test_the_plain_background_reaches_the_model_and_keeps_the_face(tiny_checkpoints, tmp_path):
    """With a segmenter that finds no person at all, the model sees OUTSIDE_GREY everywhere but the
    detector's face; PHOTO (and a pipeline without a segmenter) pass the crop on unchanged."""
    from twingan.pipeline import PHOTO, PLAIN

    blind = PortraitSegmenter(SegmenterConfig(resolution=32, channels=(4, 8)))
    torch.nn.init.zeros_(blind.head.weight)
    torch.nn.init.constant_(blind.head.bias, -30.0)  # every pixel background
    with_seg = _pipeline(tiny_checkpoints, save_pretrained(blind, tmp_path / "blind"))
    without = _pipeline(tiny_checkpoints, tmp_path / "none")
    assert any("plain background is off" in n for n in without.notes)
    seen = []
    for p in (with_seg, without):
        translate = p.model.translate
        p.model.translate = lambda x, *a, _t=translate: (seen.append(x.clone()), _t(x, *a))[1]
    crop = with_seg.detect(ASTRONAUT)[0]
    with_seg.translate_crops([crop], background=PLAIN)
    with_seg.translate_crops([crop], background=PHOTO)
    without.translate_crops([crop], background=PLAIN)
    plain, photo, unsegmented = seen
    assert torch.equal(photo, unsegmented)
    grey = OUTSIDE_GREY / 255
    res = plain.shape[-1]
    assert torch.allclose(plain[0, :, :2, :2], torch.full((3, 2, 2), grey), atol=1e-6)  # a corner
    x0, y0, x1, y1 = face_in_crop(crop.box, crop.face_box, crop.angle)
    cx, cy = int((x0 + x1) / 2 * res), int((y0 + y1) / 2 * res)
    assert torch.equal(plain[0, :, cy, cx], photo[0, :, cy, cx])  # the face itself stays
    with pytest.raises(ValueError, match="background"):
        with_seg.translate_crops([crop], background="transparent")


def test_pasted_back_with_the_plain_background_the_photo_stays_around_the_face(tiny_checkpoints, tmp_path):
    """The same blind segmenter: each portrait carries the person's mask (the face only) at display
    size, and the pasted photo keeps its own pixels in the crop box's corners, where PHOTO pastes
    the portrait's."""
    from twingan.images import load_image
    from twingan.pipeline import PHOTO

    blind = PortraitSegmenter(SegmenterConfig(resolution=32, channels=(4, 8)))
    torch.nn.init.zeros_(blind.head.weight)
    torch.nn.init.constant_(blind.head.bias, -30.0)
    p = _pipeline(tiny_checkpoints, save_pretrained(blind, tmp_path / "blind"))
    photo = load_image(ASTRONAUT)
    plain = p.translate(photo, paste=True)
    whole = p.translate(photo, paste=True, background=PHOTO)
    face = plain.faces[0]
    assert face.person.mode == "L" and face.person.size == face.anime.size
    assert whole.faces[0].person is None
    x0, y0, x1, y1 = face.box
    inset = 0.12 * (x1 - x0)  # inside the feathered border, outside the face
    for x, y in ((x0 + inset, y0 + inset), (x1 - inset, y0 + inset)):
        at = (int(x), int(y))
        assert plain.pasted.getpixel(at) == photo.getpixel(at)
        assert whole.pasted.getpixel(at) != photo.getpixel(at)


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="checkpoints/portrait-segmenter is not bundled")
def test_the_shipped_segmenter_separates_the_astronaut_from_the_backdrop():
    """The public-domain example's crop: the face and the suit are the person; the backdrop beside
    the hair (the upper left corner) and beside the neck (the right edge) is not."""
    from twingan.pipeline import TranslationPipeline

    p = TranslationPipeline.load(device="cpu", tagger=None, hair_classifier=None, upscaler=None)
    crop = p.detect(ASTRONAUT)[0]
    x = torch.from_numpy(np.asarray(crop.image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    mask = p.segmenter(x)[0, 0]
    n = mask.shape[-1]
    x0, y0, x1, y1 = (int(v * n) for v in face_in_crop(crop.box, crop.face_box, crop.angle))
    assert mask[y0:y1, x0:x1].mean() > 0.9  # the face
    assert mask[int(0.95 * n):, n // 2 - 10:n // 2 + 10].mean() > 0.8  # the suit under the chin
    assert mask[:n // 8, :n // 8].mean() < 0.2 and mask[n // 2:3 * n // 4, -n // 8:].mean() < 0.2
    assert 0.3 < mask.mean() < 0.8


def test_the_training_helper_fits_and_exports_a_loadable_segmenter(tmp_path):
    """`fit` on a tiny run folder (crops with a bright disk as the person, the disk as the mask):
    a checkpoint that loads, and a report of its agreement with the held-out masks."""
    from train.helpers import segmenter as helper

    run = tmp_path / "run"
    (run / "crops").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names, masks = [], []
    for i in range(40):
        img = Image.fromarray(rng.integers(0, 90, (64, 64, 3), dtype=np.uint8))
        m = Image.new("L", (64, 64), 0)
        box = tuple(int(v) for v in (rng.integers(8, 20), rng.integers(8, 20), rng.integers(40, 56), rng.integers(40, 56)))
        ImageDraw.Draw(img).ellipse(box, fill=(230, 200, 180))
        ImageDraw.Draw(m).ellipse(box, fill=255)
        names.append(f"selfie_{i:03d}.jpg")
        img.save(run / "crops" / names[-1], quality=95)
        masks.append(np.asarray(m.resize((32, 32), Image.BILINEAR)))
    np.savez_compressed(run / "masks.npz", names=np.array(names), masks=np.stack(masks))
    config = SegmenterConfig(resolution=32, channels=(8, 16))
    report = helper.fit(run, tmp_path / "out", minutes=0.15, batch=8, lr=3e-3, threads=1, seed=0, config=config)
    model = load_pretrained(PortraitSegmenter, tmp_path / "out")
    assert model.config == config
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == report
    assert report["held_out_crops"] == 2 and report["train_crops"] == 38 and report["steps"] > 10
    assert report["held_out"]["iou"] > 0.6  # a disk on noise is learnt in seconds
    # Trained on from that export (its config, whatever `config` says), at a learning rate of 0:
    # the conv weights come back as they were (batch-norm statistics still move), the agreement too.
    again = helper.fit(run, tmp_path / "again", minutes=0.02, batch=8, lr=0.0, threads=1, seed=1,
                       config=SegmenterConfig(resolution=64), init=tmp_path / "out")
    assert again["init"] == str(tmp_path / "out") and again["held_out"]["iou"] > 0.6
    reloaded = load_pretrained(PortraitSegmenter, tmp_path / "again")
    assert reloaded.config == config
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), reloaded.parameters()))


def test_the_label_step_says_what_it_needs(tmp_path, capsys):
    from train.helpers import segmenter as helper

    try:
        import mediapipe  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="pip install mediapipe"):
            helper.label(tmp_path, 32)
    (tmp_path / "crops").mkdir()
    with pytest.raises(SystemExit, match="no crops|pip install mediapipe"):
        helper.label(tmp_path, 32)
    with pytest.raises(SystemExit):
        helper.main(["fit", str(ROOT / "runs" / "x"), "--out", str(tmp_path)])
    assert "outside" in capsys.readouterr().err


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="checkpoints/portrait-segmenter is not bundled")
def test_the_background_figure_shows_the_grey_the_model_sees(tmp_path):
    """`figures --background` on the astronaut: the model's input is light grey where the backdrop
    shows (beside the hair and the neck), the photo in the face's middle; the two portraits differ."""
    from train.evaluation.figures import LABEL, main

    out = tmp_path / "background.png"
    assert main(["--background", "--photos", str(ASTRONAUT), "--out", str(out)]) == 0
    sheet = np.asarray(Image.open(out), dtype=np.int16)[LABEL:]
    assert sheet.shape[:2] == (256, 4 * 256)  # photo, portrait before, the model's input, portrait now
    photo, before, seen, now = (sheet[:, k * 256:(k + 1) * 256] for k in range(4))
    for backdrop in (np.s_[:32, :32], np.s_[128:192, -32:]):
        assert np.abs(seen[backdrop] - OUTSIDE_GREY).mean() < 6
    assert np.abs(seen[110:150, 110:150] - photo[110:150, 110:150]).mean() < 6
    assert np.abs(before - now).mean() > 2


def test_training_faces_prepared_as_the_app_are_what_its_model_sees(tiny_checkpoints, tmp_path):
    """`prepare_faces(app=...)` writes the app's model inputs (the plain background laid in), at the
    model's resolution; without `app`, the cropper's crops at the asked resolution."""
    from train.helpers.prepare_faces import prepare_faces
    from twingan.pipeline import PLAIN

    blind = PortraitSegmenter(SegmenterConfig(resolution=32, channels=(4, 8)))
    torch.nn.init.zeros_(blind.head.weight)
    torch.nn.init.constant_(blind.head.bias, -30.0)
    app = _pipeline(tiny_checkpoints, save_pretrained(blind, tmp_path / "blind"))
    counts = prepare_faces(ASTRONAUT.parent, tmp_path / "app", names=[ASTRONAUT.name], app=app)
    assert counts == {"photos": 1, "faces": 1, "no_face": 0, "unreadable": 0}
    written = torch.from_numpy(np.asarray(Image.open(tmp_path / "app" / "astronaut_0.png"))).permute(2, 0, 1)
    expected = app.model_inputs(app.detect(ASTRONAUT), PLAIN)[0][0]
    assert written.shape == (3, 32, 32)
    assert (written.float() / 255 - expected).abs().max() <= 0.5 / 255 + 1e-6
    assert written[:, 0, 0].tolist() == [OUTSIDE_GREY] * 3  # the backdrop is gone

    prepare_faces(ASTRONAUT.parent, tmp_path / "raw", resolution=48, names=[ASTRONAUT.name])
    raw = Image.open(tmp_path / "raw" / "astronaut_0.png")
    assert raw.size == (48, 48) and raw.getpixel((0, 0)) != (OUTSIDE_GREY,) * 3


def test_preparing_a_celeba_split_needs_celeba_numbered_files(tmp_path, capsys):
    from train.helpers.prepare_faces import main

    with pytest.raises(SystemExit):
        main([str(ASTRONAUT.parent), str(tmp_path / "out"), "--split", "train"])
    assert "CelebA-numbered" in capsys.readouterr().err

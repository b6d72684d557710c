"""Tests for twingan.faces: input handling, crop geometry, detection on real photos, paste back."""

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from conftest import data_root
from samples import STORE_FOR_ORIENTATION, encode, oriented_jpeg, png_header
from twingan.faces import (
    CELEBA_MARGINS,
    ORIGINAL_MARGINS,
    OUTSIDE_GREY,
    PORTRAIT_MARGINS,
    TRAIN_A_MARGINS,
    FaceCropper,
    ImageError,
    NoFaceError,
    crop_box,
    crop_face,
    load_image,
    paste_back,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = data_root()
PHOTOS = DATA / "photos"
# True face counts, counted by eye.
FACE_COUNTS = {
    "multiface.jpg": 6,
    "two_people.jpg": 2,
    "biden.jpg": 1,
    "obama-240p.jpg": 1,
    "obama-1080p.jpg": 1,
}
needs_photos = pytest.mark.skipif(
    not PHOTOS.is_dir(), reason=f"real photos not found at {PHOTOS} (set TWINGAN_DATA)"
)


@pytest.fixture(scope="module")
def cropper():
    torch.set_num_threads(1)
    return FaceCropper(max_faces=10)


def halves(size=(200, 100), left=(255, 0, 0), right=(0, 0, 255)) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


# --- import ---------------------------------------------------------------------------------


def test_import_builds_no_detector():
    code = "import sys, twingan.faces; assert 'facenet_pytorch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.stdout == "ok\n", out.stderr
    assert FaceCropper()._mtcnn is None


# --- bad inputs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source, message",
    [
        (b"\x00\x01garbage" * 100, "not an image"),
        (b"", "not an image"),
        (png_header(50_000, 50_000), "too large"),  # past PIL's own bomb limit
        (png_header(12_000, 9_000), "too large"),  # 108 MP: past ours, under PIL's
        (encode(Image.new("RGB", (200, 40)), "PNG"), "too small"),
    ],
    ids=["garbage", "empty", "bomb", "bomb-108mp", "tiny"],
)
def test_bad_bytes_raise_image_error(source, message):
    with pytest.raises(ImageError, match=message):
        load_image(source)


def test_truncated_jpeg():
    data = encode(Image.effect_noise((256, 256), 60).convert("RGB"), "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        load_image(data[: len(data) // 2])


def test_text_file_and_missing_file(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a photo\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(text)
    with pytest.raises(ImageError, match="Cannot read"):
        load_image(tmp_path / "missing.jpg")


def test_tiny_array_and_bad_array():
    with pytest.raises(ImageError, match="too small"):
        load_image(np.zeros((63, 500, 3), np.uint8))
    with pytest.raises(ImageError, match="must be"):
        load_image(np.zeros((100, 100, 2), np.uint8))


def test_cropper_rejects_bad_input_before_detection(cropper):
    with pytest.raises(ImageError, match="not an image"):
        cropper(b"hello world")


# --- modes and formats ----------------------------------------------------------------------


def test_rgba_transparent_areas_become_white():
    rgba = Image.new("RGBA", (100, 100), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (50, 0, 100, 100))
    out = load_image(encode(rgba, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((10, 10)) == (255, 255, 255)
    assert out.getpixel((90, 10)) == (0, 0, 255)


def test_la_and_p_with_transparency():
    la = Image.new("LA", (100, 100), (0, 0))
    la.paste((0, 255), (50, 0, 100, 100))
    out = load_image(encode(la, "PNG"))
    assert out.getpixel((10, 10)) == (255, 255, 255) and out.getpixel((90, 10)) == (0, 0, 0)

    p = Image.new("P", (100, 100), 0)
    p.putpalette([10, 200, 30] + [0, 0, 0] * 255)
    p.paste(1, (50, 0, 100, 100))
    out = load_image(encode(p, "PNG", transparency=0))
    assert out.getpixel((10, 10)) == (255, 255, 255) and out.getpixel((90, 10)) == (0, 0, 0)


def test_cmyk_jpeg():
    cmyk = Image.new("CMYK", (100, 100), (255, 0, 0, 0))  # pure cyan
    r, g, b = load_image(encode(cmyk, "JPEG", quality=95)).getpixel((50, 50))
    assert r < 30 and g > 225 and b > 225


def test_16_bit_grayscale_is_scaled_not_clipped():
    a = np.zeros((100, 100), np.uint16)
    a[:, 50:] = 32896  # 128 * 257
    a[:, 75:] = 65535
    out = load_image(encode(Image.fromarray(a), "PNG"))
    assert out.getpixel((10, 0)) == (0, 0, 0)
    assert out.getpixel((60, 0)) == (128, 128, 128)
    assert out.getpixel((90, 0)) == (255, 255, 255)
    assert load_image(a).getpixel((60, 0)) == (128, 128, 128)  # uint16 array too


def test_grayscale_and_float_array():
    assert load_image(encode(Image.new("L", (80, 80), 77), "PNG")).getpixel((5, 5)) == (77, 77, 77)
    assert load_image(np.full((80, 80, 3), 0.5, np.float32)).getpixel((5, 5)) == (128, 128, 128)


@pytest.mark.parametrize("orientation", sorted(STORE_FOR_ORIENTATION))
def test_each_exif_orientation_is_applied_exactly_once(orientation):
    upright = halves((200, 100))  # red left, blue right
    first = load_image(oriented_jpeg(upright, orientation))
    assert first.size == (200, 100)
    assert first.getpixel((20, 50))[0] > 200 and first.getpixel((180, 50))[2] > 200
    again = load_image(first)  # a decoded photo is upright: loading it again must not turn it
    assert np.array_equal(np.asarray(again), np.asarray(first))
    assert np.array_equal(np.asarray(load_image(first, max_side=100)), np.asarray(first.resize((100, 50), Image.BICUBIC)))


def test_max_side_decodes_large_jpegs_at_a_reduced_scale():
    photo = encode(halves((1600, 1200)), "JPEG", quality=90)
    small = load_image(photo, max_side=800)
    assert small.size == (800, 600) and small.getpixel((50, 300))[0] > 200
    assert load_image(photo, max_side=5000).size == (1600, 1200)  # never enlarged


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to show
    data = encode(halves(), "JPEG", exif=exif, quality=95)
    for source in (data, io.BytesIO(data), Image.open(io.BytesIO(data))):
        out = load_image(source)
        assert out.size == (100, 200)
        top, bottom = out.getpixel((50, 20)), out.getpixel((50, 180))
        assert top[0] > 200 and top[2] < 50  # the stored left (red) half is now on top
        assert bottom[2] > 200 and bottom[0] < 50


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp():
    out = load_image(encode(halves(), "WEBP", quality=90))
    assert out.size == (200, 100) and out.getpixel((20, 50))[0] > 200


# --- no face and fallback -------------------------------------------------------------------


def test_no_face(cropper):
    gray = Image.new("RGB", (300, 200), (128, 128, 128))
    with pytest.raises(NoFaceError, match="^No face found in the image$"):
        cropper(gray)
    assert issubclass(NoFaceError, ImageError)


def test_fallback_center_crop(cropper):
    gray = Image.new("RGB", (300, 200), (128, 128, 128))
    (crop,) = cropper(encode(gray, "PNG"), fallback_center_crop=True)
    assert crop.box == (50.0, 0.0, 250.0, 200.0)
    assert crop.face_box is None and crop.confidence == 0.0
    assert crop.image.size == (128, 128)


def test_context_crop_frames_the_hair_above_the_face(cropper):
    hair = FaceCropper(64, context_margins=CELEBA_MARGINS)
    hair._mtcnn = cropper.mtcnn
    astronaut = ROOT / "examples" / "astronaut.png"
    (face,) = hair(astronaut)
    x0, y0, x1, y1 = face.context_box
    fx0, fy0, fx1, fy1 = face.face_box
    assert x0 < fx0 and fx1 < x1 and y0 < fy0 - 0.3 * (fy1 - fy0)  # room for the hair above the face box
    assert face.box[1] > y0 and face.context.size == face.image.size == (64, 64)
    assert FaceCropper(64)._mtcnn is None and cropper(astronaut)[0].context is None  # off by default


def test_a_tight_upload_fades_the_model_crop_but_not_the_hair_frame(cropper):
    """The astronaut cut to a training selfie's framing is smaller than both frames: past its edges
    the model's crop fades towards OUTSIDE_GREY, while the hair classifier's frame repeats the edge
    pixels as it did when the classifier was measured."""
    hair = FaceCropper(64, margins=PORTRAIT_MARGINS, context_margins=CELEBA_MARGINS)  # the app's frames
    hair._mtcnn = cropper.mtcnn
    photo = load_image(ROOT / "examples" / "astronaut.png")
    (face,) = hair(photo)
    photo = photo.crop(tuple(round(v) for v in crop_box(face.face_box, face.landmarks, TRAIN_A_MARGINS)[0]))
    (face,) = hair(photo)
    image = np.asarray(face.image, dtype=np.int16)
    edged = np.asarray(crop_face(photo, face.box, 64, fade_outside=False), dtype=np.int16)
    assert np.abs(image[:3] - OUTSIDE_GREY).mean() < 0.85 * np.abs(edged[:3] - OUTSIDE_GREY).mean()  # the top rows
    assert np.array_equal(image[24:40, 24:40], edged[24:40, 24:40])
    plain = crop_face(photo, face.context_box, 64, fade_outside=False)
    assert np.array_equal(np.asarray(face.context), np.asarray(plain))


# --- crop geometry --------------------------------------------------------------------------


def test_crop_box_margins():
    box, angle = crop_box((0, 0, 100, 100), margins=ORIGINAL_MARGINS)
    # grown box: x -50..150 (200 wide), y -100..130 (230 high) -> square of 230 on its centre
    assert box == pytest.approx((-65, -100, 165, 130))
    assert angle == 0.0
    box, _ = crop_box((0, 0, 50, 84), margins=TRAIN_A_MARGINS)  # tall box: height sets the side
    assert box[3] - box[1] == pytest.approx(84 * 1.14) and box[1] == pytest.approx(0)


def test_portrait_framing_shows_more_around_the_face_than_the_training_selfies():
    """The app's framing: the face 0.80 as wide in its frame as in trainA's, the frame reaching
    further above the detector's box (the whole head), less far than the anime set's."""
    from twingan.faces import ANIME_MARGINS

    face = (0, 0, 64, 84)  # the median MTCNN box of a trainA selfie, in % of its frame
    sides = {m: crop_box(face, margins=m)[0] for m in (TRAIN_A_MARGINS, PORTRAIT_MARGINS, ANIME_MARGINS)}
    width = {m: b[2] - b[0] for m, b in sides.items()}
    assert width[TRAIN_A_MARGINS] == pytest.approx(100, abs=3)  # the margins' fit: trainA's own frame
    assert 64 / width[PORTRAIT_MARGINS] == pytest.approx(0.80 * 64 / width[TRAIN_A_MARGINS], rel=0.02)
    assert width[TRAIN_A_MARGINS] < width[PORTRAIT_MARGINS] < width[ANIME_MARGINS]
    assert sides[TRAIN_A_MARGINS][1] > sides[PORTRAIT_MARGINS][1] > sides[ANIME_MARGINS][1]


def test_crop_box_align_levels_eyes():
    eyes_tilted = np.array([[40, 40], [60, 60], [50, 55], [45, 70], [55, 75]], float)
    _, angle = crop_box((20, 20, 80, 100), eyes_tilted, align=True)
    assert angle == pytest.approx(45.0)
    _, angle = crop_box((20, 20, 80, 100), eyes_tilted, align=False)
    assert angle == 0.0


def test_crop_face_whole_image_and_padding():
    image = halves((200, 200))
    out = crop_face(image, (0, 0, 200, 200), 64)
    assert out.size == (64, 64)
    assert out.getpixel((5, 32))[0] > 250 and out.getpixel((58, 32))[2] > 250
    # A box reaching far right of the photo repeats the last (blue) column there...
    out = crop_face(image, (100, 0, 400, 300), 64, fade_outside=False)
    assert out.getpixel((60, 60)) == (0, 0, 255)
    # ...or fades from it to the light grey, unchanged inside the photo.
    faded = crop_face(image, (100, 0, 400, 300), 64)
    assert faded.getpixel((60, 60)) == (OUTSIDE_GREY,) * 3
    assert faded.getpixel((10, 30)) == out.getpixel((10, 30))
    edge = [faded.getpixel((x, 30)) for x in range(22, 32)]  # just past the photo's edge at x = 21.3
    assert edge[0][2] > 200 and edge[-1][0] > 100 and edge[-1][2] < 250  # blue, turning grey


def test_crop_face_fades_where_a_rotated_crop_leaves_the_photo():
    image = Image.new("RGB", (100, 100), (0, 0, 0))
    out = np.asarray(crop_face(image, (-150, -150, 250, 250), 64, angle=45.0))
    assert (out[32, 32] == 0).all()  # the photo's centre
    assert (out[0, 0] == OUTSIDE_GREY).all() and (out[0, 32] == OUTSIDE_GREY).all()


def test_crop_face_rotation():
    image = Image.new("RGB", (200, 200), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 200, 100))  # red top half
    # The crop's x axis points down the photo at 90 degrees, so the photo's top is the crop's left.
    out = crop_face(image, (50, 50, 150, 150), 32, angle=90.0)
    assert out.getpixel((4, 16))[0] > 240 and out.getpixel((28, 16))[2] > 240


# --- paste back -----------------------------------------------------------------------------


def test_paste_back_places_and_clips(cropper):
    photo = Image.new("RGB", (300, 200), (128, 128, 128))
    (crop,) = cropper(photo, fallback_center_crop=True)
    crop.box = (200.0, 100.0, 400.0, 300.0)  # hangs off the bottom-right corner
    out = paste_back(photo, [crop], [np.full((64, 64, 3), (255, 0, 0), np.uint8)])
    assert out.size == photo.size
    assert out.getpixel((280, 180)) == (255, 0, 0)
    assert out.getpixel((100, 50)) == (128, 128, 128)
    assert photo.getpixel((280, 180)) == (128, 128, 128)  # the input photo is left alone
    with pytest.raises(ValueError, match="outputs"):
        paste_back(photo, [crop], [])


def test_paste_back_with_a_mask_pastes_only_the_person(cropper):
    """The mask's left half is background: the photo stays there, the output covers the right half
    (away from the feathered border); a mask per crop or none at all."""
    photo = Image.new("RGB", (300, 300), (128, 128, 128))
    (crop,) = cropper(photo, fallback_center_crop=True)
    crop.box = (50.0, 50.0, 250.0, 250.0)
    person = Image.new("L", (64, 64), 0)
    person.paste(255, (32, 0, 64, 64))
    out = paste_back(photo, [crop], [np.full((64, 64, 3), (255, 0, 0), np.uint8)], [person])
    assert out.getpixel((100, 150)) == (128, 128, 128)
    assert out.getpixel((200, 150)) == (255, 0, 0)
    with pytest.raises(ValueError, match="masks"):
        paste_back(photo, [crop], [np.zeros((64, 64, 3), np.uint8)], [person, person])


# --- real photos ----------------------------------------------------------------------------


@needs_photos
@pytest.mark.parametrize("name", sorted(FACE_COUNTS))
def test_real_photos(cropper, name):
    path = PHOTOS / name
    photo = load_image(path)
    crops = cropper(path)
    assert len(crops) == FACE_COUNTS[name]
    areas = [(c.face_box[2] - c.face_box[0]) * (c.face_box[3] - c.face_box[1]) for c in crops]
    assert areas == sorted(areas, reverse=True)
    w, h = photo.size
    for c in crops:
        assert c.image.size == (128, 128) and c.image.mode == "RGB"
        assert c.confidence >= 0.9 and c.landmarks.shape == (5, 2)
        x0, y0, x1, y1 = c.box
        assert x1 - x0 == pytest.approx(y1 - y0)
        assert x0 < w and y0 < h and x1 > 0 and y1 > 0  # intersects the photo
        fx0, fy0, fx1, fy1 = c.face_box
        eps = 1e-6  # the default margins put the crop top exactly on the face-box top
        assert x0 - eps <= fx0 and fx1 <= x1 + eps and y0 - eps <= fy0 and fy1 <= y1 + eps
        assert -5 < fx0 and fx1 < w + 5 and -5 < fy0 and fy1 < h + 5


@needs_photos
def test_max_faces_keeps_the_largest(cropper):
    path = PHOTOS / "multiface.jpg"
    four = FaceCropper(max_faces=4)
    four._mtcnn = cropper.mtcnn  # share the detector: build one per module
    all_boxes = [c.box for c in cropper(path)]
    assert [c.box for c in four(path)] == all_boxes[:4]


@needs_photos
def test_file_and_decoded_inputs_agree(cropper):
    """A path goes through reduced JPEG decoding; a decoded photo does not. Crops must agree."""
    path = PHOTOS / "obama-1080p.jpg"
    (a,) = cropper(path)
    (b,) = cropper(load_image(path))
    assert np.allclose(a.box, b.box, atol=3.0)
    diff = np.abs(np.asarray(a.image, float) - np.asarray(b.image, float)).mean()
    assert diff < 6.0


@needs_photos
def test_paste_back_round_trip(cropper):
    path = PHOTOS / "two_people.jpg"
    photo = load_image(path)
    crops = cropper(photo)
    out = paste_back(photo, crops, [c.image for c in crops])
    x0, y0, x1, y1 = (int(v) for v in crops[0].face_box)
    diff = np.abs(np.asarray(out, float) - np.asarray(photo, float))[y0:y1, x0:x1].mean()
    assert diff < 6.0  # a 128 px round trip blurs but must land in place
    flipped = paste_back(photo, crops, [c.image.rotate(180) for c in crops])
    moved = np.abs(np.asarray(flipped, float) - np.asarray(photo, float))[y0:y1, x0:x1].mean()
    assert moved > 3 * diff

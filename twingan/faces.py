"""Face detection, cropping and pasting back for real photos.

`FaceCropper` turns any photo a person would upload (path, bytes, file, PIL image, array) into the
square face crops the model expects, with their boxes in photo coordinates, and `paste_back` puts
translated faces back into the photo. Training prepares raw human photos with the same cropper, so
training and inference crops agree.

Importing this module does no I/O and builds no detector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageFilter

# IMAGE_SUFFIXES, ImageError and load_image stay importable from here (training imports them so).
from twingan.images import (  # noqa: F401
    IMAGE_SUFFIXES,
    ImageError,
    ImageSource,
    array_to_image,
    decode,
    fit,
    load_image,
    open_encoded,
    oriented_size,
    read_bytes,
    to_rgb,
)

_BICUBIC = Image.Resampling.BICUBIC
_BILINEAR = Image.Resampling.BILINEAR
_AFFINE = Image.Transform.AFFINE


class NoFaceError(ImageError):
    """No face above the confidence threshold was found."""

    def __init__(self, message: str = "No face found in the image"):
        super().__init__(message)


# ---------------------------------------------------------------------------------------------
# Crop geometry (shared by training and inference)


@dataclass(frozen=True)
class Margins:
    """How far the square crop extends around a detector (MTCNN) face box, in box units.

    The box is grown by `side` x width left and right, `top` x height above and `bottom` x
    height below, then made square around the centre of the grown box.
    """

    side: float
    top: float
    bottom: float


# Fitted so that re-cropping the selfie2anime trainA selfies (128 px crops already) from their
# own MTCNN boxes reproduces their frame: over 577 detected faces of trainA[:600] the MTCNN box
# sits at centre (0.50, 0.43) with size 0.64 x 0.84 of the frame (median; the frame-to-face scale
# varies +-22% (sd of log) between selfies, so no rule can do much better). These margins give a
# mean IoU of 0.75 with the true frame; the original TwinGAN margins give 0.29 (face half as big
# and low in the frame). End to end on held-out trainA[600:800], each selfie edge-padded to 256 px
# and cropped by FaceCropper: MTCNN finds the face in the crops at centre (0.50, 0.44), size
# 0.63 x 0.84 (trainA itself: (0.50, 0.43), 0.64 x 0.85); mean IoU with the true frame 0.77.
TRAIN_A_MARGINS = Margins(side=0.28, top=0.0, bottom=0.14)
# The original TwinGAN front end. Kept for comparison.
ORIGINAL_MARGINS = Margins(side=0.5, top=1.0, bottom=0.3)
# Fitted the same way on the anime faces where MTCNN finds a face at all (94 of 1200 from
# selfie2anime/trainB and anime_tags; box centre (0.50, 0.49), size 0.43 x 0.53): mean IoU 0.78.
# Anime faces are framed looser than trainA selfies; use these to frame humans like the anime set.
ANIME_MARGINS = Margins(side=0.66, top=0.28, bottom=0.30)
# The app's portraits: halfway between the two (each margin their mean), so the face is 0.80 as wide
# in its frame as in a trainA selfie and the whole head shows, framed more like the anime faces,
# where the model still draws the face as well as at the trainA framing (a face framed fully like the
# anime set comes out smaller and loses detail: the eyes smudge). Through the app with the 128 px
# default of 2026-12-05, the 128 px two-sample test (mean of 5 seeds) tells the portraits from real
# anime 88.1% of the time on the test selfies and 88.6% on 200 held-out CelebA faces, against 92.2%
# and 90.9% at TRAIN_A_MARGINS.
PORTRAIT_MARGINS = Margins(side=0.47, top=0.14, bottom=0.22)
# Fitted the same way on CelebA's aligned faces (the hair classifier's training images, centre
# square): over 200 test images the MTCNN box is 0.47 x 0.63 of the frame, its top at 0.27 and its
# bottom at 0.90. This frame shows the hair above the face, which TRAIN_A_MARGINS cuts off.
CELEBA_MARGINS = Margins(side=0.57, top=0.43, bottom=0.15)


def crop_box(
    face_box,
    landmarks=None,
    margins: Margins = TRAIN_A_MARGINS,
    align: bool = False,
) -> tuple[tuple[float, float, float, float], float]:
    """The square crop around a detected face.

    face_box: (x0, y0, x1, y1) from the detector; landmarks: (5, 2) MTCNN points (left eye, right
    eye, nose, mouth left, mouth right) or None. Returns (box, angle): `box` is the square
    (x0, y0, x1, y1) before rotation, possibly beyond the image; the crop is that square rotated
    by `angle` degrees about its centre (non-zero only with `align`, which levels the eyes).
    """
    x0, y0, x1, y1 = (float(v) for v in face_box)
    w, h = x1 - x0, y1 - y0
    grown_w = w * (1 + 2 * margins.side)
    grown_h = h * (1 + margins.top + margins.bottom)
    side = max(grown_w, grown_h)
    # Offset from the face-box centre to the crop centre, along the face's own "down" axis.
    down = h * (margins.bottom - margins.top) / 2
    angle = 0.0
    if align and landmarks is not None:
        (lx, ly), (rx, ry) = np.asarray(landmarks, dtype=np.float64)[:2]
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
    rad = math.radians(angle)
    cx = (x0 + x1) / 2 - math.sin(rad) * down
    cy = (y0 + y1) / 2 + math.cos(rad) * down
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), angle


# Where a crop reaches past the photo (a tight selfie framed with the whole head), repeated edge
# pixels make streaks that the translator draws as smudges over the hair and background. So the
# model's crops fade there from the blurred edge to a light grey (the plain light background of
# many anime faces), reached at this share of the crop's side past the photo; 0.12 drew as clean
# portraits, with a harder edge where the photo ends.
OUTSIDE_FADE = 0.25
OUTSIDE_GREY = 235


def crop_face(
    image: Image.Image, box, resolution: int, angle: float = 0.0, fade_outside: bool = True
) -> Image.Image:
    """Cut the square `box` (rotated by `angle` degrees about its centre) out of an RGB image and
    resize it to resolution x resolution. Parts outside the image repeat the edge pixels (a
    reflection could put a mirrored half face into the crop); with `fade_outside` they are then
    blurred and fade towards OUTSIDE_GREY."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = x1 - x0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Work on a canvas at twice the output density: bounded memory however large the photo or
    # face, and the final 2x box-filter reduce antialiases any rotation.
    supersample = 2 * resolution
    s = supersample / side  # canvas pixels per photo pixel
    half = side / 2 * (abs(cos) + abs(sin))  # half extent of the rotated square's bounding box
    X0, Y0 = math.floor((cx - half) * s), math.floor((cy - half) * s)
    X1, Y1 = math.ceil((cx + half) * s), math.ceil((cy + half) * s)
    W, H = math.floor(image.width * s), math.floor(image.height * s)
    # Canvas pixels covered by the photo, at least one so edge padding has a source; the canvas
    # grows to include it when the box misses the photo entirely.
    ix0, iy0 = min(max(X0, 0), W - 1), min(max(Y0, 0), H - 1)
    ix1, iy1 = max(min(X1, W), ix0 + 1), max(min(Y1, H), iy0 + 1)
    X0, Y0, X1, Y1 = min(X0, ix0), min(Y0, iy0), max(X1, ix1), max(Y1, iy1)
    region = image.resize(
        (ix1 - ix0, iy1 - iy0), _BICUBIC, box=(ix0 / s, iy0 / s, ix1 / s, iy1 / s), reducing_gap=3.0
    )
    pad = ((iy0 - Y0, Y1 - iy1), (ix0 - X0, X1 - ix1), (0, 0))
    canvas = Image.fromarray(np.pad(np.asarray(region), pad, mode="edge"))  # (h, w, 3)
    # Output pixel (u, v) -> canvas: centre + R @ (q - side/2) with q = (u, v) / s, then * s - X0.
    ox = s * cx - X0 - cos * supersample / 2 + sin * supersample / 2
    oy = s * cy - Y0 - sin * supersample / 2 - cos * supersample / 2
    out = canvas.transform(
        (supersample, supersample), _AFFINE, (cos, -sin, ox, sin, cos, oy), resample=_BICUBIC
    ).reduce(2)
    if not fade_outside or not any(any(p) for p in pad[:2]):
        return out
    # Each output pixel's centre in photo pixels, and how far (in output pixels) it lies beyond the photo.
    t = ((np.arange(resolution) + 0.5) / resolution - 0.5) * side  # offsets from the crop centre
    u, v = t[None, :], t[:, None]  # (1, R) across, (R, 1) down
    x, y = cx + cos * u - sin * v, cy + sin * u + cos * v  # (R, R)
    beyond_x = np.maximum(np.maximum(-x, x - image.width), 0)
    beyond_y = np.maximum(np.maximum(-y, y - image.height), 0)
    return _fade_outside(out, np.hypot(beyond_x, beyond_y) * resolution / side)


def _fade_outside(crop: Image.Image, distance: np.ndarray) -> Image.Image:
    """`crop` where `distance` (output pixels beyond the photo) > 0: blurred within 2 px, then
    blended to OUTSIDE_GREY over OUTSIDE_FADE of the side."""
    pixels = np.asarray(crop, dtype=np.float32)  # (R, R, 3)
    blurred = np.asarray(crop.filter(ImageFilter.GaussianBlur(crop.width / 24)), dtype=np.float32)
    to_blur = np.clip(distance / 2, 0, 1)[..., None]
    to_grey = np.clip(distance / (OUTSIDE_FADE * crop.width), 0, 1)[..., None]
    pixels = pixels + (blurred - pixels) * to_blur
    pixels = pixels + (OUTSIDE_GREY - pixels) * to_grey
    return Image.fromarray(pixels.round().clip(0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------
# Detection


@dataclass
class FaceCrop:
    """One face: the crop the model takes and where it came from in the photo."""

    image: Image.Image  # RGB, resolution x resolution
    box: tuple[float, float, float, float]  # crop square (x0, y0, x1, y1) in photo pixels, unrotated
    face_box: tuple[float, float, float, float] | None  # detector box; None for a centre crop
    confidence: float  # detector probability; 0.0 for a centre crop
    landmarks: np.ndarray | None = None  # (5, 2) eyes, nose, mouth corners in photo pixels
    angle: float = 0.0  # the crop is `box` rotated by this many degrees about its centre
    context: Image.Image | None = None  # the same face framed by the cropper's context_margins, if any
    context_box: tuple[float, float, float, float] | None = None  # its square in photo pixels


class FaceCropper:
    """Detect faces with MTCNN and cut model-ready crops, largest face first.

    resolution: crop size in px. max_faces / min_confidence: which detections to keep.
    detect_size: detection runs on a copy whose long side is at most this (speed; faces smaller
    than ~min_face_size/detect_size of the long side are missed). margins: crop framing, see
    TRAIN_A_MARGINS. The detector is built on first use.

    context_margins: when given, each FaceCrop also gets `context`, the face framed by these margins
    at the same resolution (the hair classifier reads the hair from a CelebA-like frame).

    align (level the eyes) is off by default because it makes crops less like trainA: on the
    held-out set above it cuts the median |roll| from 6.4 to 0.9 degrees (trainA: 6.5) and raises
    the landmark error against the true trainA framing from 0.066 to 0.075 of the crop size.
    """

    def __init__(
        self,
        resolution: int = 128,
        device: str = "cpu",
        max_faces: int = 4,
        min_confidence: float = 0.9,
        detect_size: int = 640,
        align: bool = False,
        margins: Margins = TRAIN_A_MARGINS,
        min_face_size: int = 32,
        context_margins: Margins | None = None,
    ):
        self.resolution = resolution
        self.device = device
        self.max_faces = max_faces
        self.min_confidence = min_confidence
        self.detect_size = detect_size
        self.align = align
        self.margins = margins
        self.min_face_size = min_face_size
        self.context_margins = context_margins
        self._mtcnn = None

    @property
    def mtcnn(self):
        if self._mtcnn is None:
            import torch
            from facenet_pytorch import MTCNN  # weights ship in the wheel: no download

            device = torch.device(self.device)
            mtcnn = MTCNN(keep_all=True, min_face_size=self.min_face_size, device=device).eval()
            if device.type == "cpu":
                # Channels-last weights make the convs emit channels-last maps, on which CPU
                # max-pooling is ~4x faster: detection ~1.5x faster, boxes equal to 1e-4 px.
                mtcnn.to(memory_format=torch.channels_last)
            self._mtcnn = mtcnn
        return self._mtcnn

    def detect(self, image: Image.Image):
        """Faces in an RGB image, largest first: (boxes (N, 4), confidences (N,), landmarks
        (N, 5, 2)) in that image's pixels, filtered by min_confidence and max_faces."""
        import torch

        with torch.inference_mode():
            boxes, probs, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        # facenet returns object arrays
        boxes, probs, points = boxes.astype(float), probs.astype(float), points.astype(float)
        keep = probs >= self.min_confidence
        boxes, probs, points = boxes[keep], probs[keep], points[keep]
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        order = order[: self.max_faces]
        return boxes[order], probs[order], points[order]

    def __call__(self, image: ImageSource, fallback_center_crop: bool = False) -> list[FaceCrop]:
        """Face crops of a photo, largest face first.

        Raises ImageError for unusable inputs and NoFaceError when no face is found, unless
        `fallback_center_crop`, which then returns one centre crop (confidence 0).
        """
        if isinstance(image, (Image.Image, np.ndarray)):
            full = load_image(image)
            size = full.size
            small = _shrink(full, self.detect_size)
        else:
            data = read_bytes(image)
            encoded, orientation = open_encoded(data)
            size = oriented_size(encoded, orientation)
            # JPEG: decode straight at about detection size (DCT scaling) instead of full size.
            full = decode(encoded, orientation, fit(size, self.detect_size))
            small = _shrink(full, self.detect_size)
        scale = size[0] / small.width, size[1] / small.height  # small -> photo pixels

        boxes, probs, points = self.detect(small)
        boxes = boxes * np.array([scale[0], scale[1], scale[0], scale[1]])
        points = points * np.array(scale)
        faces = []
        for face_box, prob, pts in zip(boxes, probs, points):
            box, angle = crop_box(face_box, pts, self.margins, self.align)
            context = crop_box(face_box, pts, self.context_margins, self.align)[0] if self.context_margins else None
            faces.append(FaceCrop(None, box, tuple(face_box.tolist()), float(prob), pts, angle, None, context))
        if not faces:
            if not fallback_center_crop:
                raise NoFaceError()
            side = min(size)
            x0, y0 = (size[0] - side) / 2, (size[1] - side) / 2
            box = (x0, y0, x0 + side, y0 + side)
            faces.append(FaceCrop(None, box, None, 0.0, context_box=box if self.context_margins else None))

        # A reduced JPEG decode is enough when it has at least one photo pixel per output pixel
        # for every crop; else decode again, at the smallest such scale (DCT scaling is cheap,
        # a full 12 MP decode is not).
        need = max(min(1.0, self.resolution / (f.box[2] - f.box[0])) for f in faces)
        if full.width < min(size[0], math.ceil(size[0] * need)):
            target = (math.ceil(size[0] * need), math.ceil(size[1] * need))
            full = decode(*open_encoded(data), target)
        k = full.width / size[0], full.height / size[1]  # photo -> decoded pixels

        def decoded(box):
            # JPEG scaling rounds each side up, so x and y scale a hair differently; keep the
            # crop square in decoded pixels (the error is under one decoded pixel).
            x0, y0, x1, y1 = box
            return x0 * k[0], y0 * k[1], x1 * k[0], y0 * k[1] + (x1 - x0) * k[0]

        for f in faces:
            f.image = crop_face(full, decoded(f.box), self.resolution, f.angle)
            if f.context_box is not None:  # the hair classifier's frame stays edge-padded, as it was measured
                f.context = crop_face(full, decoded(f.context_box), self.resolution, f.angle, fade_outside=False)
        return faces


def _shrink(image: Image.Image, long_side: int) -> Image.Image:
    """Copy with the long side at most `long_side` (antialiased; reduce() first for speed)."""
    size = fit(image.size, long_side)
    if size == image.size:
        return image
    return image.resize(size, _BILINEAR, reducing_gap=2.0)


# ---------------------------------------------------------------------------------------------
# Pasting results back


def paste_back(photo: ImageSource, crops: list[FaceCrop], outputs, masks: list[Image.Image] | None = None,
               feather: float = 0.08) -> Image.Image:
    """Paste translated faces into a copy of the photo.

    outputs[i] (PIL image or (H, W, 3) array, any square size) replaces crops[i]: it is resized
    and rotated onto the crop box, clipped to the photo, and blended with a mask whose edges fade
    over `feather` x the crop size so no seam shows. masks[i] ("L", any square size), when given,
    limits that to the person, so that a portrait with a plain background keeps the photo's
    background around it.
    """
    if len(outputs) != len(crops) or (masks is not None and len(masks) != len(crops)):
        raise ValueError(f"{len(crops)} crops but {len(outputs)} outputs and {len(masks or [])} masks")
    result = load_image(photo).copy()
    W, H = result.size
    for i, (crop, out) in enumerate(zip(crops, outputs)):
        out = out if isinstance(out, Image.Image) else array_to_image(np.asarray(out))
        out = to_rgb(out)
        n = out.width
        x0, y0, x1, y1 = crop.box
        side, cx, cy = x1 - x0, (x0 + x1) / 2, (y0 + y1) / 2
        cos, sin = math.cos(math.radians(crop.angle)), math.sin(math.radians(crop.angle))
        half = side / 2 * (abs(cos) + abs(sin))
        rx0, ry0 = max(math.floor(cx - half), 0), max(math.floor(cy - half), 0)
        rx1, ry1 = min(math.ceil(cx + half), W), min(math.ceil(cy + half), H)
        if rx1 <= rx0 or ry1 <= ry0:
            continue  # the box lies outside this photo
        # Photo pixel (rx0 + x, ry0 + y) -> output pixel: R^T @ (p - centre) * n / side + n / 2.
        k = n / side
        px, py = rx0 - cx, ry0 - cy
        coeffs = (
            cos * k, sin * k, (cos * px + sin * py) * k + n / 2,
            -sin * k, cos * k, (-sin * px + cos * py) * k + n / 2,
        )
        region = (rx1 - rx0, ry1 - ry0)
        patch = out.transform(region, _AFFINE, coeffs, resample=_BICUBIC)
        mask = _feather_mask(n, feather)
        if masks is not None:
            mask = ImageChops.multiply(mask, masks[i].convert("L").resize((n, n), _BILINEAR))
        mask = mask.transform(region, _AFFINE, coeffs, resample=_BILINEAR)
        result.paste(patch, (rx0, ry0), mask)
    return result


def _feather_mask(n: int, feather: float) -> Image.Image:
    """(n, n) 'L' mask: 255 inside, fading linearly to 0 over `feather` x n at the borders."""
    ramp = max(feather * n, 1.0)
    d = np.minimum(np.arange(n), np.arange(n)[::-1]) + 0.5  # distance to the nearest border
    m = np.clip(np.minimum(d[:, None], d[None, :]) / ramp, 0, 1)
    return Image.fromarray((m * 255).round().astype(np.uint8))

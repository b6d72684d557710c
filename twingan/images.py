"""Image loading: any photo a person would upload (path, bytes, file, PIL image, array) as upright RGB.

Checks size limits before decoding, applies the EXIF orientation, converts every PIL mode to RGB,
and raises `ImageError` with a message meant for the user. `square_crop` is the one centre
square crop of the project; `images_to_tensor` and `tensor_to_images` convert batches for the
networks. Importing this module does no I/O.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image

ImageSource = str | os.PathLike | bytes | bytearray | BinaryIO | Image.Image | np.ndarray

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # file types read from folders
MAX_PIXELS = 100_000_000  # larger images are refused as possible decompression bombs
MIN_SIDE = 64  # below this a face crop has too little detail to translate

# EXIF orientation -> transpose that shows the photo upright (as PIL.ImageOps.exif_transpose).
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Image.info keys that Image.getexif() reads an orientation from.
_ORIENTATION_INFO = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


class ImageError(ValueError):
    """The input cannot be used as a photo; the message says why in user words."""


def read_bytes(source) -> bytes:
    """Read an encoded image (path, bytes or binary file object) into memory."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as f:
                return f.read()
        except OSError as e:
            raise ImageError(f"Cannot read the file {os.fspath(source)!r}: {e.strerror}") from e
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError("The file must be opened in binary mode")
        return bytes(data)
    raise ImageError(f"Unsupported image input of type {type(source).__name__}")


def open_encoded(data: bytes) -> tuple[Image.Image, int]:
    """Open (not decode) an encoded image; check its size. Returns (image, EXIF orientation)."""
    try:
        with warnings.catch_warnings():
            # We enforce our own pixel limit below; PIL's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageError("The image is too large (more than 100 megapixels)") from e
    except Image.UnidentifiedImageError as e:
        raise ImageError("The file is not an image (use JPEG, PNG or WebP)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"The image file is corrupt ({e})") from e
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise ImageError(
            f"The image is too large ({w}x{h}, more than {MAX_PIXELS // 1_000_000} megapixels)"
        )
    orientation = _orientation(image)
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"The image is too small ({w}x{h}); it needs at least {MIN_SIDE} px per side")
    return image, orientation


def _orientation(image: Image.Image) -> int:
    """EXIF orientation tag, 1 (as stored) when absent or unreadable."""
    try:
        orientation = int(image.getexif().get(0x0112, 1))
    except (OSError, SyntaxError, ValueError, TypeError):
        return 1  # broken EXIF: show the pixels as stored rather than refuse the photo
    return orientation if orientation in _EXIF_TRANSPOSE else 1


def oriented_size(image: Image.Image, orientation: int) -> tuple[int, int]:
    """(width, height) of the image once shown upright."""
    w, h = image.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def decode(image: Image.Image, orientation: int, min_size: tuple[int, int] | None = None):
    """Decode to upright RGB; with `min_size` (upright w, h), JPEGs decode at a reduced scale
    (DCT scaling: 1/2, 1/4, 1/8) that is still at least that size, which is fast and small."""
    if min_size is not None and image.format == "JPEG":
        if orientation in (5, 6, 7, 8):
            min_size = (min_size[1], min_size[0])
        image.draft("RGB", min_size)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL reports truncated files as OSError("image file is truncated ...").
        raise ImageError(f"The image file is truncated or corrupt ({e})") from e
    if orientation != 1:
        image = image.transpose(_EXIF_TRANSPOSE[orientation])
        # The pixels are upright now, but transpose copies the metadata: drop every place an
        # orientation can hide, so that loading this image again does not turn it a second time.
        image.info = {k: v for k, v in image.info.items() if k not in _ORIENTATION_INFO}
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: transparency composited on white, 16-bit scaled to 8-bit."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_gray_to_uint8(np.asarray(image), mode)).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _gray_to_uint8(a: np.ndarray, mode: str) -> np.ndarray:
    """High bit-depth grayscale (H, W) -> uint8. 16-bit data is divided by 257 (65535 -> 255);
    float data is taken as [0, 1] when its maximum is at most 1, else as [0, 255]."""
    a = a.astype(np.float64)
    if mode == "F":
        a = a * 255.0 if a.size and np.nanmax(a) <= 1.0 else a
    elif mode.startswith("I;16") or (a.size and a.max() > 255):
        a = a / 257.0  # mode "I" holds 16-bit PNG/TIFF data in practice
    return np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)


def array_to_image(a: np.ndarray) -> Image.Image:
    """(H, W), (H, W, 1|3|4) array -> RGB image. uint8 as is, uint16 / 257, floats in [0, 1]."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"An image array must be (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype == np.uint16:
        a = a.astype(np.float64) / 257.0
    elif a.dtype.kind == "f":
        a = np.nan_to_num(a) * 255.0
    elif a.dtype != np.uint8:
        raise ImageError(f"Unsupported image array type {a.dtype}; use uint8, uint16 or float")
    return Image.fromarray(np.clip(a, 0, 255).round().astype(np.uint8))  # L, RGB or RGBA


def _check_decoded(image: Image.Image) -> Image.Image:
    w, h = image.size
    if w * h > MAX_PIXELS:
        raise ImageError(f"The image is too large ({w}x{h})")
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"The image is too small ({w}x{h}); it needs at least {MIN_SIDE} px per side")
    return image


def load_image(source: ImageSource, max_side: int | None = None) -> Image.Image:
    """Load a photo as upright RGB, at full resolution or with its long side at most `max_side`.

    Accepts a path, bytes, a binary file object, a PIL image or a numpy array. Applies the EXIF
    orientation once: the result carries no orientation, so loading it again changes nothing.
    With `max_side`, JPEGs decode straight at a reduced scale (fast), then shrink to fit. Raises
    ImageError for non-images, corrupt or truncated files, images under 64 px on a side and
    images over 100 megapixels.
    """
    if isinstance(source, Image.Image):
        _check_decoded(source)
        image = decode(source, _orientation(source))
    elif isinstance(source, np.ndarray):
        image = to_rgb(_check_decoded(array_to_image(source)))
    else:
        encoded, orientation = open_encoded(read_bytes(source))
        size = oriented_size(encoded, orientation)
        image = decode(encoded, orientation, fit(size, max_side) if max_side else None)
    if max_side and max(image.size) > max_side:
        image = image.resize(fit(image.size, max_side), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return image


def fit(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """`size` scaled down (never up) so that its long side is at most `long_side`."""
    r = min(1.0, long_side / max(size))
    return max(1, round(size[0] * r)), max(1, round(size[1] * r))


def square_crop(image: Image.Image, size: int) -> Image.Image:
    """The centre square of an image, resized to size x size (Lanczos)."""
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)


def images_to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """Same-size PIL images -> (B, 3, H, W) float32 in [0, 1] (converted to RGB)."""
    a = np.stack([np.asarray(im.convert("RGB")) for im in images])  # (B, H, W, 3) uint8
    return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255)


def tensor_to_images(x: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [0, 1] -> RGB PIL images."""
    a = (x.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(im) for im in a]

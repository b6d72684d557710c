"""Synthetic inputs shared by the tests and the benchmarks, made in memory (no files in git).

Tests import this as `samples` (pytest puts tests/ on the path); benchmarks as `tests.samples`.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
ASTRONAUT = ROOT / "examples" / "astronaut.png"  # public domain; one face

# EXIF orientation -> the transpose that stores an upright image so that orientation shows it upright
# (the inverse of what a viewer applies).
STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # the viewer turns it back with ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def webcam_frame() -> Image.Image:
    """A 640 x 480 frame, the astronaut's face (480 px) in the middle on a dark background."""
    frame = Image.new("RGB", (640, 480), (40, 40, 40))
    frame.paste(Image.open(ASTRONAUT).convert("RGB").resize((480, 480)), (80, 0))
    return frame


def png_header(width: int, height: int, pixels: bytes = b"") -> bytes:
    """An 8-bit RGB PNG that declares width x height but holds almost no data: a decompression
    bomb's header, refused (or not) before any pixel is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(pixels)) if pixels else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def oriented_jpeg(upright: Image.Image, orientation: int, quality: int = 92) -> bytes:
    """A JPEG whose pixels are stored so that its EXIF `orientation` shows `upright`."""
    stored = upright if STORE_FOR_ORIENTATION[orientation] is None else upright.transpose(
        STORE_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", exif=exif, quality=quality)


def crowd(rows: int = 5, cols: int = 10, cell: int = 250, seed: int = 0) -> tuple[Image.Image, list[tuple]]:
    """rows x cols copies of the astronaut's face, one per cell, on grey: four big ones (230-240 px)
    in random cells, the rest 100-160 px, so which four are the largest is clear.

    Returns the photo and the pasted face squares (x0, y0, x1, y1), largest first.
    """
    rng = np.random.default_rng(seed)
    face = Image.open(ASTRONAUT).convert("RGB").crop((120, 20, 330, 230))
    image = Image.new("RGB", (cols * cell, rows * cell), (120, 120, 120))
    squares = []
    big = set(rng.choice(rows * cols, 4, replace=False).tolist())
    for i in range(rows * cols):
        side = int(rng.integers(230, 241)) if i in big else int(rng.integers(100, 161))
        x = (i % cols) * cell + int(rng.integers(0, cell - side + 1))
        y = (i // cols) * cell + int(rng.integers(0, cell - side + 1))
        image.paste(face.resize((side, side)), (x, y))
        squares.append((x, y, x + side, y + side))
    return image, sorted(squares, key=lambda b: b[0] - b[2])


def write_smooth_images(folder: Path, n: int, size: int, seed: int) -> list[str]:
    """n PNGs of smooth random images (a colour gradient plus a blob), so reconstruction has something to learn."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    names = []
    for i in range(n):
        c0, c1, c2 = torch.rand(3, 3, 1, 1, generator=g)
        cy, cx = torch.rand(2, generator=g)
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.05)
        img = (c0 * yy + c1 * (1 - yy)) * (1 - blob) + c2 * blob  # (3, H, W)
        arr = (img.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
        name = f"{i:03d}.png"
        Image.fromarray(arr).save(folder / name)
        names.append(name)
    return names


def write_tags_csv(path: Path, names: list[str], split: str, hair_known=lambda i: True) -> None:
    """An anime_tags CSV for `names`: image i has hair colour i % 12 (blank where not `hair_known(i)`),
    eye colour i % 10 and no binary tags."""
    import csv

    from twingan.vocab import BINARY_TAGS, DEFAULT_VOCAB

    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "split", "hair_color", "eye_color", *BINARY_TAGS])
        for i, name in enumerate(names):
            w.writerow([name, split, DEFAULT_VOCAB.hair[i % 12] if hair_known(i) else "", DEFAULT_VOCAB.eye[i % 10],
                        *[0] * len(BINARY_TAGS)])

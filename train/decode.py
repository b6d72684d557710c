"""Image files to uint8 tensors: the one decoder every training data path goes through.

The GAN's domains (`train.data`), the tags CSVs' datasets (`train.tags_data`) and the tagger and
evaluation scripts decode through `decode_images`, so every model sees images cropped and resized
alike. Unreadable images are skipped and counted, never dropped silently.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from twingan.images import IMAGE_SUFFIXES, square_crop

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A data folder or file that cannot be used; the message says which and why."""


def list_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def square_image(image, size: int, crop_top: float = 0.5):
    """The largest square of a PIL image, resized to size x size (bicubic).

    A portrait image's square starts `crop_top` of the spare height from the top (0 top, 0.5
    centred), so faces in tall photos can keep their chin; a landscape image's is centred by
    `twingan.images.square_crop`. The filter stays bicubic, not square_crop's Lanczos: every GAN
    run so far was trained on bicubic images, and the app's face crops are bicubic too.
    """
    from PIL import Image

    width, height = image.size
    if height > width:
        top = round((height - width) * crop_top)
        image = image.crop((0, top, width, top + width))
    image = square_crop(image, min(image.size))  # crops only: the size asked for is its own
    return image.resize((size, size), Image.Resampling.BICUBIC)


def _decode_into(out: torch.Tensor, path: Path, resolution: int, crop_top: float) -> str | None:
    """Decode one image into `out` (3, R, R) uint8; returns why it could not be read, or None."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (resolution, resolution))  # JPEG: decode at a reduced scale, much faster
            im = square_image(im.convert("RGB"), resolution, crop_top)
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises these for truncated or non-image files
        return f"{path.name}: {type(err).__name__}: {err}"
    out.copy_(torch.from_numpy(np.array(im)).permute(2, 0, 1))  # (R, R, 3) -> (3, R, R)
    return None


def decode_images(folder: Path, files: list[str], resolution: int, crop_top: float = 0.5, workers: int = 4,
                  out: torch.Tensor | None = None, progress: bool = False) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode `files` to (N, 3, R, R) uint8; returns (images, kept indices, skip messages).

    The images are written into `out` (len(files) rows; allocated when None) and the rows of
    skipped files are closed up in place, so the result is a view of `out`'s first rows.
    """
    from tqdm import tqdm

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    if out is None:
        out = torch.empty(len(files), 3, resolution, resolution, dtype=torch.uint8)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        errors = list(tqdm(pool.map(lambda i: _decode_into(out[i], folder / files[i], resolution, crop_top),
                                    range(len(files))),
                           total=len(files), desc=f"decode {folder.name}", unit="img", disable=not progress))
    kept = [i for i, e in enumerate(errors) if e is None]
    skipped = [e for e in errors if e is not None]
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s, e.g. %s", len(skipped), folder, skipped[0])
    if not kept:
        raise DataError(f"none of the {len(files)} images in {folder} could be read"
                        + (f"; first error: {skipped[0]}" if skipped else ""))
    for row, i in enumerate(kept):  # close the gaps left by skipped files (rows only move up)
        if row != i:
            out[row] = out[i]
    return out[:len(kept)], kept, skipped

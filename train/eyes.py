"""Where the eyes of the source faces are, for the eye-colour loss (`losses.eye_colour`).

The eyes are found once per run with the app's detector (MTCNN landmarks), kept as fractions of the
image side, and drawn as two discs per image at the stage's resolution; the discs go through the
same augmentation as the images, so they stay on the eyes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

# Disc radius, as a fraction of the image side: about the width of an iris plus the landmark error
# (MTCNN eye points on the trainA framing move by ~0.07 of the side from face to face).
EYE_RADIUS = 0.06
DETECT_SIZE = 128  # detection runs on this upscale: MTCNN misses faces much under ~40 px


@torch.no_grad()
def locate_eyes(images: torch.Tensor, progress: bool = True) -> tuple[torch.Tensor, int]:
    """Eye landmarks of (N, 3, R, R) uint8 face crops: ((N, 2, 2) as (x, y) fractions of the side, the
    number of images without a face). Those get the mean position of the found ones."""
    from PIL import Image

    from twingan.faces import FaceCropper

    cropper = FaceCropper(min_confidence=0.5, max_faces=1, min_face_size=20)
    points = torch.full((len(images), 2, 2), float("nan"))
    rows = range(len(images))
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="eye landmarks", unit="img")
    for i in rows:
        image = Image.fromarray(images[i].permute(1, 2, 0).cpu().numpy())
        image = image.resize((DETECT_SIZE, DETECT_SIZE), Image.Resampling.BICUBIC)
        _, _, landmarks = cropper.detect(image)
        if len(landmarks):
            points[i] = torch.from_numpy(np.asarray(landmarks[0][:2]) / DETECT_SIZE).float()
    missed = torch.isnan(points).flatten(1).any(1)
    if bool(missed.all()):
        raise ValueError("the face detector found no face in any source image: the eye-colour loss needs eyes")
    points[missed] = points[~missed].mean(0)
    return points, int(missed.sum())


def cached_eyes(images: torch.Tensor, path: Path) -> torch.Tensor:
    """`locate_eyes` of the images, read from / written to `path` (kept with the run, so a resume does
    not detect again). The cache is used only for the same images (count and pixel sum)."""
    key = torch.tensor([len(images), int(images.sum(dtype=torch.int64))])
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        if torch.equal(saved["key"], key):
            return saved["points"]
        log.info("%s is for other images: finding the eyes again", path)
    points, missed = locate_eyes(images)
    log.info("eye landmarks of %d source images (%d without a face got the mean position)", len(images), missed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"key": key, "points": points}, path)
    return points


def eye_masks(points: torch.Tensor, resolution: int, radius: float = EYE_RADIUS) -> torch.Tensor:
    """(B, 2, 2) eye positions (x, y fractions) -> (B, 2, R, R) float discs, one channel per eye."""
    centres = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution
    dx = centres[None, None, None, :] - points[..., 0, None, None]
    dy = centres[None, None, :, None] - points[..., 1, None, None]
    return (dx.pow(2) + dy.pow(2) <= radius ** 2).float()

"""The progressive schedule: which resolution, and how far faded in, a run is at.

Stages run from `start_resolution` to `model.resolution`; each lasts `stage_images` images, or
`stage_fractions` of the time budget, the first `fade_fraction` of it fading the new layers in.
"""

from __future__ import annotations

from train.config import TrainConfig


def _stage(position: float, lengths: tuple, cfg: TrainConfig) -> tuple[int, float]:
    """(resolution, alpha) at `position` along a schedule whose stages (but the last) last `lengths`."""
    stages = cfg.resolutions
    start = 0
    for i, res in enumerate(stages):
        length = lengths[min(i, len(lengths) - 1)]
        if i == len(stages) - 1 or position < start + length:
            if i == 0 or cfg.fade_fraction == 0:
                return res, 1.0
            return res, min(1.0, (position - start) / (cfg.fade_fraction * length))
        start += length
    raise AssertionError("unreachable")


def stage_at(images: int, cfg: TrainConfig) -> tuple[int, float]:
    """(resolution, alpha) after `images` training images: stage lengths from cfg.stage_images."""
    return _stage(images, cfg.stage_images, cfg)


def stage_at_time(seconds: float, cfg: TrainConfig) -> tuple[int, float]:
    """(resolution, alpha) after `seconds` of training: stage lengths are cfg.stage_fractions of the budget.

    Time, not images, because a stage at 16 px costs a small part of one at 128 px per image: a
    time box then gives each stage a known share of the card whatever its speed turns out to be.
    """
    return _stage(seconds / (60 * cfg.budget_minutes), cfg.stage_fractions, cfg)

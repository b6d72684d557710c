"""A run's two domains, from where its config says: a pack (`train.device.pack`) or the image folders
(`train.data`). The one place that knows both, so neither needs the other."""

from __future__ import annotations

from pathlib import Path

import torch

from train.config import REPO_ROOT
from train.data import DomainData, load_folders
from train.device.pack import load_pack


def load_domains(cfg, workers: int = 4, device: str | torch.device = "cpu") -> tuple[DomainData, DomainData]:
    """(source, target) data for a TrainConfig; each domain's images are one uint8 tensor.

    With `cfg.pack` the images come from the pack, decoded once straight onto `device` (a GPU then
    does no per-step host-to-device copy of images); otherwise from the folders, held on the CPU.
    """
    if cfg.pack:
        path = Path(cfg.pack) if Path(cfg.pack).is_absolute() else REPO_ROOT / cfg.pack
        return load_pack(path, cfg.model.vocab, cfg.model.resolution, device)
    return load_folders(cfg, workers)

"""The frozen tagger that the conditioning losses and the pack's colour fill read."""

from __future__ import annotations

from pathlib import Path

import torch

from train.config import REPO_ROOT
from train.step_helpers import requires_grad


def tagger_path(name: str) -> Path:
    """A config's tagger folder: absolute as given, else relative to the repository root."""
    return Path(name) if Path(name).is_absolute() else REPO_ROOT / name


def load_tagger(path: Path, device: torch.device):
    """The frozen tagger for the conditioning loss, or None when its folder is not there (yet)."""
    from twingan.checkpoint import load_pretrained
    from twingan.tagger import Tagger

    if not (path / "model.safetensors").is_file():
        return None
    tagger = load_pretrained(Tagger, path, device=device)
    requires_grad(tagger, False)
    return tagger.eval()

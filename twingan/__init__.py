"""TwinGAN: unpaired image-to-image translation with one shared encoder-generator.

Importing this package does no I/O; models are loaded explicitly with `load_model`.
"""

from twingan.checkpoint import CheckpointError, load_pretrained, save_pretrained
from twingan.config import TwinGANConfig
from twingan.model import Discriminator, TwinGAN

__all__ = ["CheckpointError", "Discriminator", "TwinGAN", "TwinGANConfig", "load_model", "save_pretrained"]


def load_model(name_or_path, device="cpu", dtype=None) -> TwinGAN:
    """Load a TwinGAN from a checkpoint folder or a Hub repo id (falls back to checkpoints/<name>)."""
    import torch

    return load_pretrained(TwinGAN, name_or_path, device=device, dtype=dtype or torch.float32)

"""The export folder: what `train.export` writes and `train.growing.init_from` reads back.

    config.json + model.safetensors      the EMA generator, truncated to the exported stage
    discriminators/<domain>/             each discriminator in the same format
    training.json                        images seen, step, resolution and the run's config
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from twingan.checkpoint import save_pretrained
from twingan.config import TwinGANConfig
from twingan.model import Discriminator, TwinGAN

# Beside an exported generator, what training on from it needs (`Trainer.init_from`).
DISCRIMINATORS_DIR = "discriminators"  # one checkpoint folder per domain: discriminators/anime, ...


def stage_config(config: TwinGANConfig, resolution: int) -> TwinGANConfig:
    """The architecture truncated to `resolution` (for exports made mid-growing)."""
    skips = tuple(r for r in config.skip_resolutions if r <= resolution)
    if config.skip_resolutions and not skips:
        raise ValueError(f"no skip resolution <= {resolution} in {config.skip_resolutions}")
    return dataclasses.replace(config, resolution=resolution, skip_resolutions=skips)


def export_model(model: TwinGAN, folder: Path, resolution: int | None = None,
                 dtype: torch.dtype | None = torch.float16, **config: object) -> Path:
    """Write the inference format (config.json + model.safetensors), truncated to `resolution`;
    `config` sets fields of the written config that training does not use (`eye_given_hair`)."""
    resolution = resolution or model.config.resolution
    small = TwinGAN(dataclasses.replace(stage_config(model.config, resolution), **config))
    state = model.state_dict()
    small.load_state_dict({k: state[k] for k in small.state_dict()}, strict=True)
    return save_pretrained(small, folder, dtype=dtype)


def export_discriminator(d: Discriminator, folder: Path, resolution: int, dtype: torch.dtype | None = torch.float16) -> Path:
    """A discriminator in the same format (config.json + model.safetensors), truncated to `resolution`."""
    small = Discriminator(stage_config(d.config, resolution))
    state = d.state_dict()
    small.load_state_dict({k: state[k] for k in small.state_dict()}, strict=True)
    return save_pretrained(small, folder, dtype=dtype)

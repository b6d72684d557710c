"""A small x2 super-resolution network for anime faces: the app's portraits go from the model's 64 px
to the 256 px shown through it (twice), where a plain resize leaves them soft.

The output is the bicubic enlargement of the input plus a predicted residual, so an untrained
network (its last conv starts at zero) is exactly bicubic. The body runs at half the input's
resolution on pixel-unshuffled input (2x2 pixels -> 12 channels), as Real-ESRGAN's x2 model does:
four times fewer positions for the same receptive field, which keeps 128 -> 256 fast on a CPU.
Model code only: no file I/O (training: `train/helpers/upscaler.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UpscalerConfig:
    channels: int = 32  # body width; 32 keeps 128 -> 256 of one face at ~13 ms on one CPU thread
    blocks: int = 3  # residual blocks; with head and tail, a receptive field of 34 input px (a fringe of hair)
    unshuffle: int = 2  # the body runs at 1/unshuffle of the input resolution (see the module doc)
    scale: int = 2  # output side / input side; the app applies the network repeatedly for more


class PlainResidualBlock(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, added to the input. No normalisation (unlike `twingan.layers.ResidualBlock`):
    per-image statistics shift colours and contrast in super-resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class AnimeUpscaler(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> (B, 3, scale*H, scale*W) in [0, 1]; H and W divisible by unshuffle."""

    model_type = "anime-upscaler"
    config_class = UpscalerConfig

    def __init__(self, config: UpscalerConfig):
        super().__init__()
        if config.channels < 1 or config.blocks < 0 or config.unshuffle < 1 or config.scale < 1:
            raise ValueError(f"channels, unshuffle and scale must be >= 1 and blocks >= 0, got {config}")
        self.config = config
        u, s = config.unshuffle, config.scale
        self.head = nn.Conv2d(3 * u * u, config.channels, 3, padding=1)
        self.body = nn.Sequential(*[PlainResidualBlock(config.channels) for _ in range(config.blocks)])
        self.tail = nn.Conv2d(config.channels, 3 * (u * s) ** 2, 3, padding=1)  # then pixel-shuffled by u * s
        nn.init.zeros_(self.tail.weight)  # starts as bicubic: training only has to learn the difference
        nn.init.zeros_(self.tail.bias)

    def residual(self, images: torch.Tensor) -> torch.Tensor:
        """What the network adds to the bicubic enlargement: (B, 3, H, W) -> (B, 3, sH, sW), unclamped."""
        u = self.config.unshuffle
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-2] % u or images.shape[-1] % u:
            raise ValueError(f"image sides must be divisible by {u}, got {tuple(images.shape[-2:])}")
        x = F.pixel_unshuffle(images * 2 - 1, u)  # (B, 3u^2, H/u, W/u)
        x = self.body(F.relu(self.head(x)))  # (B, C, H/u, W/u)
        return F.pixel_shuffle(self.tail(x), u * self.config.scale)  # (B, 3, sH, sW)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The training output: bicubic + residual, not clamped (clamping would stop the gradient)."""
        residual = self.residual(images)  # first: it checks the shape
        base = F.interpolate(images, scale_factor=self.config.scale, mode="bicubic", align_corners=False)
        return base + residual

    @torch.no_grad()
    def upscale(self, images: torch.Tensor) -> torch.Tensor:
        """Inference: (B, 3, H, W) in [0, 1] -> (B, 3, sH, sW) clamped to [0, 1]."""
        return self(images).clamp_(0, 1)

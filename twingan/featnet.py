"""An independent feature network for evaluation only: a small residual net trained contrastively
(SimCLR: two augmented views of one face must find each other among all views of a batch) on
anime and CelebA faces.

Why a second network: the recipe matches the tagger's features, and `tagger-eval` shares the
tagger's architecture, objective and data, so a Frechet distance in its features measures what
training optimised. This one differs in all three: residual blocks with GroupNorm instead of a
plain conv-bn-relu stack, a self-supervised objective instead of tag classification, and CelebA
faces in its data. No loss and no data filter may use it (only `train.evaluation` and its own
trainer `train.helpers.featnet` import it). Model code only: no file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from twingan.layers import ResidualBlock, resize_square


@dataclass
class FeatureNetConfig:
    resolution: int = 64  # inputs are resized to this; the GAN's outputs are 64 px
    channels: tuple[int, ...] = (32, 64, 128, 256)  # per stage; each stage halves the resolution
    groups: int = 8  # GroupNorm groups: statistics per image, so features never depend on the batch
    projection_dim: int = 128  # the contrastive loss reads a small MLP's output, the FD the features before it


class FeatureNet(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> `features` (B, channels[-1]); `forward` gives the projection."""

    model_type = "featnet"
    config_class = FeatureNetConfig

    def __init__(self, config: FeatureNetConfig):
        super().__init__()
        self.config = config
        c, g = tuple(config.channels), config.groups
        # Stride-2 stem: a quarter of the compute, so it trains on a shared CPU in minutes.
        self.stem = nn.Sequential(nn.Conv2d(3, c[0], 3, 2, 1, bias=False), nn.GroupNorm(g, c[0]), nn.SiLU())
        self.stages = nn.Sequential(*[ResidualBlock(c_in, c_out, 2, g)
                                      for c_in, c_out in zip((c[0],) + c[:-1], c)])  # R/2 -> R / 2^(1+len(c))
        self.projection = nn.Sequential(nn.Linear(c[-1], c[-1]), nn.SiLU(), nn.Linear(c[-1], config.projection_dim))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, channels[-1]) for the Frechet distance."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        h = self.stages(self.stem(resize_square(images, self.config.resolution) * 2 - 1))  # (B, C, R/32, R/32)
        return h.mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-length projections (B, projection_dim) for the contrastive loss."""
        return F.normalize(self.projection(self.features(images)), dim=1)


def contrastive_loss(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent (SimCLR) of unit projections of two views (B, D) each: every view must pick its
    partner among the other 2B - 1 views. Returns the loss and the hit mask (2B,)."""
    z = torch.cat([z_a, z_b])  # (2B, D)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    b = z_a.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, target), sim.argmax(1) == target

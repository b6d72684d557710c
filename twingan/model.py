"""TwinGAN: one encoder and one PGGAN-style generator shared by two image domains.

human image -> Encoder(human norms) -> 4x4 latent (+ UNet skips) -> Generator(anime norms) -> anime image.
Every conv weight is shared; only the DomainNorm scale/shift (and statistics) differ per domain.
Images at the API are (B, 3, H, W) floats in [0, 1]; inside, the networks work in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from twingan.config import TwinGANConfig
from twingan.layers import ConvUnit, minibatch_stddev, rgb_conv


class Encoder(nn.Module):
    """from_rgb 1x1, then per resolution [conv, conv, avg-pool] down to the 4x4 latent."""

    def __init__(self, config: TwinGANConfig):
        super().__init__()
        c, n = config, len(config.domains)
        unit = dict(num_domains=n, norm=c.norm, pixel=c.pixel_norm, init_std=c.init_std)
        # One from_rgb per resolution so training can grow; blocks[str(r)] maps r -> r/2.
        self.from_rgb = nn.ModuleDict({str(r): rgb_conv(3, c.channels(r), c.init_std) for r in c.resolutions[1:]})
        self.blocks = nn.ModuleDict({
            str(r): nn.ModuleList([ConvUnit(c.channels(r), c.channels(r), **unit),
                                   ConvUnit(c.channels(r), c.channels(r // 2), **unit)])
            for r in c.resolutions[1:]
        })

    def forward(self, x: torch.Tensor, domain: int, alpha: float = 1.0):
        """x: (B, 3, R, R) in [-1, 1] -> latent (B, C4, 4, 4) and skips {r: (B, C_{r/2}, r, r)}."""
        res = x.shape[-1]
        h = F.leaky_relu(self.from_rgb[str(res)](x), 0.2)
        skips = {}
        for r in _down_from(res):
            for unit in self.blocks[str(r)]:
                h = unit(h, domain)
            skips[r] = h
            h = F.avg_pool2d(h, 2)
            if r == res and r > 8 and alpha < 1.0:  # fade in the new top block against the old from_rgb
                old = F.leaky_relu(self.from_rgb[str(r // 2)](F.avg_pool2d(x, 2)), 0.2)
                h = torch.lerp(old, h, alpha)
        return h, skips


class Generator(nn.Module):
    """4x4 latent -> two convs -> per resolution [upsample x2, concat skip, conv, conv] -> to_rgb 1x1."""

    def __init__(self, config: TwinGANConfig):
        super().__init__()
        c, n = config, len(config.domains)
        self.config = config
        cond = c.tag_embed_dim if c.tag_dim else 0
        unit = dict(num_domains=n, norm=c.norm, pixel=c.pixel_norm, init_std=c.init_std, cond_dim=cond)
        self.tag_embed = nn.Linear(c.tag_dim, cond, bias=False) if cond else None  # zero tags -> zero embedding
        c4 = c.channels(4)
        self.base = nn.ModuleList([ConvUnit(c4, c4, **unit), ConvUnit(c4, c4, **unit)])
        self.blocks = nn.ModuleDict()
        for r in c.resolutions[1:]:
            c_in = c.channels(r // 2) + (c.channels(r // 2) if c.uses_skip(r) else 0)
            self.blocks[str(r)] = nn.ModuleList([ConvUnit(c_in, c.channels(r), **unit),
                                                 ConvUnit(c.channels(r), c.channels(r), **unit)])
        self.to_rgb = nn.ModuleDict({str(r): rgb_conv(c.channels(r), 3, c.init_std) for r in c.resolutions})

    def embed_tags(self, tags: torch.Tensor | None) -> torch.Tensor | None:
        if tags is None or self.tag_embed is None:
            return None
        if tags.shape[-1] != self.config.tag_dim:
            raise ValueError(f"tags have {tags.shape[-1]} entries, the model's vocabulary has {self.config.tag_dim}")
        c = self.config
        if (c.hair_gain, c.eye_gain) != (1.0, 1.0):
            gains = torch.ones(tags.shape[-1], dtype=tags.dtype, device=tags.device)
            gains[c.vocab.hair_slice], gains[c.vocab.eye_slice] = c.hair_gain, c.eye_gain
            tags = tags * gains
        return F.leaky_relu(self.tag_embed(tags), 0.2)  # (B, tag_embed_dim)

    def forward(self, latent: torch.Tensor, skips: dict, domain: int, tags: torch.Tensor | None = None,
                resolution: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """latent (B, C4, 4, 4) -> image (B, 3, R, R) in [-1, 1] (not clipped)."""
        resolution = resolution or self.config.resolution
        cond = self.embed_tags(tags)
        h = latent
        for unit in self.base:
            h = unit(h, domain, cond)
        prev = h
        for r in self.config.resolutions[1:]:
            if r > resolution:
                break
            prev = h
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            if self.config.uses_skip(r):
                h = torch.cat([h, skips[r]], dim=1)
            for unit in self.blocks[str(r)]:
                h = unit(h, domain, cond)
        out = self.to_rgb[str(resolution)](h)
        if alpha < 1.0 and resolution > 8:  # fade in: blend with the upsampled output of the previous stage
            old = F.interpolate(self.to_rgb[str(resolution // 2)](prev), scale_factor=2, mode="nearest")
            out = torch.lerp(old, out, alpha)
        return out


class TwinGAN(nn.Module):
    """The shared encoder-generator. `translate(images, source="human", target="anime", tags=None)`."""

    model_type = "twingan"
    config_class = TwinGANConfig

    def __init__(self, config: TwinGANConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.generator = Generator(config)
        # Progressive growing state: the resolution being trained and the fade-in weight of its layers.
        self.resolution = config.resolution
        self.alpha = 1.0

    def set_stage(self, resolution: int, alpha: float = 1.0) -> None:
        if resolution not in self.config.resolutions[1:]:
            raise ValueError(f"resolution {resolution} is not one of {self.config.resolutions[1:]}")
        self.resolution, self.alpha = resolution, float(alpha)

    def domain_index(self, name: str) -> int:
        try:
            return self.config.domains.index(name)
        except ValueError:
            raise ValueError(f"unknown domain {name!r}; this model knows {', '.join(self.config.domains)}") from None

    def encode(self, images: torch.Tensor, domain: str):
        """images (B, 3, R, R) in [0, 1] at the current resolution -> (latent, skips)."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != self.resolution \
                or images.shape[-2] != self.resolution:
            raise ValueError(f"expected images of shape (B, 3, {self.resolution}, {self.resolution}), "
                             f"got {tuple(images.shape)}")
        return self.encoder(images * 2 - 1, self.domain_index(domain), self.alpha)

    def decode(self, latent: torch.Tensor, skips: dict, domain: str, tags: torch.Tensor | None = None):
        """(latent, skips) -> images (B, 3, R, R), roughly in [0, 1], not clipped (for losses)."""
        out = self.generator(latent, skips, self.domain_index(domain), tags, self.resolution, self.alpha)
        return (out + 1) / 2

    def forward(self, images: torch.Tensor, source: str = "human", target: str = "anime",
                tags: torch.Tensor | None = None) -> torch.Tensor:
        latent, skips = self.encode(images, source)
        return self.decode(latent, skips, target, tags)

    def translate(self, images: torch.Tensor, source: str = "human", target: str = "anime",
                  tags: torch.Tensor | None = None) -> torch.Tensor:
        """Translate images from `source` to `target`; output clipped to [0, 1]."""
        return self(images, source, target, tags).clamp(0, 1)


class Discriminator(nn.Module):
    """PGGAN discriminator for one domain: no normalisation, minibatch stddev, optional tag head.

    Returns (score (B,), tag_logits (B, tag_dim) or None).
    """

    model_type = "twingan-discriminator"
    config_class = TwinGANConfig

    def __init__(self, config: TwinGANConfig):
        super().__init__()
        c = self.config = config
        self.from_rgb = nn.ModuleDict({str(r): rgb_conv(3, c.channels(r), c.init_std) for r in c.resolutions[1:]})
        self.blocks = nn.ModuleDict({
            str(r): nn.ModuleList([_conv(c.channels(r), c.channels(r), c.init_std),
                                   _conv(c.channels(r), c.channels(r // 2), c.init_std)])
            for r in c.resolutions[1:]
        })
        c4 = c.channels(4)
        self.final_conv = _conv(c4 + 1, c4, c.init_std)
        self.final_dense = nn.Conv2d(c4, c4, 4)  # the 4x4 "valid" conv
        self.score = nn.Linear(c4, 1)
        self.tag_head = nn.Linear(c4, c.tag_dim) if c.tag_head and c.tag_dim else None

    def forward(self, images: torch.Tensor, alpha: float = 1.0):
        x = images * 2 - 1  # (B, 3, R, R)
        res = x.shape[-1]
        h = F.leaky_relu(self.from_rgb[str(res)](x), 0.2)
        for r in _down_from(res):
            for conv in self.blocks[str(r)]:
                h = F.leaky_relu(conv(h), 0.2)
            h = F.avg_pool2d(h, 2)
            if r == res and r > 8 and alpha < 1.0:  # stage 8 is the first; nothing to fade from
                old = F.leaky_relu(self.from_rgb[str(r // 2)](F.avg_pool2d(x, 2)), 0.2)
                h = torch.lerp(old, h, alpha)
        h = F.leaky_relu(self.final_conv(minibatch_stddev(h)), 0.2)
        h = F.leaky_relu(self.final_dense(h), 0.2).flatten(1)  # (B, C4)
        tags = self.tag_head(h) if self.tag_head is not None else None
        return self.score(h).squeeze(1), tags


def _conv(c_in: int, c_out: int, init_std: float) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    nn.init.normal_(conv.weight, std=init_std)
    nn.init.zeros_(conv.bias)
    return conv


def _down_from(resolution: int) -> list[int]:
    """resolution, resolution/2, ..., 8: the blocks an input of this size passes through."""
    out = []
    while resolution >= 8:
        out.append(resolution)
        resolution //= 2
    return out

"""Small helpers of the training step, each with one job (as rosinality's stylegan2 `train.py` has
them): freezing, the EMA, the fade-in of real images, the gradient all-reduce, autocast."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from train.config import TrainConfig
from twingan.config import TwinGANConfig


def discriminator_config(cfg: TrainConfig) -> TwinGANConfig:
    """The generator's architecture with channels scaled by cfg.d_width (the discriminators' own).
    model.min_channels is kept as it is, so a discriminator is never narrower than the generator."""
    if cfg.d_width == 1:
        return cfg.model
    m = cfg.model
    return dataclasses.replace(m, base_channels=max(1, round(m.base_channels * cfg.d_width)),
                               max_channels=max(1, round(m.max_channels * cfg.d_width)))


def he_init(module: nn.Module) -> None:
    """He-normal weights for leaky ReLU 0.2 and zero biases in every conv and linear layer of `module`."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


def read_levels(latent: torch.Tensor, skips: dict, config: TwinGANConfig) -> list[torch.Tensor]:
    """The encoder outputs the generator reads: the 4x4 latent, then each used skip from low to high."""
    return [latent] + [skips[r] for r in sorted(skips) if config.uses_skip(r)]


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def accumulate(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema = beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - beta)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def ema_beta(batch: int, images_seen: int, half_life: int, rampup: float) -> float:
    hl = min(half_life, max(images_seen * rampup, 1e-8)) if rampup > 0 else half_life
    return 0.5 ** (batch / max(hl, 1e-8))


def fade_real(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """PGGAN: during a fade-in, real images blend with their upsampled half-resolution version."""
    if alpha >= 1.0:
        return x
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    return torch.lerp(low, x, alpha)


def gan_on_reconstructions(cfg: TrainConfig, resolution: int | None = None) -> bool:
    """Whether the recipe has the GAN loss on reconstructions at all (resolution None), or at this stage."""
    on = bool(cfg.gan_recon_from and cfg.w_gan_recon)
    return on if resolution is None else on and resolution >= cfg.gan_recon_from


def bf16_autocast(enabled: bool):
    """bf16 autocast on CUDA where `enabled` (cfg.amp on a GPU); otherwise a context that does nothing."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=enabled)


def grad_allreduce(params: list[nn.Parameter], world: int) -> None:
    """Average gradients over ranks with one flat all-reduce (missing grads count as zero)."""
    if world <= 1:
        return
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n

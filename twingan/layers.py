"""Small layers with one job each: per-domain normalisation, pixel norm, the conv unit, the square resize."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DomainNorm(nn.Module):
    """Normalisation with a scale/shift (and running statistics) per domain, optionally tag-modulated.

    Conv weights are shared by all domains; this layer is what switches a network between them.
    With `cond_dim > 0`, an embedding of the tags adds to the domain's scale and shift
    (conditional normalisation); a zero or missing embedding leaves the unconditioned path.
    """

    def __init__(self, channels: int, num_domains: int, kind: str = "batch", cond_dim: int = 0,
                 momentum: float = 0.01, eps: float = 1e-3):
        super().__init__()
        self.kind, self.momentum, self.eps = kind, momentum, eps  # decay 0.99, eps 1e-3 as the original
        self.weight = nn.Parameter(torch.ones(num_domains, channels))
        self.bias = nn.Parameter(torch.zeros(num_domains, channels))
        if kind == "batch":
            self.register_buffer("running_mean", torch.zeros(num_domains, channels))
            self.register_buffer("running_var", torch.ones(num_domains, channels))
        # Bias-free, so an all-zero tag embedding adds nothing.
        self.cond = nn.Linear(cond_dim, 2 * channels, bias=False) if cond_dim > 0 else None
        if self.cond is not None:
            nn.init.normal_(self.cond.weight, std=0.02)

    def forward(self, x: torch.Tensor, domain: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        # x: (B, C, H, W); cond: (B, cond_dim) or None
        scale, shift = self.weight[domain], self.bias[domain]  # (C,)
        modulated = cond is not None and self.cond is not None
        if self.kind == "batch" and not self.training:
            # Fold statistics and scale/shift into one per-channel affine: a single pass over x.
            inv_std = torch.rsqrt(self.running_var[domain] + self.eps)
            if modulated:
                d_scale, d_shift = self.cond(cond).chunk(2, dim=1)  # (B, C) each
                scale, shift = scale + d_scale, shift + d_shift
            a = scale * inv_std
            b = shift - self.running_mean[domain] * a
            return torch.addcmul(_per_channel(b, x), x, _per_channel(a, x))
        if self.kind == "batch":
            if not modulated:  # batch_norm applies the affine in the same pass
                return F.batch_norm(x, self.running_mean[domain], self.running_var[domain], scale, shift,
                                    training=True, momentum=self.momentum, eps=self.eps)
            x = F.batch_norm(x, self.running_mean[domain], self.running_var[domain],
                             training=True, momentum=self.momentum, eps=self.eps)
        else:
            x = F.instance_norm(x, eps=self.eps)
        if modulated:
            d_scale, d_shift = self.cond(cond).chunk(2, dim=1)
            scale, shift = scale + d_scale, shift + d_shift
        return torch.addcmul(_per_channel(shift, x), x, _per_channel(scale, x))


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(C,) or (B, C) -> broadcastable against x (B, C, H, W)."""
    return v[None, :, None, None] if v.ndim == 1 else v[:, :, None, None]


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), antialiased bilinear; as is when already that size."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): ITU-R 601 luma, as PIL's "L", in the input's dtype and device."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=rgb.device, dtype=rgb.dtype)
    return (rgb * weights[:, None, None]).sum(1, keepdim=True)


def pixel_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """PGGAN pixel norm: unit mean square over channels at every pixel."""
    # vector_norm reads x once; the rsqrt runs on the small (B, 1, H, W) tensor.
    norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    return x * torch.rsqrt(norm.square() / x.shape[1] + eps)


class ConvUnit(nn.Module):
    """3x3 conv (no bias) -> DomainNorm -> LeakyReLU(0.2) -> optional pixel norm."""

    def __init__(self, c_in: int, c_out: int, num_domains: int, norm: str, pixel: bool,
                 init_std: float, cond_dim: int = 0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        nn.init.normal_(self.conv.weight, std=init_std)
        self.norm = DomainNorm(c_out, num_domains, norm, cond_dim)
        self.pixel = pixel

    def forward(self, x: torch.Tensor, domain: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        x = F.leaky_relu(self.norm(self.conv(x), domain, cond), 0.2, inplace=True)
        return pixel_norm(x) if self.pixel else x


def rgb_conv(c_in: int, c_out: int, init_std: float) -> nn.Conv2d:
    """The 1x1 conv of from_rgb / to_rgb."""
    conv = nn.Conv2d(c_in, c_out, 1)
    nn.init.normal_(conv.weight, std=init_std)
    nn.init.zeros_(conv.bias)
    return conv


def minibatch_stddev(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the mean over a group of the per-feature stddev as one extra channel (PGGAN)."""
    b, c, h, w = x.shape
    g = min(group, b)
    if b % g:
        g = 1
    y = x.reshape(g, -1, c, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # (B/g,)
    y = y.repeat(g).reshape(b, 1, 1, 1).expand(b, 1, h, w)
    return torch.cat([x, y], dim=1)


class ResidualBlock(nn.Module):
    """Two 3x3 convs with GroupNorm and a (1x1 strided, when the shape changes) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.shortcut = (nn.Identity() if stride == 1 and c_in == c_out else
                         nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.GroupNorm(groups, c_out)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + self.shortcut(x))

"""Batch augmentations of training images, every draw from the given generator (so a resumed run
and every rank see the same images).

`augment` (flip, crop-and-resize, brightness) is applied to both GAN domains and to the tagger's
batches. `upload_jitter`, on the source side only, makes training faces look like what people
upload: the selfies and CelebA faces are well lit, sharp and framed alike; phone photos and web
pictures are not. It gives each source image, each with its own chance: a looser or tighter,
off-centre crop; a white-balance and saturation shift; greyscale; blur; JPEG compression.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from twingan.layers import luma


def augment(images: torch.Tensor, generator: torch.Generator | None = None,
            min_scale: float = 0.8, brightness: float = 0.12) -> torch.Tensor:
    """Flip, random crop-and-resize and brightness jitter on a float batch (B, 3, H, W) in [0, 1].

    Hue and saturation are left alone on purpose: the labels are colours. Channels past the third
    (masks drawn on the images) get the same flip and crop but no brightness change.
    """
    b, _, h, w = images.shape
    dev = images.device  # the random numbers come from the (CPU) generator, then move: same draws on any device
    flip = (torch.rand(b, generator=generator) < 0.5).to(dev)
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    # Random crop as an affine sampling grid: one batched op instead of a Python loop.
    scale = min_scale + (1 - min_scale) * torch.rand(b, generator=generator)
    shift = (1 - scale)[:, None] * (2 * torch.rand(b, 2, generator=generator) - 1)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(dev, images.dtype), (b, 3, h, w), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Brightness: the same offset on all three channels keeps hue unchanged.
    offset = brightness * (2 * torch.rand(b, 1, 1, 1, generator=generator) - 1)
    if images.shape[1] > 3:
        offset = F.pad(offset.expand(b, 3, 1, 1), (0, 0, 0, 0, 0, images.shape[1] - 3))
    return (images + offset.to(dev, images.dtype)).clamp(0, 1)


def upload_jitter(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """(B, C, H, W) floats in [0, 1] -> the same, degraded like uploads; channels past the third
    (masks drawn on the images) follow the geometry only. `p` scales every transform's chance."""
    b, c, h, w = images.shape
    dev, dtype = images.device, images.dtype

    def chance(q: float) -> torch.Tensor:  # (B,) bools
        return torch.rand(b, generator=generator) < q * p

    # Framing: zoom 0.85-1.2 (over 1 = the face smaller, edges mirrored) and a shift of up to 8% of the side.
    frame = chance(1.0)
    zoom = torch.where(frame, 0.85 + 0.35 * torch.rand(b, generator=generator), torch.ones(b))
    shift = torch.where(frame[:, None], 0.16 * torch.rand(b, 2, generator=generator) - 0.08, torch.zeros(b, 2))
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = zoom
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(dev, dtype), (b, c, h, w), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    rgb, rest = images[:, :3], images[:, 3:]

    # White balance (per-channel gains of +-10%, mean kept) and saturation 0.6-1.3.
    tint = chance(1.0)
    gains = 1 + 0.2 * (torch.rand(b, 3, generator=generator) - 0.5)
    gains = gains / gains.mean(1, keepdim=True)
    gains = torch.where(tint[:, None], gains, torch.ones(b, 3))
    saturation = torch.where(tint, 0.6 + 0.7 * torch.rand(b, generator=generator), torch.ones(b))
    grey = luma(rgb)
    rgb = grey + (rgb - grey) * saturation.to(dev, dtype)[:, None, None, None]
    rgb = rgb * gains.to(dev, dtype)[:, :, None, None]
    # Greyscale photos.
    to_grey = chance(0.2).to(dev)
    grey = luma(rgb)
    rgb = torch.where(to_grey[:, None, None, None], grey.expand_as(rgb), rgb).clamp(0, 1)

    # Blur: down to 45-90% of the side and back up (a small, out-of-focus or upscaled face).
    blur = chance(0.6)
    factors = 0.45 + 0.45 * torch.rand(b, generator=generator)
    # JPEG at quality 25-85.
    jpeg = chance(0.6)
    qualities = (25 + 60 * torch.rand(b, generator=generator)).long()
    if bool(blur.any()) or bool(jpeg.any()):
        rgb = rgb.clone()
        for i in range(b):
            if blur[i]:
                side = max(8, round(h * float(factors[i])))
                small = F.interpolate(rgb[i:i + 1], size=side, mode="area")
                rgb[i:i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
            if jpeg[i]:
                rgb[i] = _jpeg(rgb[i], int(qualities[i]))
    return torch.cat([rgb.clamp(0, 1), rest], 1)


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """One (3, H, W) float image through a JPEG encode and decode at `quality`."""
    from torchvision.io import decode_jpeg, encode_jpeg

    data = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    out = decode_jpeg(encode_jpeg(data, quality=quality))
    return out.to(image.device, image.dtype) / 255

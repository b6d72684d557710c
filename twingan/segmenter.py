"""The person in a face crop, for the app's "plain background": a small UNet that gives each pixel
the probability of being the person (head, hair, neck, clothes), and the compositing that lays the
rest over a flat light grey before the translator sees the crop.

The translator draws whatever is behind a person (curtains, shelves, a car seat) as smudges and hair
strands; laid over the grey of `twingan.faces.OUTSIDE_GREY`, it draws the plain light background of
most anime faces instead. Distilled from MediaPipe's selfie segmentation (`train/helpers/segmenter.py`);
model code only, no file I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from twingan.layers import resize_square


@dataclass
class SegmenterConfig:
    resolution: int = 128  # crops are resized to this; masks are smooth, so 128 px is enough for 256 px crops
    # The network runs at 1/unshuffle of the resolution on pixel-unshuffled input (2x2 pixels -> 12
    # channels) and predicts each position's 2x2 mask pixels: on a 2-core CPU a training step takes
    # 0.36 s, against 1.2 s for a UNet of 16-64 channels at full resolution (batch 32).
    unshuffle: int = 2
    channels: tuple[int, ...] = (24, 32, 48, 64, 96)  # per level; each level after the first halves the resolution


class _Block(nn.Sequential):
    """conv3x3 (stride) -> BN -> ReLU -> conv3x3 -> BN -> ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PortraitSegmenter(nn.Module):
    """Face crops (B, 3, H, W) in [0, 1] -> person probability (B, 1, H, W) in [0, 1]."""

    model_type = "portrait-segmenter"
    config_class = SegmenterConfig

    def __init__(self, config: SegmenterConfig):
        super().__init__()
        u = config.unshuffle
        if not config.channels or u < 1 or config.resolution % (u * 2 ** (len(config.channels) - 1)):
            raise ValueError(f"resolution {config.resolution} must be divisible by unshuffle {u} times "
                             f"2 ** {len(config.channels) - 1} (one halving per level after the first)")
        self.config = config
        c = config.channels
        self.down = nn.ModuleList([_Block(3 * u * u, c[0])] + [_Block(a, b, 2) for a, b in zip(c, c[1:])])
        self.up = nn.ModuleList([_Block(b + a, a) for a, b in zip(c, c[1:])])  # coarse (b) + skip (a) -> a
        self.head = nn.Conv2d(c[0], u * u, 1)  # then pixel-shuffled to full resolution

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) at the config's resolution -> (B, 1, R, R) logits (training)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x, skips = F.pixel_unshuffle(images * 2 - 1, self.config.unshuffle), []
        for block in self.down:
            x = block(x)
            skips.append(x)
        for block, skip in zip(reversed(self.up), reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return F.pixel_shuffle(self.head(x), self.config.unshuffle)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Any square size: read at the config's resolution, the mask returned at the input's size."""
        size = images.shape[-2:]
        mask = torch.sigmoid(self.logits(resize_square(images, self.config.resolution)))
        if mask.shape[-2:] != size:
            mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False)
        return mask


def face_guard(size: int, face: tuple[float, float, float, float], device=None) -> torch.Tensor:
    """(size, size) in [0, 1]: 1 inside the ellipse inscribed in `face` (x0, y0, x1, y1 as shares of
    the crop's side), falling to 0 over a tenth of the face's size outside it. The face the detector
    found is always kept, whatever the mask says of it (a mask can miss a face under sunglasses or in
    a dark photo)."""
    x0, y0, x1, y1 = face
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1e-3), max((y1 - y0) / 2, 1e-3)
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    r = torch.sqrt(((t[None, :] - cx) / rx) ** 2 + ((t[:, None] - cy) / ry) ** 2)  # 1 on the ellipse
    return (1 - (r - 1) / 0.1).clamp(0, 1)


def face_in_crop(crop_box, face_box, angle: float = 0.0) -> tuple[float, float, float, float]:
    """The detector's face box in a crop's own frame, as shares of its side: `crop_box` is the crop's
    square in photo pixels before its rotation by `angle` degrees about its centre (as
    `twingan.faces.crop_box` returns it), `face_box` the detector's box in photo pixels. The box's
    offset from the crop centre is turned into the crop's frame; its size is kept (the detector's box
    of a tilted face is about as wide as the face itself)."""
    bx0, by0, bx1, by1 = crop_box
    fx0, fy0, fx1, fy1 = face_box
    side = bx1 - bx0
    dx, dy = (fx0 + fx1 - bx0 - bx1) / 2, (fy0 + fy1 - by0 - by1) / 2
    rad = math.radians(angle)
    # The crop's right and down axes in photo pixels (crop_box moves the centre along (-sin, cos)).
    u = dx * math.cos(rad) + dy * math.sin(rad)
    v = -dx * math.sin(rad) + dy * math.cos(rad)
    cx, cy = 0.5 + u / side, 0.5 + v / side
    hw, hh = (fx1 - fx0) / side / 2, (fy1 - fy0) / side / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def plain_background(images: torch.Tensor, person: torch.Tensor, grey: float) -> torch.Tensor:
    """`images` (B, 3, H, W) in [0, 1] with everything but the person (`person`: (B, 1, H, W) in
    [0, 1]) laid over the flat `grey` (in [0, 1])."""
    return images * person + grey * (1 - person)


@torch.no_grad()
def segment_and_grey(segmenter: PortraitSegmenter, images: torch.Tensor,
                     faces: list[tuple[float, float, float, float] | None],
                     grey: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Face crops (B, 3, H, W) in [0, 1] with what is not the person laid over `grey`, and the person
    (B, 1, H, W) in [0, 1]: the segmenter's mask, or'ed with `face_guard` of each crop's face
    (`face_in_crop`; None: no face box), so a face the mask misses is still drawn."""
    person = segmenter(images)
    for i, face in enumerate(faces):
        if face is not None:
            person[i, 0] = torch.maximum(person[i, 0], face_guard(images.shape[-1], face, images.device).to(person))
    return plain_background(images, person, grey), person

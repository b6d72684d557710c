"""Our stand-in for illust2vec: a small CNN that reads hair colour, eye colour and binary tags
off anime faces, plus a small CNN that reads a human's hair colour (trained on CelebA).

The tagger's probabilities are the GAN's conditioning vector; its pooled features feed the
Frechet distance in `twingan.metrics`. Model code only: no file I/O (see `train/helpers/tagger.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from twingan.layers import ResidualBlock, resize_square
from twingan.vocab import BINARY_TAGS, EYE_COLORS, HAIR_COLORS, TagVocab


@dataclass
class TaggerConfig:
    resolution: int = 64  # inputs are resized to this; 64 px still shows eye colour and keeps CPU training short
    channels: tuple[int, ...] = (32, 64, 128, 256)  # per stage; each stage halves the resolution
    feature_dim: int = 256  # size of the feature vector used for retrieval and the Frechet distance
    dropout: float = 0.2  # before the heads; eye labels are noisy, so the heads overfit easily
    # "conv" (plain conv-BN-ReLU) or "residual" (GroupNorm residual blocks: a judge of another architecture)
    encoder: str = "conv"
    hair_colors: tuple[str, ...] = tuple(HAIR_COLORS)  # stored so a checkpoint keeps its own label order
    eye_colors: tuple[str, ...] = tuple(EYE_COLORS)
    binary_tags: tuple[str, ...] = BINARY_TAGS


@dataclass
class HumanHairConfig:
    resolution: int = 64  # CelebA faces are resized to this square
    channels: tuple[int, ...] = (24, 48, 96, 192)  # smaller than the tagger: four broad classes only
    feature_dim: int = 128
    dropout: float = 0.2
    classes: tuple[str, ...] = ("black", "blonde", "brown", "silver")  # anime vocab names of CelebA's hair attributes


def conv_bn_relu(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class ConvEncoder(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> features (B, feature_dim); resizes to `resolution` first."""

    def __init__(self, resolution: int, channels: tuple[int, ...], feature_dim: int):
        super().__init__()
        self.resolution = resolution
        layers = [conv_bn_relu(3, channels[0], 2)]  # stride-2 stem: most compute saved, colours survive
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers += [conv_bn_relu(c_in, c_out, 2), conv_bn_relu(c_out, c_out, 1)]
        self.convs = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Linear(channels[-1], feature_dim), nn.BatchNorm1d(feature_dim),
                                     nn.ReLU(inplace=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = self.convs(resize_square(images, self.resolution) * 2 - 1)  # (B, C, R/2^k, R/2^k)
        return self.project(x.mean(dim=(2, 3)))  # (B, feature_dim)


class ResidualEncoder(nn.Module):
    """Like ConvEncoder, but a GroupNorm residual net (`twingan.layers.ResidualBlock` stages, SiLU):
    the architecture of a second judge, so that what fools the conv tagger need not fool it."""

    def __init__(self, resolution: int, channels: tuple[int, ...], feature_dim: int, groups: int = 8):
        super().__init__()
        self.resolution = resolution
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.GroupNorm(groups, channels[0]),
                                  nn.SiLU())
        self.stages = nn.Sequential(*[ResidualBlock(c_in, c_out, 2, groups)
                                      for c_in, c_out in zip(channels[:-1], channels[1:])])
        self.project = nn.Sequential(nn.Linear(channels[-1], feature_dim), nn.LayerNorm(feature_dim), nn.SiLU())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = self.stages(self.stem(resize_square(images, self.resolution) * 2 - 1))  # (B, C, R/2^k, R/2^k)
        return self.project(x.mean(dim=(2, 3)))  # (B, feature_dim)


ENCODERS = {"conv": ConvEncoder, "residual": ResidualEncoder}


class Tagger(nn.Module):
    """Anime face tagger: a softmax over hair colours, one over eye colours, sigmoids for binary tags."""

    model_type = "tagger"
    config_class = TaggerConfig

    def __init__(self, config: TaggerConfig):
        super().__init__()
        self.config = config
        self.vocab = TagVocab(tuple(config.hair_colors), tuple(config.eye_colors), tuple(config.binary_tags))
        if config.encoder not in ENCODERS:
            raise ValueError(f"unknown tagger encoder {config.encoder!r}; choose one of: {', '.join(ENCODERS)}")
        self.encoder = ENCODERS[config.encoder](config.resolution, tuple(config.channels), config.feature_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.hair_head = nn.Linear(config.feature_dim, len(self.vocab.hair))
        self.eye_head = nn.Linear(config.feature_dim, len(self.vocab.eye))
        self.binary_head = nn.Linear(config.feature_dim, len(self.vocab.binary))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> dict of hair_logits (B, n_hair), eye_logits (B, n_eye),
        binary_logits (B, n_binary) and features (B, feature_dim)."""
        features = self.encoder(images)
        h = self.dropout(features)
        return {"hair_logits": self.hair_head(h), "eye_logits": self.eye_head(h),
                "binary_logits": self.binary_head(h), "features": features}

    def tag_probs(self, images: torch.Tensor) -> torch.Tensor:
        """The conditioning vector (B, vocab.dim): [softmax hair | softmax eye | sigmoid binary]."""
        out = self(images)
        return torch.cat([out["hair_logits"].softmax(-1), out["eye_logits"].softmax(-1),
                          out["binary_logits"].sigmoid()], dim=-1)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, feature_dim) for retrieval and the Frechet distance."""
        return self.encoder(images)

    @torch.no_grad()
    def tag(self, images: torch.Tensor) -> list[dict]:
        """Readable tags per image: hair / eye names and probabilities, binary tag probabilities."""
        probs = self.tag_probs(images).float().cpu()
        return [self.vocab.decode(p) | {
            "hair_probs": dict(zip(self.vocab.hair, p[self.vocab.hair_slice].tolist())),
            "eye_probs": dict(zip(self.vocab.eye, p[self.vocab.eye_slice].tolist()))} for p in probs]


class HumanHairClassifier(nn.Module):
    """Reads a person's hair colour as an anime vocabulary name (black, blonde, brown or silver)."""

    model_type = "human_hair"
    config_class = HumanHairConfig

    def __init__(self, config: HumanHairConfig):
        super().__init__()
        self.config = config
        self.encoder = ConvEncoder(config.resolution, tuple(config.channels), config.feature_dim)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_dim, len(config.classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> logits (B, n_classes)."""
        return self.head(self.dropout(self.encoder(images)))

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> list[tuple[str, dict[str, float]]]:
        """Per image: (anime hair colour name, {name: probability})."""
        probs = self(images).softmax(-1).float().cpu()
        return [(self.config.classes[int(p.argmax())], dict(zip(self.config.classes, p.tolist())))
                for p in probs]

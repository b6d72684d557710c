"""The one config dataclass that describes a TwinGAN architecture (stored as config.json)."""

from __future__ import annotations

from dataclasses import dataclass

from twingan.vocab import BINARY_TAGS, EYE_COLORS, HAIR_COLORS, TagVocab


@dataclass
class TwinGANConfig:
    resolution: int = 256  # full output size; a power of two from 8 up
    base_channels: int = 1024  # channels(stage) = max(min, min(base / 2^stage, max)), stage 0 at 4x4 (original: 1024)
    max_channels: int = 256  # caps the low-resolution stages (original: 256)
    min_channels: int = 1  # floors the high-resolution stages (the generator's and encoder's; 1 = no floor)
    domains: tuple[str, ...] = ("human", "anime")  # each domain gets its own norm scale/shift
    norm: str = "batch"  # "batch" (per-domain running statistics, as the original) or "instance"
    pixel_norm: bool = True  # PGGAN pixel norm after each conv unit
    init_std: float = 0.02  # conv weights ~ N(0, init_std), as the original
    skip_resolutions: tuple[int, ...] = ()  # UNet skips; empty means every resolution from 8 up
    # Conditioning: the tag vector (vocab layout) is embedded and modulates the generator's norms.
    hair_colors: tuple[str, ...] = tuple(HAIR_COLORS)
    eye_colors: tuple[str, ...] = tuple(EYE_COLORS)
    binary_tags: tuple[str, ...] = BINARY_TAGS
    tag_embed_dim: int = 64  # 0 turns the conditioning off
    tag_head: bool = True  # discriminators also predict the tags (auxiliary classifier)
    # The hair / eye groups of the tag vector are multiplied by these before the embedding: a
    # calibration of what strength 1 means, set in an export's config.json after training; 1 in training.
    hair_gain: float = 1.0
    eye_gain: float = 1.0
    # How often each eye colour goes with each hair colour on the anime faces it was trained on
    # (rows: hair_colors, columns: eye_colors; counts). The app's "let the model choose" eyes draw
    # from the row of the face's hair colour. Empty: not known (the app then asks for every eye
    # colour at equal weight). Written at export; `python -m train.helpers.eye_prior` adds it.
    eye_given_hair: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self):
        if self.resolution < 8 or self.resolution & (self.resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {self.resolution}")
        if len(set(self.domains)) != len(self.domains) or len(self.domains) < 2:
            raise ValueError(f"domains must be at least two distinct names, got {self.domains}")
        if self.min_channels < 1:
            raise ValueError(f"min_channels must be >= 1, got {self.min_channels}")
        if self.norm not in ("batch", "instance"):
            raise ValueError(f"norm must be 'batch' or 'instance', got {self.norm!r}")
        if not (self.hair_gain > 0 and self.eye_gain > 0):
            raise ValueError(f"hair_gain and eye_gain must be > 0, got {self.hair_gain} and {self.eye_gain}")
        if self.eye_given_hair:
            shape = (len(self.eye_given_hair), *{len(row) for row in self.eye_given_hair})
            if shape != (len(self.hair_colors), len(self.eye_colors)):
                raise ValueError(f"eye_given_hair must be {len(self.hair_colors)} rows (hair colours) of "
                                 f"{len(self.eye_colors)} (eye colours), got {shape}")
            if any(not v >= 0 for row in self.eye_given_hair for v in row):
                raise ValueError("eye_given_hair holds counts: none may be negative")
        bad = [r for r in self.skip_resolutions if r not in self.resolutions[1:]]
        if bad:
            raise ValueError(f"skip_resolutions {bad} are not among {self.resolutions[1:]}")

    @property
    def vocab(self) -> TagVocab:
        return TagVocab(self.hair_colors, self.eye_colors, self.binary_tags)

    @property
    def tag_dim(self) -> int:
        return self.vocab.dim if self.tag_embed_dim > 0 else 0

    @property
    def resolutions(self) -> list[int]:
        """4, 8, ..., resolution."""
        return [4 * 2**s for s in range(self.resolution.bit_length() - 2)]

    def channels(self, resolution: int) -> int:
        stage = resolution.bit_length() - 3  # 4 -> 0, 8 -> 1, ...
        return max(self.min_channels, min(self.base_channels // 2**stage, self.max_channels))

    def uses_skip(self, resolution: int) -> bool:
        return resolution >= 8 and (not self.skip_resolutions or resolution in self.skip_resolutions)

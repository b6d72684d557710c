"""Colour controls -> the tag vector the generator is conditioned on (no I/O, no model here).

The hair and the eye group of the tag vector are made the same way:
    group = strength * target + (1 - strength) * uniform
where target is the one-hot of the chosen colour, for hair "keep" the hair classifier's
probabilities for that face, and for hair "auto" the uniform vector (every colour of the group at 1/n).
"auto" eyes are one eye colour drawn for each face from how often anime characters with its hair
colour have each eye colour (`TwinGANConfig.eye_given_hair`, counted on the training anime), with a
seed taken from the face crop's pixels (`face_seed`), so the same photo always gets the same eyes; a
checkpoint without those counts gets every eye colour at equal weight, which the model never saw in
training and draws as dark grey-violet irises. A group is never all zero: the shipped checkpoints
were trained always asking for an eye colour and almost always for a hair colour, and on an all-zero
group the 128 px checkpoint of 2026-12-04 draws a blotchy face (no hair tag: no eyes at all; no eye
tag: smudged eyes, grey streaks over the skin), while every colour at equal weight gives a clean
drawn face whose colour the model settles. So strength 0 means "what the model settles on" and 1
means "the chosen colour fully".
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from PIL import Image

from twingan.vocab import TagVocab

KEEP = "keep"  # hair choice: the colour read from the photo by the human hair classifier
AUTO = "auto"  # hair: every colour at equal weight, the model settles it; eyes: one drawn per face


def tag_vectors(vocab: TagVocab, eye_given_hair: tuple[tuple[float, ...], ...], n: int, hair: str = KEEP,
                hair_strength: float = 1.0, eye: str = AUTO, eye_strength: float = 1.0,
                keep_probs: torch.Tensor | None = None, binary: torch.Tensor | None = None,
                eye_seeds: list[int] | None = None) -> torch.Tensor:
    """(n, vocab.dim) tag vectors from the controls (see the module doc).

    eye_given_hair: the checkpoint's eye colour counts per hair colour (empty: none).
    keep_probs: (n, len(vocab.hair)) hair colour probabilities read from each face, used for
    hair == KEEP (uniform, as for AUTO, when None). binary: (vocab.binary,) or None.
    eye_seeds: n seeds of the "auto" eye colours (`face_seed` of each face; default 0, 1, ...).
    Raises ValueError, with a message for the user, for an unknown colour or a strength out of [0, 1].
    """
    v = vocab
    for name, s in (("hair", hair_strength), ("eye", eye_strength)):
        if not 0.0 <= float(s) <= 1.0:
            raise ValueError(f"{name} strength must be between 0 and 1, got {s}")
    if eye == KEEP:
        raise ValueError('"keep" is for the hair colour; choose an eye colour or "auto"')
    if eye_seeds is not None and len(eye_seeds) != n:
        raise ValueError(f"need {n} eye seeds, got {len(eye_seeds)}")

    def blend(target: torch.Tensor | None, strength: float, width: int) -> torch.Tensor:
        uniform = torch.full((n, width), 1.0 / width)
        return uniform if target is None else float(strength) * target + (1.0 - float(strength)) * uniform

    tags = torch.zeros(n, v.dim)
    hair_target = keep_probs if hair == KEEP and keep_probs is not None else None  # KEEP without a read: AUTO
    if hair not in (KEEP, AUTO):
        hair_target = F.one_hot(torch.full((n,), v.hair_index(hair)), len(v.hair)).float()
    tags[:, v.hair_slice] = blend(hair_target, hair_strength, len(v.hair))
    eye_target = None
    if eye != AUTO:
        eye_target = F.one_hot(torch.full((n,), v.eye_index(eye)), len(v.eye)).float()
    elif eye_given_hair:
        seeds = list(range(n)) if eye_seeds is None else eye_seeds
        eye_target = F.one_hot(draw_eyes(eye_given_hair, tags[:, v.hair_slice], seeds), len(v.eye)).float()
    tags[:, v.eye_slice] = blend(eye_target, eye_strength, len(v.eye))
    if binary is not None:
        tags[:, v.binary_slice] = binary.float()
    return tags


def draw_eyes(eye_given_hair: tuple[tuple[float, ...], ...], hair: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """(n,) eye colour indices for "auto" eyes: each drawn, with its seed, from the eye colours of
    anime faces with hair `hair` (n, n_hair), a colour or a mix of colours (the rows of
    `eye_given_hair` mixed by these weights); a mix of rows without counts draws any colour alike."""
    counts = torch.tensor(eye_given_hair, dtype=torch.float32)  # (n_hair, n_eye)
    rows = counts / counts.sum(1, keepdim=True).clamp_min(1e-12)
    probs = hair.float() @ rows  # (n, n_eye)
    probs = torch.where(probs.sum(1, keepdim=True) > 0, probs, torch.ones_like(probs))
    cdf = probs.cumsum(1) / probs.sum(1, keepdim=True)
    # One uniform number per seed through the inverse CDF: a hair read that moves a little from
    # frame to frame (live mode) moves the CDF a little and rarely flips the colour.
    u = torch.tensor([torch.rand(1, generator=torch.Generator().manual_seed(seed)).item() for seed in seeds])
    return torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_max(probs.shape[1] - 1)


def eye_drawn(vocab: TagVocab, eye_given_hair: tuple[tuple[float, ...], ...], eye: str,
              tags: torch.Tensor) -> list[str | None]:
    """For each tag vector (n, vocab.dim): the eye colour drawn for "auto" eyes, else None (a chosen
    colour, no counts in the checkpoint, or strength 0)."""
    if eye != AUTO or not eye_given_hair:
        return [None] * len(tags)
    group = tags[:, vocab.eye_slice]
    return [vocab.eye[int(row.argmax())] if row.max() > row.min() else None for row in group]


def hair_read_lines(reads: list[tuple[str | None, str | None]], where: str = "photo") -> list[str]:
    """Status sentences for "keep my hair colour" from each face's (colour read, why unsure or None):
    the colours read, and the faces whose read was unsure, so their portraits mix the likely colours."""
    sure = [name for name, why in reads if name and not why]
    lines = [f"Hair colour read from the {where}: " + ", ".join(sure) + "."] if sure else []
    for i, (_, why) in enumerate(reads, 1):
        if why:
            which = f" of face {i}" if len(reads) > 1 else ""
            lines.append(f"Hair colour{which} not read reliably ({why}): the portrait mixes the likely colours; "
                         "pick one to set it.")
    return lines


def face_seed(image: Image.Image) -> int:
    """A seed from a face crop's pixels (the "auto" eye colour's): the same crop, the same seed."""
    return int.from_bytes(hashlib.blake2b(image.tobytes(), digest_size=8).digest(), "little") % 2**63

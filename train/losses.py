"""Small pure loss helpers for the training loop (no state, no I/O)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from twingan.layers import luma
from twingan.vocab import TagVocab


def d_logistic(real_score: torch.Tensor, fake_score: torch.Tensor) -> torch.Tensor:
    """Non-saturating GAN loss of the discriminator."""
    return F.softplus(-real_score).mean() + F.softplus(fake_score).mean()


def g_nonsaturating(fake_score: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_score).mean()


def masked_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over rows whose target is >= 0 (unknown = -1); 0 when no row is known."""
    known = target >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[known], target[known])


def tag_loss(logits: torch.Tensor, hair: torch.Tensor, eye: torch.Tensor, tags: torch.Tensor,
             binary_known: torch.Tensor, vocab: TagVocab, w_binary: float = 0.5) -> torch.Tensor:
    """Hair CE + eye CE (masked where unknown) + BCE of the binary tags (rows where they are labels).

    logits (B, TAG_DIM) in the vocab layout; hair/eye (B,) class indices or -1; tags (B, TAG_DIM).
    """
    loss = masked_ce(logits[:, vocab.hair_slice], hair) + masked_ce(logits[:, vocab.eye_slice], eye)
    if w_binary and bool(binary_known.any()):
        b = vocab.binary_slice
        loss = loss + w_binary * F.binary_cross_entropy_with_logits(logits[binary_known, b], tags[binary_known, b])
    return loss


def dragan_penalty(discriminator, real: torch.Tensor, generator: torch.Generator | None = None,
                   alpha: float = 1.0) -> torch.Tensor:
    """DRAGAN: (|grad D| - 1)^2 at points perturbed around the real data."""
    b = real.shape[0]
    noise = torch.rand(real.shape, generator=generator).to(real.device)
    perturbed = real + 0.5 * real.std() * noise
    t = torch.rand(b, 1, 1, 1, generator=generator).to(real.device)
    x = (real + t * (perturbed - real)).detach().requires_grad_(True)
    score, _ = discriminator(x, alpha)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(discriminator, real: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """R1: squared gradient norm of D at the real data (halved, as in StyleGAN2's d_r1_loss)."""
    x = real.detach().requires_grad_(True)
    score, _ = discriminator(x, alpha)
    (grad,) = torch.autograd.grad(score.sum(), x, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def sample_target_tags(pool: torch.Tensor, pool_hair: torch.Tensor, pool_eye: torch.Tensor, n: int,
                       vocab: TagVocab, uniform_prob: float, generator: torch.Generator | None = None,
                       own_hair: torch.Tensor | None = None, own_hair_prob: float = 0.0,
                       auto_hair_prob: float = 0.0, auto_eye_prob: float = 0.0):
    """Tags for translations: rows of the anime tag distribution, colours sometimes redrawn uniformly.

    pool (M, TAG_DIM) real tag vectors; pool_hair/pool_eye (M,) indices or -1. Unknown colours are
    always redrawn, so every translation asks for a hair and an eye colour. `own_hair` (n,) gives
    the source person's hair colour (or -1), kept with probability `own_hair_prob`. With probability
    `auto_hair_prob` a row asks for no particular hair colour (hair -1, every hair colour at 1/n), as
    the app does for "auto" and at hair strength 0: the generator then has to settle the colour itself.
    `auto_eye_prob` does the same for the eyes (eye -1, every eye colour at 1/n).
    Returns (tags (n, TAG_DIM), hair (n,), eye (n,)).
    """
    rows = torch.randint(len(pool), (n,), generator=generator)
    tags, hair, eye = pool[rows].clone(), pool_hair[rows].clone(), pool_eye[rows].clone()
    n_hair, n_eye = len(vocab.hair), len(vocab.eye)
    redraw_h = (torch.rand(n, generator=generator) < uniform_prob) | (hair < 0)
    redraw_e = (torch.rand(n, generator=generator) < uniform_prob) | (eye < 0)
    hair = torch.where(redraw_h, torch.randint(n_hair, (n,), generator=generator), hair)
    eye = torch.where(redraw_e, torch.randint(n_eye, (n,), generator=generator), eye)
    if own_hair is not None and own_hair_prob > 0:
        keep = (torch.rand(n, generator=generator) < own_hair_prob) & (own_hair >= 0)
        hair = torch.where(keep, own_hair, hair)
    if auto_hair_prob > 0:  # drawn last, so runs without it draw as before
        hair = torch.where(torch.rand(n, generator=generator) < auto_hair_prob, -1, hair)
    if auto_eye_prob > 0:  # after the hair's, for the same reason
        eye = torch.where(torch.rand(n, generator=generator) < auto_eye_prob, -1, eye)
    for group, index, width in ((vocab.hair_slice, hair, n_hair), (vocab.eye_slice, eye, n_eye)):
        tags[:, group] = torch.where((index >= 0)[:, None], F.one_hot(index.clamp(min=0), width).float(), 1.0 / width)
    return tags, hair, eye


def feature_moments(fake: torch.Tensor, real: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Match per-dimension mean and std of features (B, D) of fakes to those of a real batch.

    Normalised by the real features' total variance, so the loss is ~1 for unrelated sets whatever
    the feature scale (feature matching, Salimans et al. 2016, on a frozen network's features).
    """
    real = real.detach()
    mu_f, mu_r = fake.mean(0), real.mean(0)
    sd_f, sd_r = fake.std(0), real.std(0)
    return ((mu_f - mu_r).pow(2).sum() + (sd_f - sd_r).pow(2).sum()) / (real.var(0).sum() + eps)


def feature_alignment(source_levels: list[torch.Tensor], target_levels: list[torch.Tensor]) -> torch.Tensor:
    """Mean over levels of `feature_moments` between source- and target-encoded features.

    Each level is a (B, C, H, W) tensor the generator reads (the 4x4 latent, each UNet skip). Moments are
    taken per feature and position over the batch, so a latent that hardly varies across inputs (while
    the target's does) is penalised, not only a shifted channel mean. The target side is the reference
    (detached): only the source encodings move towards where the generator expects its inputs.
    """
    return sum(feature_moments(s.flatten(1).float(), t.flatten(1).float())
               for s, t in zip(source_levels, target_levels)) / len(source_levels)


def cycle_l1(back: torch.Tensor, source: torch.Tensor, colour: float = 1.0) -> torch.Tensor:
    """Mean L1 of a cycle's image against its source; with colour < 1, of both taken toward their luma: grey +
    colour * (rgb - grey), so the grey layout counts in full and the colour departures from it by ``colour``."""
    diff = back - source
    if colour != 1.0:  # luma is linear: blending the difference blends both images
        diff = luma(diff) * (1 - colour) + diff * colour
    return diff.abs().mean()


def shift(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move the content of (B, C, H, W) images down by dy and right by dx pixels (negative: up, left);
    the uncovered border repeats the edge pixels."""
    p = max(abs(dy), abs(dx))
    if p == 0:
        return images
    h, w = images.shape[-2:]
    padded = F.pad(images, (p, p, p, p), mode="replicate")
    return padded[..., p - dy:p - dy + h, p - dx:p - dx + w]


def shift_consistency(moved_out: torch.Tensor, out: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """L1 between f(shift(x)) = `moved_out` and shift(f(x)) = `out` moved by (dy, dx), over the pixels
    both define (the border that `shift` filled is left out).

    Zero for any f that commutes with shifts; a picture that f paints at the same place whatever the
    input (a grid, eyes drawn where no input has them) does not move with the input and is penalised.
    """
    h, w = out.shape[-2:]
    if abs(dy) >= h or abs(dx) >= w:
        raise ValueError(f"shift ({dy}, {dx}) leaves no overlap in a {h}x{w} image")
    moved = moved_out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    still = out[..., max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return (moved - still).abs().mean()


# The colour words of the eye vocabulary as RGB in [0, 1]: mid-tone, saturated irises as anime draws
# them. Picked from the names alone, not from any judge's reading, so a loss towards them trains no
# network's notion of a colour (the judges of `train.evaluation` read the pictures independently).
EYE_RGB = {
    "blue": (0.20, 0.35, 0.85), "brown": (0.45, 0.25, 0.12), "red": (0.80, 0.10, 0.10),
    "purple": (0.50, 0.20, 0.70), "green": (0.15, 0.60, 0.25), "yellow": (0.90, 0.80, 0.20),
    "black": (0.08, 0.08, 0.10), "pink": (0.95, 0.45, 0.70), "aqua": (0.20, 0.80, 0.80),
    "orange": (0.95, 0.55, 0.10),
}


def eye_prototypes(vocab: TagVocab) -> torch.Tensor:
    """(n_eye, 3) RGB of the vocabulary's eye colours, in its order."""
    missing = [name for name in vocab.eye if name not in EYE_RGB]
    if missing:
        raise ValueError(f"no RGB for the eye colours {missing}: add them to train.losses.EYE_RGB")
    return torch.tensor([EYE_RGB[name] for name in vocab.eye])


def eye_colour(images: torch.Tensor, masks: torch.Tensor, colours: torch.Tensor, share: float = 0.15) -> torch.Tensor:
    """Each eye disc must hold some pixels of the asked colour: the mean L1 (per channel) to it of the
    `share` of the disc's pixels closest to it, over images and eyes.

    images (B, 3, H, W) in [0, 1]; masks (B, E, H, W) one disc per eye (>= 0.5 inside); colours (B, 3).
    Only the closest pixels count, so an iris may be drawn anywhere in the disc and the rest of the eye
    (lashes, white, highlight) keeps its own colours. Discs cut off by a crop count by what is left.
    """
    inside = (masks >= 0.5).flatten(2)  # (B, E, HW)
    if not bool(inside.any()):  # no rows, or every disc cropped away
        return images.sum() * 0.0
    d = (images - colours[:, :, None, None]).abs().mean(1).flatten(1)  # (B, HW)
    d = d[:, None].expand_as(inside).masked_fill(~inside, float("inf"))
    k = max(1, round(share * float(inside.sum(-1).float().max())))
    closest = d.topk(k, dim=-1, largest=False).values  # (B, E, k), inf past a disc's own pixels
    finite = torch.isfinite(closest)
    return torch.where(finite, closest, torch.zeros_like(closest)).sum() / finite.sum()

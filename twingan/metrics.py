"""Quality metrics: Frechet distance between feature sets, attribute control accuracy, and an
optional Inception FID/KID path that only reads local weights (nothing is ever downloaded).

The default feature extractor is our evaluation tagger (`checkpoints/tagger-eval`), whose
features are not Inception features: its Frechet distance ("tagger FD") ranks models but is not
comparable with published FID numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from twingan.layers import luma, resize_square
from twingan.vocab import DEFAULT_VOCAB, TagVocab


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) in float64 of features (N, D)."""
    x = _as_float64(feats)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(feats_a, feats_b) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D).

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2). The matrix square root is taken as
    sqrt(S_a) S_b sqrt(S_a), which is symmetric PSD, so an eigen-decomposition is exact and stable
    for near-singular covariances (fewer samples than dimensions), unlike scipy's sqrtm on S_a S_b.
    """
    mu_a, s_a = feature_stats(feats_a)
    mu_b, s_b = feature_stats(feats_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dimensions differ: {mu_a.shape[0]} vs {mu_b.shape[0]}")
    return frechet_distance_from_stats(mu_a, s_a, mu_b, s_b)


def frechet_distance_from_stats(mu_a, s_a, mu_b, s_b) -> float:
    """Frechet distance from precomputed (mean, covariance) pairs (e.g. cached real-data stats)."""
    root_a = _sqrt_psd(np.asarray(s_a, np.float64))
    middle = root_a @ np.asarray(s_b, np.float64) @ root_a
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = np.asarray(mu_a, np.float64) - np.asarray(mu_b, np.float64)
    value = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * tr_covmean
    return float(max(value, 0.0))  # tiny negatives are rounding


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a covariance; negative eigenvalues from rounding are clipped to 0,
    which is what makes singular covariances safe (no eps offset on the diagonal needed)."""
    vals, vecs = np.linalg.eigh((s + s.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def kernel_inception_distance(feats_a, feats_b, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets): unbiased MMD^2 with the cubic polynomial kernel, as in Binkowski et al.

    Pass two independent sets; subsets drawn from one set overlap and bias the value below 0.
    """
    a, b = _as_float64(feats_a), _as_float64(feats_b)
    n = min(subset_size, len(a), len(b))
    if n < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.default_rng(seed)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (n * (n - 1)) - 2 * kxy.mean()
        values.append(mmd)
    return float(np.mean(values)), float(np.std(values))


def _as_float64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


# --- attribute control accuracy -------------------------------------------------------------

def attribute_accuracy(requested: torch.Tensor, probs: torch.Tensor) -> float:
    """Fraction of images whose most likely class (probs (B, C)) is the requested index (B,)."""
    if requested.shape[0] != probs.shape[0]:
        raise ValueError(f"{requested.shape[0]} requests but {probs.shape[0]} predictions")
    return (probs.argmax(-1) == requested.to(probs.device)).float().mean().item()


def control_accuracy(requested: torch.Tensor, tag_probs: torch.Tensor, vocab: TagVocab = DEFAULT_VOCAB,
                     group: str = "hair") -> dict:
    """Control accuracy of one colour group: did the requested colour come out?

    requested: (B,) indices into the group's names; tag_probs: (B, vocab.dim) from a tagger.
    Returns overall accuracy, per requested colour accuracy and the mean over colours.
    """
    names, sl = {"hair": (vocab.hair, vocab.hair_slice), "eye": (vocab.eye, vocab.eye_slice)}[group]
    probs = tag_probs[:, sl]
    hit = probs.argmax(-1).cpu() == requested.cpu()
    per_class = {names[c]: hit[requested.cpu() == c].float().mean().item()
                 for c in requested.unique().tolist()}
    return {"accuracy": hit.float().mean().item(), "per_class": per_class,
            "mean_per_class": sum(per_class.values()) / max(len(per_class), 1)}


@torch.no_grad()
def structure_descriptor(images: torch.Tensor, size: int = 16) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, size*size) unit vectors: the mean-free grey layout at low resolution.

    Grey and low resolution, so colours and fine style count little and pose, framing and shading count most.
    """
    grey = images.float().mean(1, keepdim=True)
    d = torch.nn.functional.adaptive_avg_pool2d(grey, size).flatten(1)
    d = d - d.mean(1, keepdim=True)
    return d / d.norm(dim=1, keepdim=True).clamp_min(1e-8)


def input_retrieval(inputs: torch.Tensor, outputs: torch.Tensor) -> dict:
    """Does each output still show its own input? A judge that knows nothing about tags.

    outputs[i] is the translation of inputs[i]. For every output, the inputs are ranked by the
    cosine similarity of their `structure_descriptor`s; `top1` is the fraction ranked first on
    their own input (chance: 1/N) and `median_rank` the median rank of the right one (1 = best;
    an output that ignores its input sits near N/2). `spread` is the mean per-pixel std of the
    outputs over the set divided by that of the inputs: ~0 when every output is the same picture.
    """
    if inputs.shape[0] != outputs.shape[0] or inputs.shape[0] < 2:
        raise ValueError(f"need two equal sets of >= 2 images, got {inputs.shape[0]} and {outputs.shape[0]}")
    sim = structure_descriptor(outputs) @ structure_descriptor(inputs).T  # (N outputs, N inputs)
    own = sim.diagonal()[:, None]
    rank = 1 + (sim > own).sum(1).float()
    spread = outputs.float().std(0).mean() / inputs.float().std(0).mean().clamp_min(1e-8)
    return {"top1": (rank == 1).float().mean().item(), "median_rank": rank.median().item(),
            "chance_top1": 1 / inputs.shape[0], "spread": spread.item()}


def extract_features(fn: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor],
                     device: str | torch.device = "cpu") -> torch.Tensor:
    """Concatenate `fn(batch)` over image batches (B, 3, H, W) in [0, 1] -> (N, D) on the CPU."""
    return torch.cat([fn(b.to(device)).float().cpu() for b in batches])


# --- optional real Inception features from a local file -------------------------------------

class InceptionFeatures(torch.nn.Module):
    """torchvision Inception-v3 pool features (2048-d) from a LOCAL weights file; never downloads.

    `weights_path` is a state dict for `torchvision.models.inception_v3` (e.g. the file
    torchvision caches as inception_v3_google-*.pth). These are torchvision's ImageNet weights,
    close to but not bit-identical with the TF FID Inception; for published-comparable FID use
    `torchmetrics_fid` with the pytorch-fid weights file.
    """

    def __init__(self, weights_path: str | os.PathLike):
        super().__init__()
        from torchvision.models import inception_v3

        path = Path(weights_path)
        if not path.is_file():
            raise FileNotFoundError(f"Inception weights file not found: {path}. Nothing is downloaded here; "
                                    "copy a torchvision inception_v3 state dict to that path.")
        net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        net.fc = torch.nn.Identity()
        self.net = net.eval()

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> (B, 2048)."""
        x = torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device).view(1, 3, 1, 1)
        return self.net((x - mean) / std)


def torchmetrics_fid(weights_path: str | os.PathLike, real: Iterable[torch.Tensor],
                     fake: Iterable[torch.Tensor]) -> float:
    """FID with torchmetrics' FID Inception, reading the pytorch-fid weights from a local file.

    Requires `torchmetrics` and `torch-fidelity`; raises ImportError / FileNotFoundError otherwise.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"FID Inception weights file not found: {path} (pt_inception-2015-12-05-*.pth); "
                                "nothing is downloaded here.")
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    except ImportError as err:
        raise ImportError("torchmetrics_fid needs `pip install torchmetrics torch-fidelity`; "
                          "or use InceptionFeatures + frechet_distance") from err
    extractor = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                   feature_extractor_weights_path=str(path))
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    for batch in real:
        fid.update(batch, real=True)
    for batch in fake:
        fid.update(batch, real=False)
    return float(fid.compute())


# --- measures that no training loss has seen -------------------------------------------------

@torch.no_grad()
def high_pass(images: torch.Tensor, size: int = 64, sigma: float = 2.0) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, size, size): grey at `size` px minus its Gaussian blur (sigma px)."""
    from torchvision.transforms.functional import gaussian_blur

    grey = resize_square(images.float().mean(1, keepdim=True), size)
    radius = int(np.ceil(3 * sigma))
    return (grey - gaussian_blur(grey, [2 * radius + 1] * 2, [sigma, sigma]))[:, 0]


def fixed_pattern_share(images: torch.Tensor, size: int = 64, sigma: float = 2.0) -> float:
    """Share of the high-pass energy that is the same picture in every image of a set: a grid or
    texture painted at fixed places, whatever the input, scores high.

    mean(avg_img^2) / mean(img^2) over the `high_pass` images; ~1/N for independent images, 1 when
    all are equal. Compare sets of equal size only (the 1/N floor).
    """
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(f"need a set of >= 2 images (N, 3, H, W), got {tuple(images.shape)}")
    hp = high_pass(images, size, sigma).double()
    return float(hp.mean(0).pow(2).mean() / hp.pow(2).mean().clamp_min(1e-20))


class TwoSampleCNN(torch.nn.Module):
    """The classifier two-sample test's small CNN: (B, 3, H, W) in [0, 1] -> one logit (B,)."""

    def __init__(self, width: int = 16, resolution: int = 64):
        super().__init__()
        self.resolution = resolution
        layers, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width, 8 * width):  # R -> R/16
            layers += [torch.nn.Conv2d(c_in, c_out, 3, 2, 1), torch.nn.LeakyReLU(0.2)]
            c_in = c_out
        self.convs = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(c_in, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(resize_square(images, self.resolution) * 2 - 1).mean(dim=(2, 3))).squeeze(1)


def classifier_two_sample_test(a: torch.Tensor, b: torch.Tensor, steps: int = 400, batch: int = 32,
                               lr: float = 2e-3, seed: int = 0, resolution: int = 64) -> dict:
    """Can a fresh small CNN tell image set `a` from set `b` (each (N, 3, H, W) in [0, 1])?

    Half of each set (seeded split) trains a `TwoSampleCNN` for `steps` Adam steps of `batch`
    images per set (random horizontal flips); the other halves score it. `accuracy` is the
    held-out accuracy, balanced over the two sets: 0.5 means indistinguishable, 1 told apart
    every time. `stderr` is its binomial standard error. The CNN sees both sets resized to
    `resolution` px: what is finer than that (blur of a 64 px output shown at 128 px) it cannot see.
    """
    if len(a) < 4 or len(b) < 4:
        raise ValueError(f"need >= 4 images per set, got {len(a)} and {len(b)}")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the CNN's init must not depend on (or move) the global RNG
        torch.manual_seed(seed)
        net = TwoSampleCNN(resolution=resolution)
    pa, pb = torch.randperm(len(a), generator=g), torch.randperm(len(b), generator=g)
    a_train, a_test = a[pa[: len(a) // 2]], a[pa[len(a) // 2:]]
    b_train, b_test = b[pb[: len(b) // 2]], b[pb[len(b) // 2:]]
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    target = torch.cat([torch.ones(batch), torch.zeros(batch)])
    net.train()
    with torch.enable_grad():  # callers often evaluate under no_grad
        for _ in range(steps):
            x = torch.cat([a_train[torch.randint(len(a_train), (batch,), generator=g)],
                           b_train[torch.randint(len(b_train), (batch,), generator=g)]]).float()
            flip = torch.rand(len(x), generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        hit_a = torch.cat([net(x.float()) > 0 for x in a_test.split(100)]).float().mean().item()
        hit_b = torch.cat([net(x.float()) <= 0 for x in b_test.split(100)]).float().mean().item()
    accuracy = (hit_a + hit_b) / 2
    n_test = min(len(a_test), len(b_test))
    return {"accuracy": accuracy, "accuracy_a": hit_a, "accuracy_b": hit_b, "n_train": (len(a_train), len(b_train)),
            "n_test": (len(a_test), len(b_test)), "steps": steps, "resolution": resolution,
            "stderr": float(np.sqrt(max(accuracy * (1 - accuracy), 1e-12) / (2 * n_test)))}


def high_band_magnitude(images: torch.Tensor, size: int = 128, band: float = 0.25) -> torch.Tensor:
    """Per image (N,): the mean spectral magnitude of the grey image above `band` cycles per pixel.

    Images (N, 3, H, W) in [0, 1] are resized to `size` first (antialiased bilinear), so portraits
    of any size are compared at one sampling rate; 0.25 is a quarter of it (Nyquist is 0.5). Fine
    line art and hair strands live there; blur removes them. Real anime faces at 128 px, taken
    down to 64 px and back up bicubically, keep 0.19 of it; down to 32 px, 0.11.
    """
    x = resize_square(images.float(), size).clamp(0, 1)
    grey = luma(x)[:, 0]  # (N, S, S)
    grey = grey - grey.mean((1, 2), keepdim=True)
    magnitude = torch.fft.fft2(grey).abs() / size  # (N, S, S)
    f = torch.fft.fftfreq(size, device=x.device)
    radius = (f[:, None] ** 2 + f[None, :] ** 2).sqrt()
    return magnitude[:, radius > band].mean(1)


def sharpness_ratio(images: torch.Tensor, reference: torch.Tensor, size: int = 128) -> float:
    """Mean high-band magnitude of `images` over that of `reference` (real faces of the target
    domain): 1 is as sharp as the reference at `size` px, lower is blurrier."""
    return float(high_band_magnitude(images, size).mean() / high_band_magnitude(reference, size).mean().clamp_min(1e-12))

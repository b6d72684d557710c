"""Train the anime upscaler (x2 super-resolution, `twingan.upscaler`) and write its held-out report.

    python -m train.helpers.upscaler [DATA_ROOT] --out checkpoints/anime-upscaler --minutes 11 --threads 1

Targets are 128 px anime faces: `anime_tags` (split train of tags.csv) and `selfie2anime/trainB`.
Inputs are the same faces at 64 px, degraded the way a GAN generator's output is (`degrade`: blur,
a random down-sampling kernel, colour blotches, noise, JPEG), so the network learns to sharpen and
clean the app's portraits, not only to enlarge clean images. Held out: `anime_tags` split test and
`selfie2anime/testB`. The output folder gets config.json + model.safetensors (fp16), report.json
(measured on the saved fp16 checkpoint reloaded) and a README.md model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from train.augment import _jpeg
from train.config import default_data_root
from train.data import DataError, decode_images, list_images
from train.tags_data import read_tags_csv
from twingan.checkpoint import load_pretrained, save_pretrained
from twingan.metrics import sharpness_ratio
from twingan.upscaler import AnimeUpscaler, UpscalerConfig

HR_SIZE = 128  # px: the size of the data's faces, the targets
KERNELS = ("bicubic", "bilinear", "area", "bicubic-aliased")  # the random down-sampling kernels


@dataclass(frozen=True)
class Degradation:
    """How training inputs are degraded (each with its own chance per image), in the order applied."""

    clean: float = 0.2  # share of inputs only downsampled (bicubic, antialiased): clean inputs must stay clean
    blur: float = 0.7  # Gaussian blur before downsampling: generator output is softer than a clean downsample
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # target px
    blotches: float = 0.5  # low-frequency colour noise and a few soft dots: a generator's colour artefacts
    blotch_amplitude: float = 0.04  # of the colour field; the dots reach about 0.15
    noise: float = 0.5  # Gaussian pixel noise, a third of it grey (luma only)
    noise_sigma: tuple[float, float] = (0.0, 0.03)
    jpeg: float = 0.5  # JPEG round trip: re-encoded portraits and blocky generator textures
    jpeg_quality: tuple[int, int] = (30, 95)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_root", nargs="?", type=Path, default=None,
                   help="folder holding anime_tags/ and selfie2anime/ (default $TWINGAN_DATA, else ../shared/data)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--minutes", type=float, default=15.0, help="training wall time (the schedule follows it)")
    p.add_argument("--steps", type=int, default=None, help="stop after this many steps (whichever comes first)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--patch", type=int, default=80,
                   help="target crop side in px (a multiple of 4, <= 128); the input crop is half")
    p.add_argument("--lr", type=float, default=2e-3, help="peak Adam learning rate (3%% warm-up, cosine decay)")
    p.add_argument("--freq-weight", type=float, default=0.0,
                   help="weight of the L1 distance between Fourier spectra, beside the pixel L1")
    p.add_argument("--channels", type=int, default=UpscalerConfig.channels)
    p.add_argument("--blocks", type=int, default=UpscalerConfig.blocks)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="use only the first N images of each folder (smoke tests)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (and image decoders); the machine is shared")
    p.add_argument("--log-every", type=int, default=50, help="steps per point of the loss curve in report.json")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the resolved options and the data found, train nothing")
    args = p.parse_args(argv)
    if args.data_root is None:
        args.data_root = Path(default_data_root())
    if args.minutes <= 0 or (args.steps is not None and args.steps < 1):
        p.error("--minutes must be > 0 and --steps >= 1")
    if args.patch % 4 or not 16 <= args.patch <= HR_SIZE:
        p.error(f"--patch must be a multiple of 4 between 16 and {HR_SIZE}, got {args.patch}")
    if args.batch_size < 1 or args.threads < 1 or args.log_every < 1:
        p.error("--batch-size, --threads and --log-every must be >= 1")
    return args


# ---------------------------------------------------------------------------------------------
# Data

def face_folders(root: Path, held_out: bool) -> list[tuple[str, Path, list[str]]]:
    """(name, folder, files) of each image set of the training side, or of the held-out side."""
    split = "test" if held_out else "train"
    tagged = read_tags_csv(root / "anime_tags" / "tags.csv", split=split)
    unlabelled = root / "selfie2anime" / ("testB" if held_out else "trainB")
    return [(f"anime_tags {split}", root / "anime_tags" / "images", sorted(tagged)),
            (f"selfie2anime/{unlabelled.name}", unlabelled, list_images(unlabelled))]


def load_faces(root: Path, held_out: bool, limit: int | None = None, workers: int = 1,
               progress: bool = False) -> tuple[torch.Tensor, dict[str, int], list[str]]:
    """(N, 3, 128, 128) uint8 faces of one side, the count per image set (in order), skip messages."""
    parts, counts, skipped = [], {}, []
    for name, folder, files in face_folders(root, held_out):
        images, kept, skips = decode_images(folder, files[:limit] if limit else files, HR_SIZE,
                                            workers=workers, progress=progress)
        parts.append(images)
        counts[name] = len(kept)
        skipped += skips
    return torch.cat(parts), counts, skipped


# ---------------------------------------------------------------------------------------------
# Degradations: (B, 3, H, W) floats in [0, 1]; every draw comes from the given generator

def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Per-image separable Gaussian blur; sigma (B,) in px, 0 leaves the image as it is."""
    b, c, h, w = images.shape
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-t**2 / (2 * sigma.to(images).clamp_min(1e-3)[:, None] ** 2))  # (B, K)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, K): one kernel per channel
    x = F.pad(images.reshape(1, b * c, h, w), (radius,) * 4, mode="reflect")
    x = F.conv2d(x, k[:, None, None, :], groups=b * c)
    x = F.conv2d(x, k[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)


def downsample(images: torch.Tensor, kind: str) -> torch.Tensor:
    """Halve the side with one of KERNELS."""
    size = (images.shape[-2] // 2, images.shape[-1] // 2)
    if kind == "area":
        return F.avg_pool2d(images, 2)
    if kind == "bicubic-aliased":  # no antialiasing: sharp, a little jagged
        return F.interpolate(images, size=size, mode="bicubic", align_corners=False)
    return F.interpolate(images, size=size, mode=kind, antialias=True, align_corners=False)


def add_blotches(images: torch.Tensor, generator: torch.Generator, amplitude: torch.Tensor,
                 dots: int = 3) -> torch.Tensor:
    """A coarse random colour field, smoothly enlarged (amplitude (B,)), plus up to `dots` soft
    coloured dots of 0.7-2.5 px radius per image."""
    b, c, h, w = images.shape
    coarse = torch.randn(b, c, 4, 4, generator=generator)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)  # (B, 3, H, W)
    centre = torch.rand(b, dots, 2, generator=generator) * torch.tensor([h, w])
    radius = 0.7 + 1.8 * torch.rand(b, dots, generator=generator)
    present = (torch.rand(b, dots, generator=generator) < 0.5).float()
    colour = 0.15 * torch.randn(b, dots, c, generator=generator) * present[..., None]  # (B, D, 3)
    yy = torch.arange(h, dtype=torch.float32)[None, None, :, None]
    xx = torch.arange(w, dtype=torch.float32)[None, None, None, :]
    dist2 = (yy - centre[..., 0, None, None]) ** 2 + (xx - centre[..., 1, None, None]) ** 2  # (B, D, H, W)
    spots = torch.einsum("bdhw,bdc->bchw", torch.exp(-dist2 / (2 * radius[..., None, None] ** 2)), colour)
    noise = amplitude[:, None, None, None] * field + spots
    return images + noise.to(images)


def degrade(hr: torch.Tensor, generator: torch.Generator, d: Degradation = Degradation()) -> torch.Tensor:
    """Targets (B, 3, H, W) in [0, 1] -> inputs (B, 3, H/2, W/2) in [0, 1], degraded like a GAN's output."""
    b = hr.shape[0]

    def chance(q: float) -> torch.Tensor:  # (B,) bools, never for the clean share
        return (torch.rand(b, generator=generator) < q) & ~clean

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator)

    clean = torch.rand(b, generator=generator) < d.clean
    sigma = torch.where(chance(d.blur), uniform(*d.blur_sigma), torch.zeros(b))
    x = gaussian_blur(hr, sigma) if bool(sigma.any()) else hr
    kind = torch.where(clean, 0, torch.randint(len(KERNELS), (b,), generator=generator))
    lr = torch.empty(b, 3, hr.shape[-2] // 2, hr.shape[-1] // 2, dtype=hr.dtype)
    for k, name in enumerate(KERNELS):
        if bool((kind == k).any()):
            lr[kind == k] = downsample(x[kind == k], name)
    blotched = chance(d.blotches)
    amplitude = torch.where(blotched, uniform(0, d.blotch_amplitude), torch.zeros(b))
    lr = torch.where(blotched[:, None, None, None], add_blotches(lr, generator, amplitude), lr)
    noisy = chance(d.noise)
    sigma = torch.where(noisy, uniform(*d.noise_sigma), torch.zeros(b))[:, None, None, None]
    grey = (torch.rand(b, generator=generator) < 1 / 3)[:, None, None, None]
    noise = torch.randn(lr.shape, generator=generator)
    noise = torch.where(grey, noise[:, :1].expand_as(noise), noise)
    lr = (lr + sigma * noise).clamp(0, 1)
    jpeg = chance(d.jpeg)
    quality = torch.randint(d.jpeg_quality[0], d.jpeg_quality[1] + 1, (b,), generator=generator)
    for i in torch.nonzero(jpeg).flatten().tolist():
        lr[i] = _jpeg(lr[i], int(quality[i]))
    return lr


def clean_input(hr: torch.Tensor) -> torch.Tensor:
    """The plain 64 px version of a target: antialiased bicubic, as the GAN's training faces are made,
    rounded to 8 bits."""
    return (downsample(hr, "bicubic").clamp(0, 1) * 255).round() / 255


def bicubic_up(images: torch.Tensor) -> torch.Tensor:
    """The baseline: x2 bicubic, clamped."""
    return F.interpolate(images, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)


# ---------------------------------------------------------------------------------------------
# Training

def frequency_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance of the (orthonormal) 2-D Fourier spectra: weighs fine detail as much as
    flat areas, which the pixel L1 lets blur."""
    return (torch.fft.rfft2(out, norm="ortho") - torch.fft.rfft2(target, norm="ortho")).abs().mean()


def upscaler_loss(model: AnimeUpscaler, lr: torch.Tensor, hr: torch.Tensor, freq_weight: float) -> torch.Tensor:
    out = model(lr)
    loss = F.l1_loss(out, hr)
    if freq_weight:
        loss = loss + freq_weight * frequency_loss(out, hr)
    return loss


def learning_rate(progress: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up over the first `warmup` of training, then cosine decay to 2% of the peak."""
    if progress < warmup:
        return peak * progress / warmup
    t = min(1.0, (progress - warmup) / (1 - warmup))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


def training_batch(images: torch.Tensor, batch_size: int, patch: int,
                   generator: torch.Generator) -> torch.Tensor:
    """Random faces, flipped half the time, each cropped to a random patch at even offsets (so the
    half-size input stays aligned with its target): (B, 3, patch, patch) floats in [0, 1]."""
    idx = torch.randint(len(images), (batch_size,), generator=generator)
    tops = 2 * torch.randint((images.shape[-2] - patch) // 2 + 1, (batch_size, 2), generator=generator)
    flip = torch.rand(batch_size, generator=generator) < 0.5
    crops = []
    for i, (y, x) in zip(idx.tolist(), tops.tolist()):
        crop = images[i, :, y:y + patch, x:x + patch]
        crops.append(crop.flip(-1) if flip[len(crops)] else crop)
    return torch.stack(crops).float() / 255


def train_upscaler(model: AnimeUpscaler, images: torch.Tensor, args: argparse.Namespace,
                   degradation: Degradation = Degradation()) -> dict:
    """Adam, warm-up + cosine schedule over `args.minutes` (or `args.steps`, whichever ends first),
    on targets cropped from `images` (N, 3, H, W) uint8 and inputs made from them by `degrade`.

    Returns {"steps", "seconds", "loss_curve": [[step, mean loss since the last point], ...]}.
    """
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.99))
    budget = args.minutes * 60
    bar = tqdm(total=args.steps, desc="upscaler", unit="step", disable=args.no_progress)
    curve, total, count, step = [], 0.0, 0, 0
    start = time.time()
    model.train()
    while True:
        progress = (time.time() - start) / budget
        if args.steps:
            progress = max(progress, step / args.steps)
        if progress >= 1:
            break
        for group in opt.param_groups:
            group["lr"] = learning_rate(progress, args.lr)
        hr = training_batch(images, args.batch_size, args.patch, gen)
        lr = degrade(hr, gen, degradation)
        loss = upscaler_loss(model, lr, hr, args.freq_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        total, count = total + loss.item(), count + 1
        if step % args.log_every == 0:
            curve.append([step, round(total / count, 6)])
            bar.set_postfix(loss=f"{total / count:.4f}", min=f"{(time.time() - start) / 60:.1f}")
            total, count = 0.0, 0
        bar.update()
    bar.close()
    if count:
        curve.append([step, round(total / count, 6)])
    model.eval()
    return {"steps": step, "seconds": round(time.time() - start, 1), "loss_curve": curve}


# ---------------------------------------------------------------------------------------------
# Evaluation

def psnr(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per image (N,) peak signal-to-noise ratio in dB of [0, 1] images."""
    mse = (images.float() - reference.float()).square().mean((1, 2, 3)).clamp_min(1e-10)
    return -10 * torch.log10(mse)


@torch.no_grad()
def evaluate(model: AnimeUpscaler, faces: torch.Tensor, counts: dict[str, int], seed: int = 1234,
             batch_size: int = 100) -> dict:
    """Upscaler vs bicubic on 64 -> 128 of held-out faces (uint8 (N, 3, 128, 128)), for clean and
    degraded inputs (one fixed draw): mean PSNR (dB) overall and per image set, and the sharpness
    ratio (`twingan.metrics.sharpness_ratio`) of each against the real faces."""
    gen = torch.Generator().manual_seed(seed)
    scores = {kind: {"upscaler": [], "bicubic": []} for kind in ("clean", "degraded")}
    outputs = {kind: {"upscaler": [], "bicubic": []} for kind in ("clean", "degraded")}
    for i in range(0, len(faces), batch_size):
        hr = faces[i:i + batch_size].float() / 255
        for kind, lr in (("clean", clean_input(hr)), ("degraded", degrade(hr, gen))):
            for name, out in (("upscaler", model.upscale(lr)), ("bicubic", bicubic_up(lr))):
                scores[kind][name].append(psnr(out, hr))
                outputs[kind][name].append((out * 255).round().byte())  # as shown: 8 bits
    real = faces.float() / 255
    report = {}
    for kind in scores:
        entry = {"psnr_db": {}, "sharpness_ratio": {}, "psnr_db_by_set": {}}
        for name in ("upscaler", "bicubic"):
            values = torch.cat(scores[kind][name])
            entry["psnr_db"][name] = round(values.mean().item(), 3)
            entry["sharpness_ratio"][name] = round(sharpness_ratio(torch.cat(outputs[kind][name]).float() / 255,
                                                                   real), 4)
            start = 0
            for set_name, n in counts.items():
                entry["psnr_db_by_set"].setdefault(set_name, {})[name] = round(values[start:start + n].mean().item(), 3)
                start += n
        report[kind] = entry
    return report


# ---------------------------------------------------------------------------------------------
# Model card

def write_readme(out: Path, args: argparse.Namespace, report: dict, argv: list[str]) -> None:
    cmd = "python -m train.helpers.upscaler " + " ".join(argv)
    ev, cfg = report["held_out"], report["config"]
    n_train = ", ".join(f"`{k}` {v}" for k, v in report["n_train"].items())
    n_test = ", ".join(f"`{k}` {v}" for k, v in report["n_test"].items())

    def row(kind: str, label: str) -> str:
        e = ev[kind]
        return (f"| {label} | {e['psnr_db']['upscaler']:.2f} | {e['psnr_db']['bicubic']:.2f} | "
                f"{e['sharpness_ratio']['upscaler']:.3f} | {e['sharpness_ratio']['bicubic']:.3f} |")

    loss = f" + {args.freq_weight} x L1 of the Fourier spectra" if args.freq_weight else ""
    d = Degradation()
    lines = [
        f"# Anime upscaler ({out.name})", "",
        f"A small x2 super-resolution network for anime faces (`twingan.upscaler.AnimeUpscaler`, "
        f"{report['params']:,} parameters, fp16 weights): {cfg['blocks']} residual blocks of {cfg['channels']} "
        f"channels at half the input resolution (pixel-unshuffled), then pixel shuffle; the output is the "
        "bicubic enlargement plus the predicted residual. The app applies it once to take the 128 px "
        "translator's portraits to the 256 px shown (twice for a 64 px translator's).", "",
        f"Data: `shared/data` (third-party research data; see its README): {n_train} faces for training, "
        f"held out {n_test}. The images are not part of this repository; only weights trained on them are.", "",
        "Training inputs: the 128 px faces taken to 64 px, degraded like a GAN generator's output: "
        f"{d.clean:.0%} only downsampled (bicubic); the rest, each with its own chance, a Gaussian blur "
        f"(sigma {d.blur_sigma[0]}-{d.blur_sigma[1]} px, {d.blur:.0%}), a random down-sampling kernel "
        f"({', '.join(KERNELS)}), colour blotches (a low-frequency colour field and soft dots, {d.blotches:.0%}), "
        f"Gaussian noise (sigma up to {d.noise_sigma[1]}, {d.noise:.0%}) and JPEG at quality "
        f"{d.jpeg_quality[0]}-{d.jpeg_quality[1]} ({d.jpeg:.0%}). "
        f"Loss: L1{loss}. {args.patch} px target crops, batch {args.batch_size}, Adam at {args.lr} "
        f"(warm-up, cosine), {report['steps']:,} steps.", "",
        "## Held-out faces, 64 -> 128 px (fp16 checkpoint reloaded)", "",
        f"Mean PSNR against the real 128 px faces, and the sharpness ratio (`twingan.metrics.sharpness_ratio`: "
        f"high-band spectral magnitude over that of the real faces, 1 = as sharp) on {sum(report['n_test'].values())} "
        "held-out faces. Clean: antialiased bicubic downsamples; degraded: one fixed draw of the training "
        "degradations.", "",
        "| input | PSNR upscaler (dB) | PSNR bicubic (dB) | sharpness upscaler | sharpness bicubic |",
        "|---|---|---|---|---|",
        row("clean", "clean 64 px"), row("degraded", "degraded 64 px"), "",
        "PSNR per image set (upscaler / bicubic): " + "; ".join(
            kind + " " + ", ".join(f"`{s}` {v['upscaler']:.2f} / {v['bicubic']:.2f}"
                                   for s, v in ev[kind]["psnr_db_by_set"].items())
            for kind in ("clean", "degraded")) + ".", "",
        f"Trained for {report['train_seconds'] / 60:.1f} min on {args.threads} CPU thread(s) of a 2-core machine "
        "(the schedule follows the minutes, so the steps above depend on the machine and what else it ran). "
        "`report.json` holds all numbers, the loss curve and the options.", "",
        "Reproduce (from the repo root):", "", "```", cmd, "```", ""]
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    """Train, save, reload, evaluate and write the report; returns the report dict."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    config = UpscalerConfig(channels=args.channels, blocks=args.blocks)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    if args.dry_run:
        found = {("held out " if held else "train ") + name: len(files)
                 for held in (False, True) for name, _, files in face_folders(args.data_root, held)}
        print(json.dumps({"options": options, "config": dataclasses.asdict(config), "images": found,
                          "degradation": dataclasses.asdict(Degradation())}, indent=1))
        return {}
    t0 = time.time()
    train_faces, n_train, skipped = load_faces(args.data_root, False, args.limit, args.threads, progress)
    test_faces, n_test, skipped_test = load_faces(args.data_root, True, args.limit, args.threads, progress)
    load_seconds = time.time() - t0

    model = AnimeUpscaler(config)
    run = train_upscaler(model, train_faces, args)

    args.out.mkdir(parents=True, exist_ok=True)
    save_pretrained(model, args.out, dtype=torch.float16)
    reloaded = load_pretrained(AnimeUpscaler, args.out)  # report what users will load, fp16 rounding included
    held_out = evaluate(reloaded, test_faces, n_test)
    report = {"held_out": held_out, "n_train": n_train, "n_test": n_test,
              "skipped_images": len(skipped) + len(skipped_test), "skipped_examples": (skipped + skipped_test)[:10],
              "params": sum(p.numel() for p in model.parameters()), "config": dataclasses.asdict(config),
              "steps": run["steps"], "images_seen": run["steps"] * args.batch_size,
              "train_seconds": run["seconds"], "load_seconds": round(load_seconds, 1),
              "loss_curve": run["loss_curve"], "degradation": dataclasses.asdict(Degradation()), "options": options}
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    write_readme(args.out, args, report, argv)
    c, d = held_out["clean"], held_out["degraded"]
    print(f"held out PSNR clean {c['psnr_db']['upscaler']:.2f} dB (bicubic {c['psnr_db']['bicubic']:.2f}), "
          f"degraded {d['psnr_db']['upscaler']:.2f} (bicubic {d['psnr_db']['bicubic']:.2f}); sharpness clean "
          f"{c['sharpness_ratio']['upscaler']:.3f} (bicubic {c['sharpness_ratio']['bicubic']:.3f}); "
          f"{run['steps']} steps in {run['seconds'] / 60:.1f} min; wrote {args.out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    try:
        main()
    except DataError as err:  # expected bad input: a clear one-line message, not a traceback
        sys.exit(f"error: {err}")

"""Train `checkpoints/portrait-segmenter` (`twingan.segmenter`): the person mask behind the app's
"plain background", distilled from MediaPipe's selfie segmentation model.

Three steps, each resumable from its output folder (keep it outside the repository):

    python -m train.helpers.segmenter crops RUN [--data ../shared/data] [--celeba 6000]
    python -m train.helpers.segmenter label RUN        # needs mediapipe==0.10.14 (its own venv)
    python -m train.helpers.segmenter fit RUN --out checkpoints/portrait-segmenter [--minutes 25]

`crops`: the app's face crops (`TranslationPipeline`'s framing and size, faded past the photo's
edges) of the selfie2anime training selfies and of CelebA faces, as JPEGs in RUN/crops.
`label`: MediaPipe's general selfie segmentation model (Apache 2.0; the `.tflite` ships inside the
`mediapipe` wheel) reads each crop's person mask, saved at the student's resolution in
RUN/masks.npz. Only this step needs MediaPipe, a heavy package the app does without.
`fit`: the student (`twingan.segmenter.PortraitSegmenter`) learns the masks with a per-pixel
binary cross-entropy on the soft labels, flips and colour jitter; the last 5% of the crops are held
out and the report gives the student's agreement with the teacher on them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from train.config import REPO_ROOT, default_data_root
from train.decode import list_images

SOURCES = (("selfie2anime/trainA", None), ("celeba/images", "celeba"))
HELD_OUT = 0.05  # the last share of the crops (in name order), never trained on


def make_crops(data: Path, run: Path, celeba: int, size: int = 256) -> dict:
    """The app's crops of the training selfies and the first `celeba` CelebA faces -> RUN/crops/*.jpg."""
    from twingan.faces import PORTRAIT_MARGINS, FaceCropper, ImageError, NoFaceError

    out = run / "crops"
    out.mkdir(parents=True, exist_ok=True)
    cropper = FaceCropper(size, max_faces=1, margins=PORTRAIT_MARGINS)
    counts = {"photos": 0, "faces": 0, "no_face": 0}
    for folder, prefix in SOURCES:
        names = list_images(data / folder)
        if prefix == "celeba":
            names = names[:celeba]
        for name in _progress(names, f"crops of {folder}"):
            target = out / f"{prefix or 'selfie'}_{Path(name).stem}.jpg"
            counts["photos"] += 1
            if target.exists():
                counts["faces"] += 1
                continue
            try:
                face = cropper(data / folder / name)[0]
            except (NoFaceError, ImageError):
                counts["no_face"] += 1
                continue
            face.image.save(target, quality=95)
            counts["faces"] += 1
    return counts


def label(run: Path, resolution: int) -> dict:
    """MediaPipe's person masks of RUN/crops -> RUN/masks.npz (uint8, resolution x resolution)."""
    try:
        import mediapipe as mp
    except ImportError:
        raise SystemExit("the label step needs MediaPipe: pip install mediapipe==0.10.14") from None
    from PIL import Image

    names = sorted(p.name for p in (run / "crops").glob("*.jpg"))
    if not names:
        raise SystemExit(f"no crops in {run / 'crops'}: run the crops step first")
    masks = np.zeros((len(names), resolution, resolution), np.uint8)
    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as teacher:
        for i, name in enumerate(_progress(names, "teacher masks")):
            image = np.asarray(Image.open(run / "crops" / name).convert("RGB"))
            mask = teacher.process(image).segmentation_mask  # float32 in [0, 1], the crop's size
            small = Image.fromarray((mask * 255).round().astype(np.uint8)).resize((resolution, resolution), Image.BILINEAR)
            masks[i] = np.asarray(small)
    np.savez_compressed(run / "masks.npz", names=np.array(names), masks=masks)
    return {"masks": len(names), "foreground_share": float(masks.mean() / 255)}


def load_pairs(run: Path, resolution: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(N, 3, R, R) uint8 crops and (N, 1, R, R) uint8 masks of RUN, in name order."""
    from PIL import Image

    stored = np.load(run / "masks.npz")
    names = [str(n) for n in stored["names"]]
    masks = torch.from_numpy(stored["masks"])[:, None]
    if masks.shape[-1] != resolution:
        raise SystemExit(f"masks are {masks.shape[-1]} px, the student takes {resolution}: label again")
    images = torch.empty(len(names), 3, resolution, resolution, dtype=torch.uint8)
    for i, name in enumerate(_progress(names, "loading crops")):
        small = Image.open(run / "crops" / name).convert("RGB").resize((resolution, resolution), Image.BILINEAR)
        images[i] = torch.from_numpy(np.asarray(small).copy()).permute(2, 0, 1)
    return images, masks, names


def agreement(model, images: torch.Tensor, masks: torch.Tensor) -> dict:
    """The student against the teacher's masks: IoU of the masks cut at 0.5 (pooled over all pixels),
    mean absolute difference of the soft masks, and the share of pixels on the other side of 0.5."""
    with torch.no_grad():
        pred = torch.cat([model(images[i:i + 64].float() / 255) for i in range(0, len(images), 64)])
    truth = masks.float() / 255
    a, b = pred > 0.5, truth > 0.5
    return {"iou": float((a & b).sum() / (a | b).sum().clamp_min(1)),
            "mean_abs": float((pred - truth).abs().mean()),
            "pixels_flipped": float((a != b).float().mean())}


def fit(run: Path, out: Path, minutes: float, batch: int, lr: float, threads: int, seed: int,
        config=None, init: Path | None = None) -> dict:
    """Train the student (`config`: a SegmenterConfig, default the shipped one; or the weights and
    config of the checkpoint `init`, trained on) on RUN's crops and masks for `minutes`, export it to
    `out` with report.json."""
    from twingan.checkpoint import load_pretrained, save_pretrained
    from twingan.segmenter import PortraitSegmenter, SegmenterConfig

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    start = load_pretrained(PortraitSegmenter, init) if init is not None else None
    config = start.config if start is not None else config or SegmenterConfig()
    images, masks, names = load_pairs(run, config.resolution)
    n_val = max(1, math.ceil(len(names) * HELD_OUT))
    train_x, train_y, val_x, val_y = images[:-n_val], masks[:-n_val], images[-n_val:], masks[-n_val:]
    model = start.float().train() if start is not None else PortraitSegmenter(config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    deadline, step, started = time.monotonic() + minutes * 60, 0, time.monotonic()
    total = None
    while time.monotonic() < deadline:
        idx = torch.randint(len(train_x), (batch,))
        x, y = train_x[idx].float() / 255, train_y[idx].float() / 255
        flip = torch.rand(batch) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        # Colour jitter per image: brightness, contrast, a white-balance tilt, some greyscale.
        gain = 1 + 0.25 * (torch.rand(batch, 1, 1, 1) * 2 - 1)
        tilt = 1 + 0.08 * (torch.rand(batch, 3, 1, 1) * 2 - 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * gain + mean) * tilt
        grey = torch.rand(batch) < 0.1
        x[grey] = x[grey].mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
        logits = model.logits(x.clamp(0, 1))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # Cosine decay over the time budget (the step count is not known in advance).
        done = min(1.0, (time.monotonic() - started) / (minutes * 60))
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * done))
        opt.step()
        step += 1
        total = loss.item() if total is None else 0.98 * total + 0.02 * loss.item()
        if step % 200 == 0:
            print(f"step {step} loss {total:.4f} ({(time.monotonic() - started) / 60:.1f} min)", flush=True)
    save_pretrained(model.eval(), out, torch.float16)
    shipped = load_pretrained(PortraitSegmenter, out).eval()  # measured as the app loads it: fp16 weights
    report = {"steps": step, "batch": batch, "minutes": minutes, "lr": lr, "seed": seed, "threads": threads,
              "init": str(init) if init is not None else None,
              "train_crops": len(train_x), "held_out_crops": n_val, "held_out": agreement(shipped, val_x, val_y)}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _progress(items, desc):
    return tqdm(items, desc=desc, mininterval=10)  # a line every 10 s: these steps run with their output in a log


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.helpers.segmenter", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="step", required=True)
    c = sub.add_parser("crops", help="the app's face crops of the training faces")
    c.add_argument("run", type=Path)
    c.add_argument("--data", type=Path, default=Path(default_data_root()))
    c.add_argument("--celeba", type=int, default=6000, help="how many CelebA faces (in name order)")
    lab = sub.add_parser("label", help="the teacher's masks (needs mediapipe)")
    lab.add_argument("run", type=Path)
    f = sub.add_parser("fit", help="train the student and export it")
    f.add_argument("run", type=Path)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--minutes", type=float, default=25)
    f.add_argument("--batch", type=int, default=32)
    f.add_argument("--lr", type=float, default=3e-3)
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--init", type=Path, help="train on from this segmenter checkpoint (its config too)")
    args = p.parse_args(argv)
    run = args.run.resolve()
    if REPO_ROOT in run.parents:
        p.error(f"{run} is inside the repository; keep run folders (dataset crops) outside it")
    if args.step == "crops":
        result = make_crops(args.data, run, args.celeba)
    elif args.step == "label":
        from twingan.segmenter import SegmenterConfig
        result = label(run, SegmenterConfig().resolution)
    else:
        result = fit(run, args.out, args.minutes, args.batch, args.lr, args.threads, args.seed, init=args.init)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the independent evaluation feature network (`twingan.featnet`): contrastive (SimCLR) on
anime_tags train faces + CelebA train faces. Never on selfie2anime, whose test splits it judges.

    python -m train.helpers.featnet --out checkpoints/featnet-eval --seed 0 --threads 1

The output folder gets config.json + model.safetensors (fp16), report.json (held-out
view-matching accuracy and loss, a Frechet-distance reference scale, all measured on the saved fp16 checkpoint
reloaded) and a README.md. Nothing else in train/ may import this network except train.evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from train.augment import augment
from train.config import default_data_root
from train.data import decode_images, list_images
from train.helpers.tagger import adamw_one_cycle
from train.tags_data import celeba_split, read_tags_csv
from twingan.checkpoint import load_pretrained, save_pretrained
from twingan.featnet import FeatureNet, FeatureNetConfig, contrastive_loss


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.helpers.featnet", description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(default_data_root()),
                   help="data root (default $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64, help="images per step, each in two augmented views")
    p.add_argument("--temperature", type=float, default=0.2, help="NT-Xent temperature")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channels", type=int, nargs="+", default=None, help="per-stage widths (default: config's)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images per source and split (smoke tests)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--amp", choices=("bf16", "none"), default="bf16", help="bf16 autocast on CPUs that have it")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 2 or args.resolution < 16:
        p.error("--epochs must be >= 1, --batch-size >= 2 and --resolution >= 16")
    return args


def load_faces(data: Path, split: str, resolution: int, limit: int = 0) -> dict[str, torch.Tensor]:
    """uint8 (N, 3, R, R) anime_tags faces and CelebA faces of one split (train or test)."""
    rows = read_tags_csv(data / "anime_tags" / "tags.csv", split=split)
    anime_files = sorted(rows)[: limit or None]
    anime, _, _ = decode_images(data / "anime_tags" / "images", anime_files, resolution)
    celeba_files = [f for f in list_images(data / "celeba" / "images") if celeba_split(f) == split][: limit or None]
    celeba, _, _ = decode_images(data / "celeba" / "images", celeba_files, resolution)
    return {"anime": anime, "celeba": celeba}


def two_views(images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two augmentations of a float batch (B, 3, H, W): crop, flip, brightness, a mild per-channel gain
    (so colour alone cannot match the views) and grey for 1 in 5. No blur: the features must see detail."""
    views = []
    for _ in range(2):
        x = augment(images, generator, min_scale=0.6, brightness=0.15)
        x = x * (1 + 0.3 * (torch.rand(len(x), 3, 1, 1, generator=generator) - 0.5))
        grey = torch.rand(len(x), generator=generator) < 0.2
        x = torch.where(grey[:, None, None, None], x.mean(1, keepdim=True).expand_as(x), x)
        views.append(x.clamp(0, 1))
    return views[0], views[1]


def view_loss(model: FeatureNet, images: torch.Tensor, generator: torch.Generator, amp: bool,
              temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent of two views of `images`; also the hit mask (2B,) of views that found their partner."""
    a, b = two_views(images, generator)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        z = model(torch.cat([a, b]))
    return contrastive_loss(*z.float().chunk(2), temperature)


def train(model: FeatureNet, images: torch.Tensor, args) -> list[float]:
    """AdamW + one-cycle over `args.epochs` on uint8 images (N, 3, R, R); mean loss per epoch."""
    gen = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = len(images) // args.batch_size
    opt, sched = adamw_one_cycle(model, args, args.epochs * steps_per_epoch)
    history = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(images), generator=gen)
        total, t0 = 0.0, time.time()
        for step in range(steps_per_epoch):
            idx = order[step * args.batch_size:(step + 1) * args.batch_size]
            loss, _ = view_loss(model, images[idx].float() / 255, gen, args.amp == "bf16", args.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
            if step % 100 == 0:
                print(f"epoch {epoch + 1} step {step}/{steps_per_epoch} loss {loss.item():.4f} "
                      f"({time.time() - t0:.0f}s)", flush=True)
        history.append(total / steps_per_epoch)
        print(f"epoch {epoch + 1}/{args.epochs}: mean loss {history[-1]:.4f}", flush=True)
    return history


@torch.no_grad()
def held_out_views(model: FeatureNet, images: torch.Tensor, temperature: float, batch: int = 128) -> dict:
    """View matching on uint8 images (N, 3, R, R) in seeded batches of `batch`: accuracy of finding
    the partner view among 2 * batch - 1 (chance 1 / (2 * batch - 1)) and the NT-Xent loss."""
    model.eval()
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(images), generator=gen)
    loss, hits, count = 0.0, 0, 0
    for i in range(0, len(images) - batch + 1, batch):
        batch_loss, hit = view_loss(model, images[order[i:i + batch]].float() / 255, gen, False, temperature)
        loss, hits, count = loss + batch_loss.item() * len(hit), hits + int(hit.sum()), count + len(hit)
    return {"accuracy": hits / count, "loss": loss / count, "batch": batch, "chance": 1 / (2 * batch - 1)}


@torch.no_grad()
def reference_scale(model: FeatureNet, data: Path, test: dict, resolution: int, n: int = 1000) -> dict:
    """FD of the anime_tags test faces against other sets, so a reader can place a value."""
    from twingan.metrics import frechet_distance

    def feats(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([model.features(x[i:i + 100].float() / 255) for i in range(0, len(x), 100)])

    anime_test = feats(test["anime"][:n])
    rows = read_tags_csv(data / "anime_tags" / "tags.csv", split="train")
    others = {"anime_tags train (floor)": decode_images(data / "anime_tags" / "images", sorted(rows)[:n], resolution)[0]}
    for name in ("trainB", "trainA"):
        folder = data / "selfie2anime" / name
        if folder.is_dir():
            label = "selfie2anime trainB anime faces" if name == "trainB" else "selfie2anime trainA human selfies"
            others[label] = decode_images(folder, list_images(folder)[:n], resolution)[0]
    others["CelebA test faces"] = test["celeba"][:n]
    blurred = F.avg_pool2d(others["anime_tags train (floor)"].float(), 3, 1, 1, count_include_pad=False)
    others["anime_tags train, 3x3 box-blurred"] = blurred.round().to(torch.uint8)
    return {name: {"n": len(x), "fd": frechet_distance(anime_test, feats(x))} for name, x in others.items()}


def write_readme(folder: Path, report: dict, argv: list[str]) -> None:
    a, ho = report["args"], report["held_out"]
    scale = "\n".join(f"| {k} ({v['n']}) | {v['fd']:.2f} |" for k, v in report["reference_fd"].items())
    (folder / "README.md").write_text(f"""# Independent evaluation feature network (featnet-eval)

Small residual CNN (`twingan.featnet.FeatureNet`, {report['parameters']:,} parameters, GroupNorm, fp16
weights) trained self-supervised and contrastively (SimCLR, NT-Xent at temperature {a['temperature']}): two
augmented views of a face (crop, flip, brightness, channel gain, sometimes grey; never blur) must find
each other among all views of a batch. Its pooled {report['feature_dim']}-d features give
`train.evaluation`'s independent Frechet distance.

Use: evaluation ONLY. No loss and no data filter may use it; it differs from the taggers
(plain conv-bn-relu CNNs trained to classify tags) in architecture, objective and data.

Data: `shared/data/anime_tags` split train ({report['n_train']['anime']} faces) + CelebA images numbered
1-9000 ({report['n_train']['celeba']} faces), {a['resolution']} px, flip / crop / brightness augmentation.
Never selfie2anime. Held out: anime_tags test ({report['n_test']['anime']}) + CelebA 9001-10000
({report['n_test']['celeba']}).

## Held-out metrics (fp16 checkpoint reloaded)

View matching in batches of {ho['batch']}: partner found {100 * ho['accuracy']:.1f}% of the time
(chance {100 * ho['chance']:.2f}%), NT-Xent loss {ho['loss']:.4f};
train loss per epoch: {', '.join(f'{v:.4f}' for v in report['train_loss'])}.

## Frechet distance: reference scale

`twingan.metrics.frechet_distance` on these features, {a['resolution']} px, the anime_tags test faces
against:

| other set (n) | FD |
|---|---|
{scale}

Not comparable with Inception FID or the tagger FD; compare models only with equal sample counts.

Trained in {report['train_minutes']:.1f} min on {a['threads']} CPU thread(s) (amp: {a['amp']}), on a 2-core
machine shared with other jobs. Reproduce (from the repo root):

```
python -m train.helpers.featnet {' '.join(argv)}
```
""")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    train_faces = load_faces(args.data, "train", args.resolution, args.limit)
    test_faces = load_faces(args.data, "test", args.resolution, args.limit)
    images = torch.cat([train_faces["anime"], train_faces["celeba"]])
    print(f"decoded {len(images)} train faces in {time.time() - t0:.0f}s", flush=True)
    config = FeatureNetConfig(resolution=args.resolution)
    if args.channels:
        config.channels = tuple(args.channels)
    model = FeatureNet(config)
    t1 = time.time()
    history = train(model, images, args)
    minutes = (time.time() - t1) / 60
    save_pretrained(model.eval(), args.out, dtype=torch.float16)
    model = load_pretrained(FeatureNet, args.out)  # every number below is of the shipped fp16 weights
    held_out = held_out_views(model, torch.cat([test_faces["anime"], test_faces["celeba"]]), args.temperature)
    report = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "parameters": sum(p.numel() for p in model.parameters()), "feature_dim": config.channels[-1],
              "n_train": {k: len(v) for k, v in train_faces.items()}, "n_test": {k: len(v) for k, v in test_faces.items()},
              "train_loss": history, "train_minutes": minutes, "held_out": held_out,
              "reference_fd": reference_scale(model, args.data, test_faces, args.resolution)}
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    write_readme(args.out, report, argv)
    print(json.dumps({k: report[k] for k in ("held_out", "train_minutes", "reference_fd")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train the anime tagger (or the CelebA human hair classifier) and write a test-split report.

    python -m train.helpers.tagger --data ../shared/data/anime_tags --out checkpoints/tagger --seed 0
    python -m train.helpers.tagger --task human_hair --data ../shared/data/celeba --out checkpoints/human-hair

The output folder gets config.json + model.safetensors (fp16), report.json (test metrics, measured
on the saved fp16 checkpoint reloaded), confusion.png and a README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from train.augment import augment
from train.config import default_data_root
from train.data import DataError
from train.tags_data import HUMAN_HAIR_CLASSES, AnimeTagsDataset, CelebAHairDataset
from twingan.checkpoint import load_pretrained, save_pretrained
from twingan.tagger import HumanHairClassifier, HumanHairConfig, Tagger, TaggerConfig

DATA_FOLDERS = {"anime": "anime_tags", "human_hair": "celeba"}  # each task's data set, under the data root


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=("anime", "human_hair"), default="anime")
    p.add_argument("--data", type=Path, default=None, help="dataset folder (default anime_tags or celeba "
                   "under $TWINGAN_DATA, else under ../shared/data next to the repo)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channels", type=int, nargs="+", default=None, help="per-stage widths (default: config's)")
    p.add_argument("--encoder", choices=("conv", "residual"), default="conv",
                   help="anime task: the tagger's encoder; residual = a judge of another architecture")
    p.add_argument("--balance", type=float, default=0.3,
                   help="class weight = (class frequency)^-balance; 0 = none, 1 = fully balanced")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="eye labels are noisy")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images per split (smoke tests)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads; the machine is shared")
    p.add_argument("--amp", choices=("bf16", "none"), default="bf16",
                   help="bf16 autocast: ~2x faster on CPUs with avx512_bf16/AMX; use none on older CPUs")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.data is None:
        args.data = Path(default_data_root()) / DATA_FOLDERS[args.task]
    if args.epochs < 1 or args.batch_size < 1 or args.resolution < 16:
        p.error("--epochs and --batch-size must be >= 1 and --resolution >= 16")
    return args


def class_weights(labels: torch.Tensor, n_classes: int, power: float) -> torch.Tensor:
    """(n_classes,) loss weights ~ frequency^-power, normalised so a sample's mean weight is 1.

    Labels of -1 (unknown) are ignored. Classes absent from the data get weight 0.
    """
    counts = torch.bincount(labels[labels >= 0], minlength=n_classes).float()
    w = torch.where(counts > 0, counts.clamp(min=1) ** -power, torch.zeros_like(counts))
    return w * counts.sum() / (w * counts).sum().clamp(min=1e-12)


def anime_loss(model: Tagger, out: dict, batch: dict, hair_w: torch.Tensor, eye_w: torch.Tensor,
               smoothing: float) -> torch.Tensor:
    """Weighted CE on known hair / eye colours + BCE on binary tags."""
    tags = batch["tags"]
    loss = F.binary_cross_entropy_with_logits(out["binary_logits"], tags[:, model.vocab.binary_slice])
    for key, logits, w in (("hair", out["hair_logits"], hair_w), ("eye", out["eye_logits"], eye_w)):
        target = batch[key]
        if (target >= 0).any():  # ignore_index=-1 masks images whose colour the source tagger left empty
            loss = loss + F.cross_entropy(logits, target, weight=w, ignore_index=-1, label_smoothing=smoothing)
    return loss


def _batches(n: int, batch_size: int, generator: torch.Generator, shuffle: bool):
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def _get(dataset, idx: torch.Tensor) -> dict:
    """A batch straight from the in-memory tensors (no per-item Python loop)."""
    batch = {"image": dataset.images[idx].float() / 255}
    if isinstance(dataset, AnimeTagsDataset):
        batch |= {"tags": dataset.tags[idx], "hair": dataset.hair[idx], "eye": dataset.eye[idx]}
    else:
        batch["label"] = dataset.labels[idx]
    return batch


def adamw_one_cycle(model, args, total_steps: int):
    """AdamW (args.lr, args.weight_decay) with a one-cycle schedule over `total_steps` (15% warm-up)."""
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total_steps, pct_start=0.15)


def train_model(model, train_set, args, loss_fn) -> list[float]:
    """AdamW + one-cycle schedule over `args.epochs`; returns the mean train loss per epoch."""
    gen = torch.Generator().manual_seed(args.seed)
    steps_per_epoch = math.ceil(len(train_set) / args.batch_size)
    opt, sched = adamw_one_cycle(model, args, args.epochs * steps_per_epoch)
    history = []
    for epoch in range(args.epochs):
        model.train()
        total, count = 0.0, 0
        bar = tqdm(_batches(len(train_set), args.batch_size, gen, shuffle=True), total=steps_per_epoch,
                   desc=f"epoch {epoch + 1}/{args.epochs}", disable=args.no_progress, leave=False)
        for idx in bar:
            if len(idx) < 2:  # BatchNorm needs two samples
                continue
            batch = _get(train_set, idx)
            batch["image"] = augment(batch["image"], gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.amp == "bf16"):
                out = model(batch["image"])
            out = {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()
            loss = loss_fn(model, out, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
            bar.set_postfix(loss=f"{total / count:.3f}")
        history.append(total / max(count, 1))
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {history[-1]:.4f}", file=sys.stderr)
    return history


@torch.no_grad()
def predict(model, dataset, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Eval-mode outputs over a whole dataset, concatenated."""
    model.eval()
    outs: dict[str, list] = {}
    for idx in _batches(len(dataset), batch_size, torch.Generator(), shuffle=False):
        out = model(_get(dataset, idx)["image"])
        for k, v in (out.items() if isinstance(out, dict) else [("logits", out)]):
            outs.setdefault(k, []).append(v.float())
    return {k: torch.cat(v) for k, v in outs.items()}


def classification_report(logits: torch.Tensor, target: torch.Tensor, names: tuple[str, ...]) -> dict:
    """Top-1 accuracy, balanced accuracy, per-class recall and the confusion matrix (rows: truth)."""
    known = target >= 0
    pred, target = logits[known].argmax(1), target[known]
    n = len(names)
    confusion = torch.bincount(target * n + pred, minlength=n * n).view(n, n)
    support = confusion.sum(1)
    recall = {name: (confusion[i, i] / support[i]).item() if support[i] else None for i, name in enumerate(names)}
    present = [r for r in recall.values() if r is not None]
    return {"top1": (pred == target).float().mean().item() if len(target) else None,
            "balanced_accuracy": sum(present) / len(present) if present else None,
            "n": int(len(target)), "recall": recall, "support": dict(zip(names, support.tolist())),
            "confusion": confusion.tolist(), "classes": list(names)}


def evaluate_tagger(model: Tagger, dataset: AnimeTagsDataset) -> dict:
    """Test metrics of a tagger on a labelled anime dataset."""
    out = predict(model, dataset)
    binary_true = dataset.tags[:, model.vocab.binary_slice]
    binary_pred = (out["binary_logits"] > 0).float()
    binary = {name: {"accuracy": (binary_pred[:, i] == binary_true[:, i]).float().mean().item(),
                     "positives": int(binary_true[:, i].sum()),
                     "recall": ((binary_pred[:, i] * binary_true[:, i]).sum() / binary_true[:, i].sum()).item()
                     if binary_true[:, i].sum() > 0 else None}
              for i, name in enumerate(model.vocab.binary)}
    return {"hair": classification_report(out["hair_logits"], dataset.hair, model.vocab.hair),
            "eye": classification_report(out["eye_logits"], dataset.eye, model.vocab.eye),
            "binary": binary}


def draw_confusions(panels: list[tuple[str, dict]], path: Path) -> None:
    """Row-normalised confusion matrices side by side as a PNG (PIL only; matplotlib is optional)."""
    from PIL import Image, ImageDraw

    cell, label_w, top = 34, 60, 40
    widths = [label_w + cell * len(rep["classes"]) + 20 for _, rep in panels]
    height = top + max(cell * len(rep["classes"]) for _, rep in panels) + label_w + 10
    img = Image.new("RGB", (sum(widths), height), "white")
    draw = ImageDraw.Draw(img)
    x0 = 0
    for (title, rep), width in zip(panels, widths):
        names, conf = rep["classes"], rep["confusion"]
        top1 = rep["top1"] or 0.0
        draw.text((x0 + 4, 4), f"{title}: top-1 {top1:.1%}, balanced {rep['balanced_accuracy'] or 0:.1%}",
                  fill="black")
        draw.text((x0 + 4, 20), "rows: truth, cols: predicted, % of row", fill="gray")
        for i, row in enumerate(conf):
            total = sum(row) or 1
            y = top + i * cell
            draw.text((x0 + 2, y + cell // 3), names[i][:8], fill="black")
            for j, v in enumerate(row):
                frac = v / total
                x = x0 + label_w + j * cell
                shade = int(255 * (1 - frac))
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255), outline="lightgray")
                if v:
                    draw.text((x + 3, y + cell // 3), f"{100 * frac:.0f}", fill="white" if frac > 0.5 else "black")
        for j, name in enumerate(names):  # column labels, rotated
            label = Image.new("RGB", (label_w, 12), "white")
            ImageDraw.Draw(label).text((0, 0), name[:9], fill="black")
            img.paste(label.rotate(90, expand=True), (x0 + label_w + j * cell + cell // 3,
                                                      top + cell * len(names) + 4))
        x0 += width
    img.save(path)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _recalls(rep: dict) -> str:
    return ", ".join(f"{k} {_fmt(v)} ({rep['support'][k]})" for k, v in rep["recall"].items())


def write_readme(out: Path, args: argparse.Namespace, report: dict, argv: list[str]) -> None:
    cmd = "python -m train.helpers.tagger " + " ".join(argv)
    if args.task == "anime":
        h, e = report["test"]["hair"], report["test"]["eye"]
        role = ("conditioning / auxiliary loss for GAN training" if args.seed == 0 else
                "evaluation ONLY (a separately seeded judge, so a generator cannot learn to fool it)")
        arch = ("plain conv-BN-ReLU CNN" if args.encoder == "conv" else
                "GroupNorm residual CNN, another architecture than the training tagger's")
        lines = [f"# Anime tagger ({out.name})", "",
                 f"Small {arch} (`twingan.tagger.Tagger`, encoder `{args.encoder}`, {report['params']:,} parameters, "
                 "fp16 weights) that reads "
                 "hair colour (softmax, 12), eye colour (softmax, 10) and 11 binary tags off an anime face. "
                 f"Use: {role}.", "",
                 "Data: `shared/data/anime_tags` (Getchu faces tagged with illustration2vec), split `train` "
                 f"({report['n_train']} images) for training, `test` ({report['n_test']}) for the numbers below. "
                 "Images with an empty colour are left out of that colour's loss and metrics.", "",
                 "## Test metrics (fp16 checkpoint reloaded)", "",
                 "| group | top-1 | balanced accuracy (mean recall) | n |", "|---|---|---|---|",
                 f"| hair colour | {_fmt(h['top1'])} | {_fmt(h['balanced_accuracy'])} | {h['n']} |",
                 f"| eye colour | {_fmt(e['top1'])} | {_fmt(e['balanced_accuracy'])} | {e['n']} |", "",
                 "Per-class recall (test support): hair " + _recalls(h) + "; eye " + _recalls(e) +
                 ". Classes with a handful of test images (aqua hair, pink/aqua/orange eyes) have noisy recall.", "",
                 "Binary tag accuracy: " + ", ".join(f"{k} {_fmt(v['accuracy'])}"
                                                    for k, v in report["test"]["binary"].items()) + ".", ""]
    else:
        t = report["test"]
        lines = [f"# Human hair colour classifier ({out.name})", "",
                 f"Small CNN (`twingan.tagger.HumanHairClassifier`, {report['params']:,} parameters, fp16) that "
                 "reads a person's hair colour as an anime vocabulary name: " + ", ".join(HUMAN_HAIR_CLASSES) +
                 " (CelebA Black_Hair, Blond_Hair, Brown_Hair, Gray_Hair). Used for the \"keep my hair colour\" "
                 "default.", "",
                 "Data: `shared/data/celeba` (aligned faces 000001-010000), images with exactly one of the four "
                 "hair attributes; images numbered > 9000 are the test split "
                 f"({report['n_train']} train, {report['n_test']} test).", "",
                 "## Test metrics (fp16 checkpoint reloaded)", "",
                 f"Top-1 {_fmt(t['top1'])}, balanced accuracy {_fmt(t['balanced_accuracy'])} (n={t['n']}). "
                 "Per-class recall (test support): " + _recalls(t) + ".", "",
                 "CelebA is celebrity photos; selfies (other lighting, wider crops) may score lower.", ""]
    lines += ["`confusion.png`: row-normalised test confusion matrix; `report.json`: all numbers and options.", "",
              f"Trained in {report['train_seconds'] / 60:.1f} min on {args.threads} CPU thread(s) "
              f"(bf16 autocast: {args.amp}), on a 2-core machine shared with other jobs.", "",
              "Reproduce (from the repo root):", "", "```", cmd, "```", ""]
    (out / "README.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> dict:
    """Train, save, reload, evaluate and write the report; returns the report dict."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    channels = {"channels": tuple(args.channels)} if args.channels else {}
    t0 = time.time()
    if args.task == "anime":
        config = TaggerConfig(resolution=args.resolution, encoder=args.encoder, **channels)
        model_cls = Tagger
        train_set = AnimeTagsDataset(args.data, "train", args.resolution, limit=args.limit, progress=progress)
        test_set = AnimeTagsDataset(args.data, "test", args.resolution, limit=args.limit, progress=progress)
        model = Tagger(config)
        hair_w = class_weights(train_set.hair, len(model.vocab.hair), args.balance)
        eye_w = class_weights(train_set.eye, len(model.vocab.eye), args.balance)

        def loss_fn(m, out, batch):
            return anime_loss(m, out, batch, hair_w, eye_w, args.label_smoothing)
    else:
        config = HumanHairConfig(resolution=args.resolution, **channels)
        model_cls = HumanHairClassifier
        train_set = CelebAHairDataset(args.data, "train", args.resolution, limit=args.limit, progress=progress)
        test_set = CelebAHairDataset(args.data, "test", args.resolution, limit=args.limit, progress=progress)
        model = HumanHairClassifier(config)
        label_w = class_weights(train_set.labels, len(config.classes), args.balance)

        def loss_fn(m, out, batch):
            return F.cross_entropy(out, batch["label"], weight=label_w, label_smoothing=args.label_smoothing)
    load_seconds = time.time() - t0

    t1 = time.time()
    history = train_model(model, train_set, args, loss_fn)
    train_seconds = time.time() - t1

    args.out.mkdir(parents=True, exist_ok=True)
    save_pretrained(model, args.out, dtype=torch.float16)
    reloaded = load_pretrained(model_cls, args.out)  # report what users will load, fp16 rounding included
    if args.task == "anime":
        test = evaluate_tagger(reloaded, test_set)
        panels = [("hair colour", test["hair"]), ("eye colour", test["eye"])]
    else:
        test = classification_report(predict(reloaded, test_set)["logits"], test_set.labels, config.classes)
        panels = [("human hair colour", test)]
    report = {"task": args.task, "test": test, "train_loss": history,
              "n_train": len(train_set), "n_test": len(test_set),
              "skipped_images": len(train_set.skipped) + len(test_set.skipped),
              "skipped_examples": (train_set.skipped + test_set.skipped)[:10],
              "params": sum(p.numel() for p in model.parameters()),
              "train_seconds": round(train_seconds, 1), "load_seconds": round(load_seconds, 1),
              "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    draw_confusions(panels, args.out / "confusion.png")
    write_readme(args.out, args, report, argv)
    if report["skipped_images"]:
        print(f"skipped {report['skipped_images']} unreadable image(s), e.g. {report['skipped_examples'][0]}",
              file=sys.stderr)
    summary = ({g: _fmt(test[g]["top1"]) for g in ("hair", "eye")} if args.task == "anime"
               else {"top1": _fmt(test["top1"])})
    print(f"test {summary}; train {train_seconds / 60:.1f} min; wrote {args.out}", file=sys.stderr)
    return report


if __name__ == "__main__":
    try:
        main()
    except DataError as err:  # expected bad input: a clear one-line message, not a traceback
        sys.exit(f"error: {err}")

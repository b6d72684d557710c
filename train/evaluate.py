"""Evaluate an exported TwinGAN on the held-out test splits; print a table and write JSON + a grid PNG.

`python -m train.evaluate CHECKPOINT [--data ../shared/data] [--out eval.json] [--grid grid.png]`

Judged by `checkpoints/tagger-eval`, a separately trained and seeded tagger: a generator can learn to
fool the tagger whose gradients trained it, so that one never grades.
- tagger-feature Frechet distance (FD) of translated test selfies vs real anime test faces, with the
  floor (held-out real anime vs the same reference) and the ceiling (raw selfies); all three use the
  same number of images, so their small-sample bias is the same. `fd_fraction` = (FD - floor) /
  (ceiling - floor): 0 is as good as real anime, 1 as far as untranslated selfies.
- hair / eye colour control: every test selfie translated with every colour; accuracy of the judge's
  top colour, overall and per colour.
- input dependence (no tagger involved): every test selfie translated with one fixed tag vector;
  how often its grey low-resolution layout picks out its own input among all test selfies
  (`twingan.metrics.input_retrieval`), and how much the outputs vary at all. A generator that
  draws the same face for everyone scores chance here, however well it passes the tagger metrics.
- reconstruction L1 per domain.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from train.config import REPO_ROOT, default_data_root
from train.data import decode_images, list_images
from twingan.vocab import TagVocab

EVAL_TAGGER = REPO_ROOT / "checkpoints" / "tagger-eval"


def load_test_sets(data: Path, resolution: int, vocab: TagVocab, limit: int = 0) -> dict:
    """Test selfies (testA), real anime test faces (testB + anime_tags test) with their tags."""
    from train.tags_data import read_tags_csv

    folder = data / "selfie2anime" / "testA"
    files = list_images(folder)[: limit or None]
    selfies, _, _ = decode_images(folder, files, resolution)
    parts, tags = [], []
    folder = data / "selfie2anime" / "testB"
    if folder.is_dir():
        files = list_images(folder)[: limit or None]
        imgs, _, _ = decode_images(folder, files, resolution)
        parts.append(imgs)
        tags.append(torch.full((len(imgs), vocab.dim), float("nan")))  # untagged
    csv_path = data / "anime_tags" / "tags.csv"
    if csv_path.is_file():
        rows = read_tags_csv(csv_path, vocab, "test")
        files = sorted(rows)[: limit * 5 or None]
        imgs, kept, _ = decode_images(data / "anime_tags" / "images", files, resolution)
        parts.append(imgs)
        tags.append(torch.tensor([rows[files[i]].vector for i in kept]))
    if not parts:
        raise FileNotFoundError(f"no anime test images under {data} (selfie2anime/testB or anime_tags)")
    return {"selfies": selfies.float() / 255, "anime": torch.cat(parts).float() / 255, "anime_tags": torch.cat(tags)}


def sample_tags(anime_tags: torch.Tensor, n: int, vocab: TagVocab, generator: torch.Generator) -> torch.Tensor:
    """n tag vectors drawn from the known rows of the anime test tags (colours always set)."""
    known = anime_tags[~torch.isnan(anime_tags).any(1)]
    rows = known[torch.randint(len(known), (n,), generator=generator)].clone()
    for sl, k in ((vocab.hair_slice, len(vocab.hair)), (vocab.eye_slice, len(vocab.eye))):
        empty = rows[:, sl].sum(1) == 0
        pick = torch.randint(k, (n,), generator=generator)
        rows[empty, sl] = torch.nn.functional.one_hot(pick[empty], k).float()
    return rows


@torch.no_grad()
def batched(fn, *tensors, batch: int = 100) -> torch.Tensor:
    n = tensors[0].shape[0]
    return torch.cat([fn(*(t[i:i + batch] if t is not None else None for t in tensors)) for i in range(0, n, batch)])


@torch.no_grad()
def evaluate(model, judge, sets: dict, seed: int = 0) -> tuple[dict, dict]:
    """All metrics as a dict, plus the tensors for the grid."""
    from twingan.metrics import control_accuracy, frechet_distance, input_retrieval

    vocab = model.config.vocab
    g = torch.Generator().manual_seed(seed)
    selfies, anime = sets["selfies"], sets["anime"]
    n = len(selfies)
    if len(anime) < 2 * n:
        raise ValueError(f"need at least {2 * n} anime test images for the floor, got {len(anime)}")
    perm = torch.randperm(len(anime), generator=g)
    held_out, reference = anime[perm[:n]], anime[perm[n:]]
    tags = sample_tags(sets["anime_tags"], n, vocab, g)
    translated = batched(lambda x, t: model.translate(x, "human", "anime", t), selfies, tags)

    def feats(x: torch.Tensor) -> torch.Tensor:
        return batched(judge.features, x)

    ref = feats(reference)
    fd = frechet_distance(feats(translated), ref)
    floor = frechet_distance(feats(held_out), ref)
    ceiling = frechet_distance(feats(selfies), ref)
    out = {"n_selfies": n, "n_anime_reference": len(reference), "fd": fd, "fd_floor": floor, "fd_ceiling": ceiling,
           "fd_fraction": (fd - floor) / (ceiling - floor) if ceiling > floor else float("nan")}
    for group, names, sl in (("hair", vocab.hair, vocab.hair_slice), ("eye", vocab.eye, vocab.eye_slice)):
        requested, probs = [], []
        for c in range(len(names)):
            t = tags.clone()
            t[:, sl] = 0
            t[:, sl.start + c] = 1
            x = batched(lambda x, tt: model.translate(x, "human", "anime", tt), selfies, t)
            probs.append(batched(judge.tag_probs, x))
            requested.append(torch.full((n,), c))
        acc = control_accuracy(torch.cat(requested), torch.cat(probs), vocab, group)
        out[f"{group}_accuracy"] = acc["accuracy"]
        out[f"{group}_per_colour"] = acc["per_class"]
    same = tags[:1].expand(n, -1)
    fixed = batched(lambda x, t: model.translate(x, "human", "anime", t), selfies, same)
    retrieval = input_retrieval(selfies, fixed)
    out.update({f"retrieval_{k}": v for k, v in retrieval.items()})
    out["recon_l1_human"] = (batched(lambda x: model.translate(x, "human", "human"), selfies) - selfies).abs().mean().item()
    anime_tags = torch.nan_to_num(sets["anime_tags"], nan=0.0)
    rec = batched(lambda x, t: model.translate(x, "anime", "anime", t), anime, anime_tags)
    out["recon_l1_anime"] = (rec - anime).abs().mean().item()
    return out, {"selfies": selfies, "translated": translated, "tags": tags}


def comparison_grid(model, shown: dict, path: Path, n: int = 8) -> Path:
    """Rows: input selfies | translations (sampled tags) | reconstructions; then one input in every hair colour."""
    from torchvision.utils import save_image

    vocab = model.config.vocab
    x = shown["selfies"][:n]
    rows = [x, shown["translated"][:n], model.translate(x, "human", "human")]
    one = x[:1].expand(len(vocab.hair), -1, -1, -1)
    t = shown["tags"][:1].expand(len(vocab.hair), -1).clone()
    t[:, vocab.hair_slice] = torch.eye(len(vocab.hair))
    colours = model.translate(one, "human", "anime", t)
    path.parent.mkdir(parents=True, exist_ok=True)
    pad = torch.ones(max(0, len(vocab.hair) - n), *x.shape[1:])
    grid = torch.cat([torch.cat([r, pad]) for r in rows] + [colours])
    size = max(128, grid.shape[-1])  # small models are shown enlarged (nearest, so pixels stay honest)
    grid = torch.nn.functional.interpolate(grid, size=size, mode="nearest")
    save_image(grid, path, nrow=max(n, len(vocab.hair)), padding=2, pad_value=1.0)
    return path


def format_table(m: dict) -> str:
    lines = ["| metric | value |", "|---|---|"]
    lines.append(f"| tagger FD translated selfies vs anime | {m['fd']:.2f} |")
    lines.append(f"| FD floor (real anime vs anime) | {m['fd_floor']:.2f} |")
    lines.append(f"| FD ceiling (raw selfies vs anime) | {m['fd_ceiling']:.2f} |")
    lines.append(f"| FD fraction floor->ceiling (target <= 0.40) | {m['fd_fraction']:.3f} |")
    lines.append(f"| hair colour control, {len(m['hair_per_colour'])} colours (target >= 80%) | {100 * m['hair_accuracy']:.1f}% |")
    lines.append(f"| eye colour control, {len(m['eye_per_colour'])} colours (target >= 50%) | {100 * m['eye_accuracy']:.1f}% |")
    lines.append(f"| input retrieval top-1 from the output's grey layout (chance {100 * m['retrieval_chance_top1']:.1f}%) "
                 f"| {100 * m['retrieval_top1']:.1f}% |")
    lines.append(f"| median rank of the own input (of {m['n_selfies']}) | {m['retrieval_median_rank']:.0f} |")
    lines.append(f"| output spread across inputs / input spread | {m['retrieval_spread']:.2f} |")
    lines.append(f"| reconstruction L1, human | {m['recon_l1_human']:.4f} |")
    lines.append(f"| reconstruction L1, anime | {m['recon_l1_anime']:.4f} |")
    per = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["hair_per_colour"].items())
    per_eye = ", ".join(f"{k} {100 * v:.0f}%" for k, v in m["eye_per_colour"].items())
    return "\n".join(lines) + f"\n\nhair per colour: {per}\neye per colour: {per_eye}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="exported TwinGAN folder (config.json + model.safetensors)")
    p.add_argument("--data", default=None, help="data root (default $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--judge", default=str(EVAL_TAGGER), help="evaluation tagger (never the training one)")
    p.add_argument("--out", default=None, help="JSON file (default CHECKPOINT/eval.json)")
    p.add_argument("--grid", default=None, help="comparison grid PNG (default next to the JSON)")
    p.add_argument("--limit", type=int, default=0, help="quick checks: only this many test selfies and testB faces, 5x as many anime_tags faces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from twingan.checkpoint import CheckpointError, load_pretrained
    from twingan.model import TwinGAN
    from twingan.tagger import Tagger

    data = Path(args.data or default_data_root())
    try:
        model = load_pretrained(TwinGAN, args.checkpoint)
        judge = load_pretrained(Tagger, args.judge)
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if Path(args.judge).resolve() == (REPO_ROOT / "checkpoints" / "tagger").resolve():
        print("error: the training tagger cannot judge its own generator; pass checkpoints/tagger-eval",
              file=sys.stderr)
        return 2
    if not data.is_dir():
        print(f"error: data folder {data} not found (set --data or TWINGAN_DATA)", file=sys.stderr)
        return 2
    sets = load_test_sets(data, model.config.resolution, model.config.vocab, args.limit)
    metrics, shown = evaluate(model, judge, sets, args.seed)
    metrics.update(checkpoint=str(args.checkpoint), judge=str(args.judge), resolution=model.config.resolution)
    out = Path(args.out) if args.out else Path(args.checkpoint) / "eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(metrics, indent=2) + "\n")
    grid = comparison_grid(model, shown, Path(args.grid) if args.grid else out.with_suffix(".png"))
    print(format_table(metrics))
    print(f"\nwrote {out} and {grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

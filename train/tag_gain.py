"""Calibrate what strength 1 of a colour control means: the gain on a tag group that the frozen
training tagger reads best on train selfies without costing the other controls, written into the
checkpoint's config.json.

    python -m train.tag_gain checkpoints/NAME                  # print the table, change nothing
    python -m train.tag_gain checkpoints/NAME --write          # also store the best eye gain
    python -m train.tag_gain checkpoints/NAME --group hair --gains 1,1.25,1.5

Each train selfie (every k-th file of selfie2anime/trainA, `--count` of them) is translated with
every colour of the group, its tag group set to gain x one-hot (the other tags drawn from the anime
train tags, as `train.evaluate` draws them from the test tags), and the training tagger reads each
portrait: the group's control accuracy. A stronger group can drown the rest, so each gain is also
scored on the side effects that `train.evaluate` gates: the other group's control accuracy (same
tagger, same selfies) and input retrieval, averaged over `RETRIEVAL_VECTORS` fixed tag vectors
(one vector for every selfie, as the evaluation does). The best gain is the most accurate one whose
side effects stay within `--tolerance` of gain 1's (ties: the smaller gain). Only training data and
the training network are used, so the evaluation judges (`checkpoints/tagger-eval*`) and the test
selfies stay untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from train.config import REPO_ROOT, default_data_root
from train.data import decode_images, list_images
from train.evaluate import colour_control, one_vector, sample_tags

TRAINING_TAGGER = REPO_ROOT / "checkpoints" / "tagger"
DEFAULT_GAINS = (1.0, 1.125, 1.25, 1.375, 1.5)
GROUPS = ("hair", "eye")
RETRIEVAL_VECTORS = 5  # fixed tag vectors the retrieval is averaged over (one vector alone varies by 20+ points)
TOLERANCE = 0.01  # how far below gain 1's the other group's accuracy and the retrieval may fall


def load_train_sets(data: Path, resolution: int, vocab, count: int) -> dict:
    """`count` train selfies spread over selfie2anime/trainA and the anime train split's tag rows."""
    from train.tags_data import read_tags_csv

    folder = data / "selfie2anime" / "trainA"
    files = list_images(folder)
    if not files:
        raise FileNotFoundError(f"no train selfies in {folder}")
    files = files[:: max(1, len(files) // count)][:count]
    selfies = decode_images(folder, files, resolution)[0].float() / 255
    rows = read_tags_csv(data / "anime_tags" / "tags.csv", vocab, "train")
    return {"selfies": selfies, "anime_tags": torch.tensor([r.vector for r in rows.values()])}


@torch.no_grad()
def gain_table(model, tagger, selfies: torch.Tensor, anime_tags: torch.Tensor, group: str,
               gains=DEFAULT_GAINS, seed: int = 0, progress: bool = True) -> dict[float, dict]:
    """gain -> {"accuracy", "per_class", "other_accuracy", "retrieval"} for the group's gain.

    accuracy / per_class: the tagger's reading of every selfie in every colour of the group;
    other_accuracy: the same for the other group (at the model's own gain for it); retrieval: input
    retrieval top-1, mean over `RETRIEVAL_VECTORS` fixed tag vectors.
    """
    from twingan.metrics import input_retrieval

    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}, got {group!r}")
    vocab = model.config.vocab
    tags = sample_tags(anime_tags, len(selfies), vocab, torch.Generator().manual_seed(seed))
    fixed = tags[:RETRIEVAL_VECTORS]
    bar = tqdm(total=len(gains) * (len(vocab.hair) + len(vocab.eye) + len(fixed)), desc=f"{group} gains",
               unit="pass", disable=not progress)

    def control(name: str) -> dict:
        return colour_control(model, selfies, tags, name, [tagger], bar.update)[0]

    other = GROUPS[1 - GROUPS.index(group)]
    saved = getattr(model.config, f"{group}_gain")
    table = {}
    try:
        for gain in gains:
            setattr(model.config, f"{group}_gain", float(gain))
            acc, other_acc = control(group), control(other)
            retrieval = []
            for row in fixed:
                retrieval.append(input_retrieval(selfies, one_vector(model, selfies, row))["top1"])
                bar.update()
            table[float(gain)] = {"accuracy": acc["accuracy"], "per_class": acc["per_class"],
                                  "other_accuracy": other_acc["accuracy"],
                                  "retrieval": sum(retrieval) / len(retrieval)}
    finally:
        setattr(model.config, f"{group}_gain", saved)
        bar.close()
    return table


def parse_gains(text: str) -> list[float]:
    """"1.25,1.5" -> [1.0, 1.25, 1.5] (gain 1 added, sorted, unique); ValueError unless all are positive numbers."""
    try:
        gains = sorted({1.0, *(float(g) for g in text.split(","))})
    except ValueError:
        gains = []
    if not gains or min(gains) <= 0:
        raise ValueError(f"--gains must be comma-separated positive numbers, got {text!r}")
    return gains


def best_gain(table: dict[float, dict], tolerance: float = TOLERANCE) -> float:
    """The most accurate gain whose other-group accuracy and retrieval stay within `tolerance` of gain 1's.

    Ties go to the smaller gain. The table must hold gain 1 (the uncalibrated model).
    """
    if 1.0 not in table:
        raise ValueError("the gain table needs gain 1, the reference for the side effects")
    base = table[1.0]
    allowed = [g for g, row in table.items()
               if row["other_accuracy"] >= base["other_accuracy"] - tolerance
               and row["retrieval"] >= base["retrieval"] - tolerance]
    return min(allowed, key=lambda g: (-round(table[g]["accuracy"], 6), g))


def format_table(table: dict[float, dict], group: str, best: float) -> str:
    names = list(next(iter(table.values()))["per_class"])
    other = GROUPS[1 - GROUPS.index(group)]
    lines = [f"| {group} gain | {group} accuracy | {other} accuracy | retrieval | " + " | ".join(names) + " |",
             "|---" * (len(names) + 4) + "|"]
    for gain, row in table.items():
        mark = " (best)" if gain == best else ""
        cells = " | ".join(f"{100 * row['per_class'][k]:.0f}" for k in names)
        lines.append(f"| {gain:g}{mark} | {100 * row['accuracy']:.1f}% | {100 * row['other_accuracy']:.1f}% "
                     f"| {100 * row['retrieval']:.1f}% | {cells} |")
    return "\n".join(lines)


def write_gain(checkpoint: Path, group: str, gain: float) -> Path:
    """Store the gain in CHECKPOINT/config.json (the weights are unchanged)."""
    path = Path(checkpoint) / "config.json"
    config = json.loads(path.read_text())
    config[f"{group}_gain"] = gain
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.tag_gain", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="exported TwinGAN folder (config.json + model.safetensors)")
    p.add_argument("--data", default=None, help="data root (default $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--group", choices=GROUPS, default="eye")
    p.add_argument("--gains", default=",".join(f"{g:g}" for g in DEFAULT_GAINS), help="comma-separated gains to try")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help="how far below gain 1's the other group's accuracy and the retrieval may fall")
    p.add_argument("--count", type=int, default=200, help="train selfies, spread over trainA")
    p.add_argument("--tagger", default=str(TRAINING_TAGGER), help="the training tagger (never an evaluation judge)")
    p.add_argument("--write", action="store_true", help="store the best gain in CHECKPOINT/config.json")
    p.add_argument("--out", default=None, help="also write the table as JSON here")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from twingan.checkpoint import CheckpointError, load_pretrained
    from twingan.model import TwinGAN
    from twingan.tagger import Tagger

    try:
        gains = parse_gains(args.gains)
        if args.tolerance < 0:
            raise ValueError(f"--tolerance must be >= 0, got {args.tolerance}")
        if Path(args.tagger).resolve().name.startswith("tagger-eval"):
            raise ValueError("calibrate with the training tagger; the tagger-eval judges must stay untouched")
        data = Path(args.data or default_data_root())
        if not data.is_dir():
            raise FileNotFoundError(f"data folder {data} not found (set --data or TWINGAN_DATA)")
        model = load_pretrained(TwinGAN, args.checkpoint)
        tagger = load_pretrained(Tagger, args.tagger)
        sets = load_train_sets(data, model.config.resolution, model.config.vocab, args.count)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = gain_table(model, tagger, sets["selfies"], sets["anime_tags"], args.group, gains)
    best = best_gain(table, args.tolerance)
    print(format_table(table, args.group, best))
    if args.out:
        Path(args.out).write_text(json.dumps({"group": args.group, "best": best, "n_selfies": len(sets["selfies"]),
                                              "tolerance": args.tolerance,
                                              "table": {f"{g:g}": row for g, row in table.items()}}, indent=2) + "\n")
    if args.write:
        print(f"wrote {args.group}_gain = {best:g} to {write_gain(Path(args.checkpoint), args.group, best)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write into an exported TwinGAN checkpoint's config.json how often each eye colour goes with each
hair colour on the tagged anime faces (`TwinGANConfig.eye_given_hair`), which the app's "let the
model choose" eyes draw from. Exports made by `train` carry it already (counted on their training
target images); this adds it to a checkpoint exported before, from the tags CSV's train split.
`--skip` leaves eye colours out of the draw (their counts 0), for those the model draws badly: the
app still asks for them when they are chosen.

    python -m train.helpers.eye_prior checkpoints/twingan-selfie2anime-128 [--data ../shared/data]
        [--tags CSV] [--skip black pink aqua orange]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from train.config import default_data_root
from train.tags_data import TagsDataError, eye_given_hair, read_tags_csv, tag_tensors
from twingan.checkpoint import CONFIG_NAME, CheckpointError, config_from_dict
from twingan.config import TwinGANConfig

TAGS_CSV = Path("anime_tags") / "tags.csv"


def counts_from_csv(path: Path, config: TwinGANConfig) -> tuple[tuple[int, ...], ...]:
    """`eye_given_hair` counted on the train split of the tags CSV at `path`."""
    rows = read_tags_csv(path, config.vocab, "train")
    _, hair, eye = tag_tensors(rows, sorted(rows), config.vocab)
    return eye_given_hair(hair, eye, config.vocab)


def without(counts: tuple[tuple[int, ...], ...], skip: list[str], config: TwinGANConfig) -> tuple[tuple[int, ...], ...]:
    """`counts` with the columns of the eye colours in `skip` set to 0."""
    columns = {config.vocab.eye_index(name) for name in skip}  # ValueError names an unknown colour
    return tuple(tuple(0 if j in columns else v for j, v in enumerate(row)) for row in counts)


def write_counts(checkpoint: Path, counts: tuple[tuple[int, ...], ...]) -> None:
    """Set `eye_given_hair` in checkpoint/config.json (checked by `TwinGANConfig` first); the rest of the
    file is kept as it is."""
    path = checkpoint / CONFIG_NAME
    values = json.loads(path.read_text())
    values["eye_given_hair"] = [list(row) for row in counts]
    config_from_dict(TwinGANConfig, {k: v for k, v in values.items() if k != "model_type"})  # raises if wrong
    path.write_text(json.dumps(values, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.helpers.eye_prior", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="exported TwinGAN folder (config.json + model.safetensors)")
    p.add_argument("--data", default=None, help="data root (default $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--tags", default=None, help=f"the tags CSV (default DATA/{TAGS_CSV.as_posix()})")
    p.add_argument("--skip", nargs="*", default=[], metavar="COLOUR", help="eye colours \"auto\" never draws")
    args = p.parse_args(argv)
    checkpoint = Path(args.checkpoint)
    try:
        values = json.loads((checkpoint / CONFIG_NAME).read_text())
        config = config_from_dict(TwinGANConfig, {k: v for k, v in values.items() if k != "model_type"})
        counts = counts_from_csv(Path(args.tags or Path(args.data or default_data_root()) / TAGS_CSV), config)
        if not counts:
            raise TagsDataError("no train image of the tags CSV has both a hair and an eye colour")
        counts = without(counts, args.skip, config)
        write_counts(checkpoint, counts)
    except (OSError, json.JSONDecodeError, CheckpointError, TagsDataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = torch.tensor(counts, dtype=torch.float32)
    skipped = f" (not drawn: {', '.join(args.skip)})" if args.skip else ""
    print(f"{checkpoint / CONFIG_NAME}: eye colours of {int(table.sum())} tagged anime faces{skipped}")
    share = table / table.sum(1, keepdim=True).clamp_min(1)
    for name, row in zip(config.vocab.hair, share):
        top = row.topk(3)
        print(f"  {name} hair: " + ", ".join(f"{config.vocab.eye[int(i)]} {v:.0%}" for v, i in zip(top.values, top.indices)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export a training checkpoint's EMA generator to the inference format (config.json + fp16 safetensors).

`python -m train --config cpu-small run_dir=runs/NAME --export checkpoints/NAME`, or
`python -m train.export runs/NAME/checkpoint.pt checkpoints/NAME`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from train.config import train_config_from_dict
from train.engine import CHECKPOINT_NAME, export_model


def export_checkpoint(checkpoint: str | os.PathLike, folder: str | os.PathLike, dtype: torch.dtype = torch.float16,
                      resolution: int | None = None, data_root: str | None = None) -> Path:
    """Read a training checkpoint (weights_only) and write its EMA generator to `folder`.

    Goes through `Trainer.export`, as the training loop does: truncated to the highest fully faded-in
    resolution (unless `resolution` is given) and, for batch norm, statistics re-measured on
    source -> target translations, which needs the run's source images (`data_root` overrides where
    they are).
    """
    from dataclasses import replace

    from train.data import load_domains
    from train.engine import Trainer

    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = train_config_from_dict(state["config"])
    # The images are needed for the batch-norm statistics (source and target, see
    # Trainer.calibrated); the frozen tagger is not.
    cfg = replace(cfg, data_root=data_root or cfg.data_root, w_tagger=0.0, w_tagger_features=0.0,
                  fill_tags_threshold=0.0, limit_per_folder=cfg.limit_per_folder or 2000)
    source, target = load_domains(cfg)
    trainer = Trainer(cfg, source, target)
    trainer.load_state_dict(state)
    if resolution is None:
        return trainer.export(Path(folder), dtype)
    trainer.ema.set_stage(resolution, 1.0)
    return export_model(trainer.calibrated(resolution, 1.0), Path(folder), resolution, dtype)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="runs/NAME/checkpoint.pt or the run folder")
    p.add_argument("folder", help="output folder (e.g. checkpoints/NAME)")
    p.add_argument("--fp32", action="store_true", help="keep float32 weights (default float16)")
    p.add_argument("--resolution", type=int, default=None, help="export this stage (default: the trained one)")
    p.add_argument("--data", default=None, help="data root, if not where the run had it")
    args = p.parse_args(argv)
    out = export_checkpoint(args.checkpoint, args.folder, torch.float32 if args.fp32 else torch.float16,
                            args.resolution, args.data)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

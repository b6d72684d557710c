"""Export a training checkpoint's EMA generator to the inference format (config.json + fp16 safetensors).

`python -m train --config cpu-small run_dir=runs/NAME --export checkpoints/NAME`, or
`python -m train.export runs/NAME/checkpoint.pt checkpoints/NAME`.

Also the export helpers the trainer uses: `export_model` (truncate to a stage, write the folder) and
`calibrate_batch_norm` (re-measure batch-norm statistics on the paths inference runs).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
from pathlib import Path

import torch

from train.config import train_config_from_dict
from twingan.checkpoint import save_pretrained
from twingan.config import TwinGANConfig
from twingan.model import Discriminator, TwinGAN

# Beside an exported generator, what training on from it needs (`Trainer.init_from`).
DISCRIMINATORS_DIR = "discriminators"  # one checkpoint folder per domain: discriminators/anime, ...
TRAINING_INFO_NAME = "training.json"  # images seen, step and the run's config


def stage_config(config: TwinGANConfig, resolution: int) -> TwinGANConfig:
    """The architecture truncated to `resolution` (for exports made mid-growing)."""
    skips = tuple(r for r in config.skip_resolutions if r <= resolution)
    if config.skip_resolutions and not skips:
        raise ValueError(f"no skip resolution <= {resolution} in {config.skip_resolutions}")
    return dataclasses.replace(config, resolution=resolution, skip_resolutions=skips)


def export_model(model: TwinGAN, folder: Path, resolution: int | None = None,
                 dtype: torch.dtype | None = torch.float16) -> Path:
    """Write the inference format (config.json + model.safetensors), truncated to `resolution`."""
    resolution = resolution or model.config.resolution
    small = TwinGAN(stage_config(model.config, resolution))
    state = model.state_dict()
    small.load_state_dict({k: state[k] for k in small.state_dict()}, strict=True)
    return save_pretrained(small, folder, dtype=dtype)


def export_discriminator(d: Discriminator, folder: Path, resolution: int, dtype: torch.dtype | None = torch.float16) -> Path:
    """A discriminator in the same format (config.json + model.safetensors), truncated to `resolution`."""
    small = Discriminator(stage_config(d.config, resolution))
    state = d.state_dict()
    small.load_state_dict({k: state[k] for k in small.state_dict()}, strict=True)
    return save_pretrained(small, folder, dtype=dtype)


@torch.no_grad()
def calibrate_batch_norm(model: TwinGAN, passes: list[tuple[torch.Tensor, str, str, torch.Tensor | None]]) -> TwinGAN:
    """A copy of `model` whose batch-norm statistics are re-measured on `passes`, in order.

    Each pass is (images (N, 3, R, R) in [0, 1], source, target, tags or None), run once in train mode
    with momentum 1, so the statistics become exactly that batch's. Statistics are kept per domain
    (encoder: the source's slot, generator: the target's), so later passes overwrite only the slots
    they use: put the path that matters most (source -> target translation) last. Training
    normalises each decode by its own batch, while the running statistics average all decodes into
    a domain; eval mode needs the statistics of the path it runs. A no-op copy for instance norm.
    """
    out = copy.deepcopy(model)
    norms = [m for m in out.modules() if getattr(m, "kind", None) == "batch"]
    if not norms:
        return out.eval()
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 1.0
    out.train()
    for images, source, target, tags in passes:
        out(images, source, target, tags)
    for m, mom in zip(norms, saved):
        m.momentum = mom
    return out.eval()


def export_checkpoint(checkpoint: str | os.PathLike, folder: str | os.PathLike, dtype: torch.dtype = torch.float16,
                      resolution: int | None = None, data_root: str | None = None) -> Path:
    """Read a training checkpoint (weights_only) and write its EMA generator to `folder`.

    Goes through `Trainer.export`, as the training loop does: truncated to the highest fully faded-in
    resolution (unless `resolution` is given) and, for batch norm, statistics re-measured on the
    run's reconstructions and source -> target translations, which needs its source and target
    images (`data_root` overrides where they are).
    """
    from train.data import load_domains
    from train.engine import CHECKPOINT_NAME, Trainer  # the engine imports this module's helpers

    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = train_config_from_dict(state["config"])
    # The images are needed for the batch-norm statistics (source and target, see
    # Trainer.calibrated); the frozen tagger is not.
    cfg = dataclasses.replace(cfg, data_root=data_root or cfg.data_root, w_tagger=0.0, w_tagger_features=0.0,
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

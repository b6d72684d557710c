"""Export a training checkpoint's EMA generator to the inference format (config.json + fp16 safetensors).

`python -m train --config cpu-small run_dir=runs/NAME --export checkpoints/NAME`, or
`python -m train.export runs/NAME/checkpoint.pt checkpoints/NAME`.

Also what the training loop exports and samples with, as functions of the `Trainer`:
`export_trainer` (the folder `train.export_format` describes), `calibrated` (the EMA generator with
batch-norm statistics re-measured by `calibrate_batch_norm` on the paths inference runs) and
`sample_grid` (the fixed samples' input | translation | reconstruction).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from train import losses
from train.config import to_dict, train_config_from_dict
from train.data import batch_images
from train.domains import load_domains
from train.engine import CHECKPOINT_NAME, Trainer
from train.export_format import DISCRIMINATORS_DIR, export_discriminator, export_model
from train.tags_data import eye_given_hair
from twingan.checkpoint import TRAINING_INFO_NAME
from twingan.model import TwinGAN

# Images per calibration pass. The statistics of 256 drawn images still moved the exported portraits:
# the 128 px checkpoint's input retrieval read 90.5-92.5% over four draws of 256, 90.5% for two of 1,024.
CALIBRATION_IMAGES = 1024


@torch.no_grad()
def calibrate_batch_norm(model: TwinGAN, passes: list[tuple[torch.Tensor, str, str, torch.Tensor | None]],
                         chunk: int = 256) -> TwinGAN:
    """A copy of `model` whose batch-norm statistics are re-measured on `passes`, in order.

    Each pass is (images (N, 3, R, R) in [0, 1], source, target, tags or None), run in train mode in
    chunks of `chunk` images; chunk k enters with momentum 1/k, so the statistics become the mean of
    the chunks' (the first overwrites what was there). Statistics are kept per domain (encoder: the
    source's slot, generator: the target's), so later passes overwrite only the slots they use: put
    the path that matters most (source -> target translation) last. Training normalises each decode
    by its own batch, while the running statistics average all decodes into a domain; eval mode needs
    the statistics of the path it runs. A no-op copy for instance norm.
    """
    out = copy.deepcopy(model)
    norms = [m for m in out.modules() if getattr(m, "kind", None) == "batch"]
    if not norms:
        return out.eval()
    saved = [m.momentum for m in norms]
    out.train()
    for images, source, target, tags in passes:
        for k, start in enumerate(range(0, len(images), chunk), 1):
            for m in norms:
                m.momentum = 1.0 / k
            part = slice(start, start + chunk)
            out(images[part], source, target, None if tags is None else tags[part])
    for m, mom in zip(norms, saved):
        m.momentum = mom
    return out.eval()


def calibrated(trainer: Trainer, res: int, alpha: float, n: int = CALIBRATION_IMAGES) -> TwinGAN:
    """The trainer's EMA generator with batch-norm statistics measured on `calibration_passes`."""
    trainer.ema.set_stage(res, alpha)
    return calibrate_batch_norm(trainer.ema, calibration_passes(trainer, res, n))


def calibration_passes(trainer: Trainer, res: int, n: int = CALIBRATION_IMAGES) -> list[tuple]:
    """The paths the export's batch-norm statistics are measured on, n fixed images each, in order:
    target -> target and source -> source reconstructions; with `reverse`, target -> source
    translations, which then own the source generator statistics (the app's anime -> human path);
    last source -> target translations (tags drawn from the target tag distribution), which own the
    target generator statistics because translation is what inference runs."""
    cfg, source, target, d = trainer.cfg, trainer.source, trainer.target, trainer.device
    g = torch.Generator().manual_seed(4321)
    si = torch.randperm(len(source), generator=g)[:n]
    ti = torch.randperm(len(target), generator=g)[:n]
    xs = batch_images(source, si, res).to(d)
    xt = batch_images(target, ti, res).to(d)
    tags = None
    if trainer.tag_pool is not None:
        tags = losses.sample_target_tags(*trainer.tag_pool, len(si), trainer.vocab, cfg.uniform_color_prob, g,
                                         source.hair[si], cfg.own_hair_prob, cfg.auto_hair_prob,
                                         cfg.auto_eye_prob)[0].to(d)
    src, tgt = trainer.src_name, trainer.tgt_name
    passes = [(xt, tgt, tgt, target.tags[ti].to(d)),
              (xs, src, src, source.tags[si].to(d))]
    if cfg.reverse:
        passes.append((xt, tgt, src, None))
    return passes + [(xs, src, tgt, tags)]


def fixed_samples(trainer: Trainer, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same n source images and tags every time: (indices, tags) with hair colours cycling."""
    vocab = trainer.vocab
    g = torch.Generator().manual_seed(1234)
    idx = torch.randperm(len(trainer.source), generator=g)[:n]
    tags = torch.zeros(len(idx), vocab.dim)
    for i in range(len(idx)):
        tags[i, vocab.hair_slice.start + i % len(vocab.hair)] = 1
        tags[i, vocab.eye_slice.start + (i * 3) % len(vocab.eye)] = 1
    return idx, tags


@torch.no_grad()
def sample_grid(trainer: Trainer, n: int | None = None) -> torch.Tensor:
    """Rows: input | translation | reconstruction (EMA generator, eval mode), (3, H, W) in [0, 1]."""
    from torchvision.utils import make_grid

    res, alpha = trainer.stage
    idx, tags = fixed_samples(trainer, n or trainer.cfg.num_samples)
    x = batch_images(trainer.source, idx, res).to(trainer.device)
    trainer.ema.set_stage(res, alpha)
    model = calibrated(trainer, res, alpha)
    fake = model.translate(x, trainer.src_name, trainer.tgt_name, tags.to(trainer.device))
    rec = model.translate(x, trainer.src_name, trainer.src_name, trainer.source.tags[idx].to(trainer.device))
    rows = torch.cat([x, fake, rec]).float().cpu()
    rows = F.interpolate(rows, size=max(64, res), mode="nearest")
    return make_grid(rows, nrow=len(idx), padding=2, pad_value=1.0)


def export_trainer(trainer: Trainer, folder: Path, dtype: torch.dtype | None = torch.float16) -> Path:
    """Export the EMA generator at the highest fully faded-in resolution (fp16 safetensors by default),
    with what `Trainer.init_from` needs to train on from it: the discriminators
    (`discriminators/<domain>/`) and `training.json` (images seen, step, the run's config). Its config
    counts the eye colours of each hair colour on the target images (`eye_given_hair`)."""
    res, alpha = trainer.stage
    if alpha < 1.0:
        res, alpha = max(res // 2, 8), 1.0
    target = trainer.target
    folder = export_model(calibrated(trainer, res, alpha), folder, res, dtype,
                          eye_given_hair=eye_given_hair(target.hair, target.eye, trainer.cfg.model.vocab))
    for module, domain in ((trainer.d_target, trainer.tgt_name), (trainer.d_source, trainer.src_name)):
        if module is not None:
            export_discriminator(module, folder / DISCRIMINATORS_DIR / domain, res, dtype)
    info = {"images_seen": trainer.images_seen, "step": trainer.step_count, "resolution": res,
            "config": to_dict(trainer.cfg)}
    (folder / TRAINING_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return folder


def export_checkpoint(checkpoint: str | os.PathLike, folder: str | os.PathLike, dtype: torch.dtype = torch.float16,
                      resolution: int | None = None, data_root: str | None = None) -> Path:
    """Read a training checkpoint (weights_only) and write its EMA generator to `folder`.

    Goes through `export_trainer`, as the training loop does: truncated to the highest fully faded-in
    resolution (unless `resolution` is given) and, for batch norm, statistics re-measured on the
    run's reconstructions and source -> target translations, which needs its source and target
    images (`data_root` overrides where they are).
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no training checkpoint at {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    cfg = train_config_from_dict(state["config"])
    # The images are needed for the batch-norm statistics (source and target, see
    # `calibrated`); the frozen tagger is not.
    cfg = dataclasses.replace(cfg, data_root=data_root or cfg.data_root, w_tagger=0.0, w_tagger_features=0.0,
                              fill_tags_threshold=0.0, limit_per_folder=cfg.limit_per_folder or 2000)
    source, target = load_domains(cfg)
    trainer = Trainer(cfg, source, target)
    trainer.load_state_dict(state)
    if resolution is None:
        return export_trainer(trainer, Path(folder), dtype)
    trainer.ema.set_stage(resolution, 1.0)
    return export_model(calibrated(trainer, resolution, 1.0), Path(folder), resolution, dtype)


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

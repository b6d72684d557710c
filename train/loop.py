"""The training loop around `Trainer`: distributed setup, logging, samples, checkpoints, exports.

Rank 0 alone writes (config, TensorBoard, PNG grids, checkpoints, exports); every rank trains.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch

from train.config import TrainConfig, to_dict
from train.domains import load_domains
from train.engine import CHECKPOINT_NAME, Trainer
from train.export import export_trainer, sample_grid

log = logging.getLogger(__name__)


def dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when not distributed."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))


def setup_distributed(world: int, local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def agree_max(values: list[float], world: int, device: torch.device) -> list[float]:
    """The maximum of each value over all ranks (the values themselves when not distributed)."""
    if world <= 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def describe(cfg: TrainConfig, trainer: Trainer | None = None) -> str:
    lines = [f"run folder: {cfg.run_path}", f"data: {cfg.pack or cfg.root}"]
    if cfg.stage_fractions:
        lines.append(f"stages: {cfg.resolutions} (fractions of the {cfg.budget_minutes} min budget "
                     f"{list(cfg.stage_fractions)}), at most {cfg.total_images} images")
    else:
        lines.append(f"stages: {cfg.resolutions} (images per stage {list(cfg.stage_images)}), "
                     f"total {cfg.total_images} images")
    if cfg.budget_minutes:
        lines.append(f"budget: {cfg.budget_minutes} min from start, training stops "
                     f"{cfg.export_margin_minutes} min before it for the final checkpoint and export")
    if trainer is not None:
        n_g = sum(p.numel() for p in trainer.model.parameters())
        n_d = sum(p.numel() for p in trainer.d_params)
        lines += [(f"source images: {len(trainer.source)} (skipped {trainer.source.skipped}), "
                   f"target images: {len(trainer.target)} (skipped {trainer.target.skipped})"),
                  f"generator params {n_g / 1e6:.2f}M, discriminator params {n_d / 1e6:.2f}M",
                  f"tagger: {'loaded' if trainer.tagger is not None else 'not loaded'} ({trainer.tagger_path})"]
        repeats = trainer.tgt_sampler.repeats
        if repeats is not None:
            lines.append(f"target epoch: {trainer.tgt_sampler.n} draws (eye-colour balance {cfg.target_eye_balance}: "
                         f"up to {int(repeats.max())} draws per image)")
    return "\n".join(lines)


def configure_torch(cfg: TrainConfig, device: torch.device) -> None:
    """Threads, cuDNN autotuning and TF32 as the config asks."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        if cfg.tf32:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def build_trainer(cfg: TrainConfig, rank: int, world: int, device: torch.device, resume: bool = False,
                  grow: bool = False, init_from: str | None = None) -> Trainer:
    """The run's data and Trainer, continued from RUN_DIR/checkpoint.pt (`resume`, `grow`) or started
    from an export (`init_from`)."""
    source, target = load_domains(cfg, device=device)
    trainer = Trainer(cfg, source, target, rank, world, device)
    ckpt = cfg.run_path / CHECKPOINT_NAME
    if resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        trainer.load_state_dict(torch.load(ckpt, map_location=device, weights_only=True), grow=grow)
    elif init_from:
        trainer.init_from(Path(init_from))
    return trainer


def open_writer(cfg: TrainConfig):
    """Write the resolved config to the run folder and open its TensorBoard writer (rank 0 only)."""
    write_json(cfg.run_path / "config.json", to_dict(cfg))
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(cfg.run_path / "tb"))


def catch_stop_signals() -> tuple[dict, Callable[[], None]]:
    """SIGINT and SIGTERM set stop["flag"] (the loop finishes the step, checkpoints, then exits) until
    the returned function puts the previous handlers back."""
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    previous = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)

    def restore() -> None:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)

    return stop, restore


@dataclasses.dataclass
class Progress:
    """What the loop measures as it goes, for its log lines and the run's summary."""

    t0: float  # time.perf_counter() when the loop started
    n0: int  # images seen when the loop started
    start_step: int
    logs: dict = dataclasses.field(default_factory=dict)  # the last step's losses
    stage_stats: dict = dataclasses.field(default_factory=dict)  # resolution -> [images, seconds inside step()]
    deadline: float | None = None  # time.monotonic() when a budgeted run stops

    def speed(self, images_seen: int) -> float:
        return (images_seen - self.n0) / max(time.perf_counter() - self.t0, 1e-9)

    def stages(self) -> dict:
        return {str(r): {"images": n, "step_seconds": round(t, 2), "images_per_s": round(n / max(t, 1e-9), 1)}
                for r, (n, t) in sorted(self.stage_stats.items())}


def log_step(trainer: Trainer, progress: Progress, bar, writer) -> None:
    """The progress bar after every step; TensorBoard scalars and a JSON line every cfg.log_every steps."""
    cfg, step, logs = trainer.cfg, trainer.step_count, progress.logs
    res, alpha = trainer.stage
    speed = progress.speed(trainer.images_seen)
    bar.update(cfg.batch_for(res))
    left = "" if progress.deadline is None else f" {max(progress.deadline - time.monotonic(), 0) / 60:.0f} min left"
    bar.set_postfix_str(f"{res}px a={alpha:.2f} rec={logs['recon']:.3f} G={logs['g_gan']:.2f} "
                        f"D={logs['d_gan']:.2f} {speed:.1f} img/s{left}", refresh=False)
    if step % cfg.log_every == 0:
        for k, v in logs.items():
            writer.add_scalar(f"loss/{k}", v, trainer.images_seen)
        writer.add_scalar("train/resolution", res, trainer.images_seen)
        writer.add_scalar("train/alpha", alpha, trainer.images_seen)
        writer.add_scalar("train/images_per_s", speed, trainer.images_seen)
        print(json.dumps({"step": step, "images": trainer.images_seen, "res": res, "alpha": round(alpha, 3),
                          "img_s": round(speed, 2), "min": round((time.perf_counter() - progress.t0) / 60, 1),
                          **{k: round(v, 4) for k, v in logs.items()}}), flush=True)


def run_steps(trainer: Trainer, progress: Progress, stop: dict, bar, writer, master: bool,
              max_steps: int | None, device: torch.device) -> None:
    """Train until total_images, a stop signal, max_steps or progress.deadline; log, sample, checkpoint and
    export on the config's schedule (rank 0)."""
    cfg, run = trainer.cfg, trainer.cfg.run_path
    last_export = time.monotonic()
    tick = time.perf_counter()
    while trainer.images_seen < cfg.total_images and not stop["flag"]:
        if max_steps is not None and trainer.step_count - progress.start_step >= max_steps:
            break
        if progress.deadline is not None:
            # Every rank must stop, and change stage, at the same step: take the slowest clock.
            over, trainer.train_seconds = agree_max([float(time.monotonic() >= progress.deadline), trainer.train_seconds],
                                                    trainer.world, device)
            if over and trainer.step_count > progress.start_step:  # one step at least, so there is an export
                break
        if trainer.step_count % cfg.log_every == 0:
            trainer.maybe_load_tagger()
        images_before, step_start = trainer.images_seen, time.perf_counter()
        step_res = trainer.stage[0]
        progress.logs = trainer.step()  # returns floats, so the GPU has finished the step here
        stats = progress.stage_stats.setdefault(step_res, [0, 0.0])
        stats[0] += trainer.images_seen - images_before
        stats[1] += time.perf_counter() - step_start
        step = trainer.step_count
        if master:
            log_step(trainer, progress, bar, writer)
        if master and step % cfg.sample_every == 0:
            save_samples(trainer, run, writer)
        if step % cfg.checkpoint_every == 0 and master:
            trainer.save_checkpoint(run / CHECKPOINT_NAME)
        if master and cfg.export_every_minutes and time.monotonic() - last_export > 60 * cfg.export_every_minutes:
            export_now(trainer, run)
            last_export = time.monotonic()
        now = time.perf_counter()
        trainer.train_seconds += now - tick  # the whole iteration: the stage clock counts samples too
        tick = now


def train(cfg: TrainConfig, resume: bool = False, dry_run: bool = False, max_steps: int | None = None,
          progress: bool = True, grow: bool = False, init_from: str | None = None) -> dict:
    """Train (or, with dry_run, only load data, build models and print the plan). Returns a summary.

    With cfg.budget_minutes, training stops export_margin_minutes before the budget (counted from
    here, data loading included) so that the final checkpoint and export land inside it.
    """
    started = time.monotonic()
    deadline = started + 60 * (cfg.budget_minutes - cfg.export_margin_minutes) if cfg.budget_minutes else None
    rank, world, local_rank = dist_env()
    device = setup_distributed(world, local_rank)
    configure_torch(cfg, device)
    master = rank == 0
    run = cfg.run_path
    trainer = build_trainer(cfg, rank, world, device, resume, grow, init_from)
    if master:
        print(describe(cfg, trainer), flush=True)
    if dry_run:
        return {"dry_run": True, "source": len(trainer.source), "target": len(trainer.target)}
    writer = open_writer(cfg) if master else None
    stop, restore_signals = catch_stop_signals()
    from tqdm import tqdm

    # A budgeted run (the GPU configs set total_images out of reach) stops on the clock: its bar counts
    # images and minutes left, not an image total it will never see.
    bar = tqdm(total=None if deadline else cfg.total_images, initial=trainer.images_seen, unit="img",
               disable=not (master and progress), dynamic_ncols=True, mininterval=5)
    measured = Progress(time.perf_counter(), trainer.images_seen, trainer.step_count, deadline=deadline)
    try:
        run_steps(trainer, measured, stop, bar, writer, master, max_steps, device)
    finally:
        restore_signals()
        bar.close()
        if master and trainer.step_count > measured.start_step:
            trainer.save_checkpoint(run / CHECKPOINT_NAME)
            save_samples(trainer, run, writer)
            export_now(trainer, run)
            print(f"saved {run / CHECKPOINT_NAME} and {run / 'export'} at step {trainer.step_count}", flush=True)
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - measured.t0
    stages = measured.stages()
    if master and stages:
        print(json.dumps({"throughput_per_stage": stages}), flush=True)
    return {"step": trainer.step_count, "images": trainer.images_seen, "seconds": seconds,
            "images_per_s": (trainer.images_seen - measured.n0) / max(seconds, 1e-9), "losses": measured.logs,
            "interrupted": stop["flag"], "stages": stages, "wall_seconds": round(time.monotonic() - started, 2),
            "budget_seconds": 60 * cfg.budget_minutes or None,
            "resolution": trainer.stage[0]}


def save_samples(trainer: Trainer, run: Path, writer) -> Path:
    from torchvision.utils import save_image

    grid = sample_grid(trainer)
    path = run / "samples" / f"step_{trainer.step_count:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(grid, path)
    if writer is not None:
        writer.add_image("samples/input_translation_reconstruction", grid, trainer.images_seen)
    return path


def export_now(trainer: Trainer, run: Path) -> Path:
    """Export to run/export (latest) and keep a copy per step under run/exports/."""
    folder = export_trainer(trainer, run / "exports" / f"step_{trainer.step_count:07d}")
    export_trainer(trainer, run / "export")
    log.info("exported %s", folder)
    return folder

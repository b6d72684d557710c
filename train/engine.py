"""The TwinGAN training engine: one `Trainer` holding models, optimisers, EMA, samplers and RNGs.

`Trainer.step` draws a global batch, runs the generator once, updates the discriminators on
`train.step_losses.discriminator_loss`, then the generator on `train.step_losses.generator_loss`
against the updated discriminators, then the EMA. The step around the losses uses the small helpers
of `train/step_helpers.py` (`requires_grad`, `accumulate`, `ema_beta`, `fade_real`, ...), the schedule is
`train.schedule.stage_at`, growing a run is `train/growing.py` and exporting and sampling are
functions of the trainer in `train/export.py`. Distributed training averages gradients with one
all-reduce per optimiser step, as stylegan3's training loop does: the generator is used through
`encode`/`decode` and the discriminator loss includes a double-backward penalty, both of which
`DistributedDataParallel`'s forward hooks do not support; with equal per-rank batches the result is
the same gradient mean.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import random
from pathlib import Path

import torch
from torch import nn
from torch.profiler import record_function

from train import growing, losses
from train.augment import augment, upload_jitter
from train.config import TrainConfig
from train.data import DomainData, EpochSampler, balance_repeats, batch_images, fill_missing_tags
from train.eyes import cached_eyes, eye_masks
from train.frozen_tagger import load_tagger, tagger_path
from train.schedule import stage_at, stage_at_time
from train.step_helpers import (
    accumulate,
    bf16_autocast,
    discriminator_config,
    ema_beta,
    fade_real,
    gan_on_reconstructions,
    grad_allreduce,
    he_init,
    requires_grad,
)
from train.step_losses import discriminator_loss, g_forward, generator_loss
from twingan.model import Discriminator, TwinGAN

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


class Trainer:
    """Everything one training process holds; `step()` does one D update and one G update."""

    def __init__(self, cfg: TrainConfig, source: DomainData, target: DomainData, rank: int = 0, world: int = 1,
                 device: str | torch.device = "cpu"):
        self.cfg, self.source, self.target = cfg, source, target
        self.rank, self.world, self.device = rank, world, torch.device(device)
        self.vocab = cfg.model.vocab
        self.src_name, self.tgt_name = cfg.model.domains[0], cfg.model.domains[1]
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model = TwinGAN(cfg.model).to(self.device)
        d_config = discriminator_config(cfg)
        self.d_target = Discriminator(d_config).to(self.device)
        self.d_source = Discriminator(dataclasses.replace(d_config, tag_head=False)).to(self.device) \
            if cfg.reverse or gan_on_reconstructions(cfg) else None
        if cfg.d_init == "he":
            for d in self._discriminators():
                he_init(d)
        self.ema = copy.deepcopy(self.model).eval()
        requires_grad(self.ema, False)
        if cfg.channels_last:
            for m in self._modules():
                m.to(memory_format=torch.channels_last)
        d_params = list(self.d_target.parameters()) + (list(self.d_source.parameters()) if self.d_source else [])
        self.opt_g = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(d_params, lr=cfg.lr_d or cfg.lr, betas=cfg.betas)
        self.d_params = d_params
        # Noise and tag sampling; reseeded from (seed, step) every step. Samplers yield global batches.
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.src_sampler = EpochSampler(len(source), cfg.seed)
        self.tgt_sampler = EpochSampler(len(target), cfg.seed + 1,
                                        balance_repeats(target.eye, cfg.target_eye_balance)
                                        if cfg.target_eye_balance else None)
        self.source_eyes = self.eye_rgb = None
        if cfg.w_eye_colour:
            self.source_eyes = cached_eyes(source.images, cfg.run_path / "source_eyes.pt")
            self.eye_rgb = losses.eye_prototypes(self.vocab).to(self.device)
        tagged = target.hair >= 0
        pool = tagged | (target.eye >= 0)
        self.tag_pool = (target.tags[pool], target.hair[pool], target.eye[pool]) if bool(pool.any()) else None
        self.step_count, self.images_seen = 0, 0
        self.train_seconds = 0.0  # training-loop wall time, across resumes: the clock of stage_fractions
        self.tagger = None
        self.tagger_path = tagger_path(cfg.tagger)
        self.maybe_load_tagger()
        self.autocast = self.device.type == "cuda" and cfg.amp
        if cfg.compile:
            # Compile the forwards, not the modules, so state_dict keys stay free of "_orig_mod.".
            # Only the generator: the discriminators' gradient penalty needs double backward.
            for m in (self.model.encoder, self.model.generator):
                m.forward = torch.compile(m.forward)
        if world > 1:
            self._broadcast_parameters()

    def _modules(self):
        return [m for m in (self.model, self.ema, self.d_target, self.d_source) if m is not None]

    def _broadcast_parameters(self) -> None:
        import torch.distributed as dist

        for m in self._modules():
            for t in list(m.parameters()) + list(m.buffers()):
                dist.broadcast(t.data, 0)

    def maybe_load_tagger(self) -> bool:
        """Load the frozen tagger if the recipe uses one and it exists; True when it is loaded."""
        uses = self.cfg.w_tagger > 0 or self.cfg.w_tagger_features > 0 or self.cfg.fill_tags_threshold > 0
        if self.tagger is not None or not uses:
            return self.tagger is not None
        self.tagger = load_tagger(self.tagger_path, self.device)
        if self.tagger is None and not self.cfg.tagger_wait:
            raise FileNotFoundError(f"the recipe uses a tagger but there is no checkpoint at {self.tagger_path}")
        if self.tagger is not None:
            if self.tagger.vocab != self.vocab:
                raise ValueError(f"the tagger at {self.tagger_path} has another tag vocabulary than the model")
            log.info("loaded the frozen tagger from %s", self.tagger_path)
            if self.cfg.fill_tags_threshold > 0:
                n = fill_missing_tags(self.target, self.tagger.to("cpu"), self.cfg.fill_tags_threshold)
                self.tagger.to(self.device)
                log.info("the tagger filled %d missing target colour tags (p >= %.2f)", n,
                         self.cfg.fill_tags_threshold)
        return self.tagger is not None

    @property
    def stage(self) -> tuple[int, float]:
        if self.cfg.stage_fractions:
            return stage_at_time(self.train_seconds, self.cfg)
        return stage_at(self.images_seen, self.cfg)

    # ---- one step -------------------------------------------------------

    def _batch(self, resolution: int, alpha: float, global_batch: int):
        """This rank's share of the next global batch.

        The whole global batch (indices, augmentation, sampled tags) is drawn from (seed, step) on every
        rank and then sharded, so N processes see exactly the images and tags one process would.
        """
        si = self.src_sampler.next(global_batch)  # (global_batch,) on every rank
        ti = self.tgt_sampler.next(global_batch)
        xs = batch_images(self.source, si, resolution)
        xt = batch_images(self.target, ti, resolution)
        extra = {}
        if self.source_eyes is not None:  # the eye discs ride along as extra channels, through the augmentation
            xs = torch.cat([xs, eye_masks(self.source_eyes[si.cpu()], resolution).to(xs.device)], 1)
        if self.cfg.augment:
            with record_function("augment"):
                xs, xt = augment(xs, self.rng), augment(xt, self.rng)
        if self.cfg.upload_jitter:
            with record_function("upload_jitter"):
                xs = upload_jitter(xs, self.rng, self.cfg.upload_jitter)
        if self.source_eyes is not None:
            xs, extra["eye_masks"] = xs[:, :3], xs[:, 3:]
        xs, xt = fade_real(xs, alpha), fade_real(xt, alpha)
        if self.tag_pool is not None:
            fake_tags, fake_hair, fake_eye = losses.sample_target_tags(
                *self.tag_pool, global_batch, self.vocab, self.cfg.uniform_color_prob, self.rng,
                self.source.hair[si], self.cfg.own_hair_prob, self.cfg.auto_hair_prob, self.cfg.auto_eye_prob)
        else:
            fake_tags = torch.zeros(global_batch, self.vocab.dim)
            fake_hair = fake_eye = torch.full((global_batch,), -1)
        batch = dict(xs=xs, xt=xt, src_tags=self.source.tags[si], tgt_tags=self.target.tags[ti],
                     tgt_hair=self.target.hair[ti], tgt_eye=self.target.eye[ti],
                     tgt_binary_known=self.target.binary_known[ti],
                     fake_tags=fake_tags, fake_hair=fake_hair, fake_eye=fake_eye, **extra)
        shard = slice(self.rank, None, self.world)
        batch = {k: v[shard].to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.cfg.w_shift:  # one shift for the whole step, drawn last so runs without it draw as before
            reach = max(1, resolution // 8)
            batch["shift"] = tuple(torch.randint(-reach, reach + 1, (2,), generator=self.rng).tolist())
        if self.cfg.channels_last:
            batch["xs"] = batch["xs"].contiguous(memory_format=torch.channels_last)
            batch["xt"] = batch["xt"].contiguous(memory_format=torch.channels_last)
        return batch

    def _discriminators(self) -> list[Discriminator]:
        return [d for d in (self.d_target, self.d_source) if d is not None]

    def _update(self, optimiser: torch.optim.Optimizer, loss: torch.Tensor, params: list[nn.Parameter]) -> None:
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        grad_allreduce(params, self.world)
        optimiser.step()

    def step(self) -> dict[str, float]:
        """One training step on the next global batch: a D update, a G update against the updated D, the
        EMA. Returns the losses (averaged over ranks)."""
        cfg = self.cfg
        res, alpha = self.stage
        self.model.set_stage(res, alpha)
        self.ema.set_stage(res, alpha)
        global_batch = cfg.batch_for(res)
        # Noise and tags come from (seed, step) alone: a resumed run and every DDP rank draw the same ones.
        self.rng.manual_seed(cfg.seed * 1_000_003 + self.step_count)
        if global_batch % self.world:
            raise ValueError(f"batch {global_batch} at {res} px does not split over {self.world} processes")
        # The record_function labels name the phases in `python -m train.device.device profile`; free otherwise.
        with record_function("batch"):
            batch = self._batch(res, alpha, global_batch)
        recon_gan = gan_on_reconstructions(cfg, res)
        self.model.train()
        with record_function("g_forward"), bf16_autocast(self.autocast):
            gen = g_forward(self, batch)

        requires_grad(self.model, False)  # D update on the detached generator outputs
        for d in self._discriminators():
            requires_grad(d, True)
        with record_function("d_update"):
            d_loss, d_logs = discriminator_loss(self, batch, gen, alpha, recon_gan)
            self._update(self.opt_d, d_loss, self.d_params)

        requires_grad(self.model, True)  # G update against the updated, frozen discriminators
        for d in self._discriminators():
            requires_grad(d, False)
        with record_function("g_update"):
            g_loss, g_logs = generator_loss(self, batch, gen, alpha, recon_gan)
            self._update(self.opt_g, g_loss, list(self.model.parameters()))
        for d in self._discriminators():
            requires_grad(d, True)

        self.step_count += 1
        self.images_seen += global_batch
        with record_function("ema"):
            accumulate(self.ema, self.model,
                       ema_beta(global_batch, self.images_seen, cfg.ema_half_life_images, cfg.ema_rampup))
        logs = {**d_logs, **g_logs, "g_total": g_loss, "d_total": d_loss}
        return self._reduce_logs({k: v.detach() for k, v in logs.items()})

    def _reduce_logs(self, logs: dict[str, torch.Tensor]) -> dict[str, float]:
        keys = sorted(logs)
        vec = torch.stack([logs[k].float() for k in keys])
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(vec)
            vec /= self.world
        return dict(zip(keys, vec.tolist()))

    # ---- checkpoints ---------------------------------------------------

    def state_dict(self) -> dict:
        """Tensors and plain Python values only: torch.load(weights_only=True) reads it."""
        state = {
            "step": self.step_count, "images_seen": self.images_seen, "train_seconds": self.train_seconds,
            "model": self.model.state_dict(), "ema": self.ema.state_dict(),
            "d_target": self.d_target.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "src_sampler": self.src_sampler.state_dict(), "tgt_sampler": self.tgt_sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "python_rng": list(_plain(random.getstate())),
            "config": dataclasses.asdict(self.cfg),
            "tagger_loaded": self.tagger is not None,
        }
        if self.d_source is not None:
            state["d_source"] = self.d_source.state_dict()
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict, grow: bool = False) -> None:
        """Continue from `state` exactly; with `grow`, from a state trained at a lower model resolution
        (`train.growing.grow_from`): its layers are loaded, the new resolutions' layers keep their fresh weights."""
        self.step_count, self.images_seen = int(state["step"]), int(state["images_seen"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if grow:
            growing.grow_from(self, state)  # the modules, and Adam's moments by parameter name
        else:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.d_target.load_state_dict(state["d_target"])
            if self.d_source is not None:
                self.d_source.load_state_dict(state["d_source"])
            if "opt_g" in state:
                self.opt_g.load_state_dict(state["opt_g"])  # Adam casts moments saved in bf16 back to fp32
                self.opt_d.load_state_dict(state["opt_d"])
            else:  # a compact device state (train.device.device.compact_state) may leave the moments out
                log.warning("the checkpoint has no optimiser state: Adam starts afresh")
        # The config's learning rates win over the saved ones, so a resume can change them.
        for opt, lr in ((self.opt_g, self.cfg.lr), (self.opt_d, self.cfg.lr_d or self.cfg.lr)):
            for group in opt.param_groups:
                group["lr"] = lr
        self.src_sampler.load_state_dict(state["src_sampler"])
        self.tgt_sampler.load_state_dict(state["tgt_sampler"])
        torch.set_rng_state(state["torch_rng"].cpu())  # map_location may have moved it to the GPU
        random.setstate(_tuple(state["python_rng"]))
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([r.cpu() for r in state["cuda_rng"]])
        res, alpha = self.stage
        self.model.set_stage(res, alpha)
        self.ema.set_stage(res, alpha)
        if state.get("tagger_loaded"):
            self.maybe_load_tagger()

    def init_from(self, folder: Path) -> None:
        """Start from an exported checkpoint folder (`train.export.export_trainer`): its generator as the
        model and the EMA, its discriminators where it has them, its images seen; Adam starts afresh
        (`train.growing.init_from`, which also grows a lower-resolution export)."""
        growing.init_from(self, folder)

    def save_checkpoint(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)  # atomic: a crash mid-write never leaves a broken checkpoint
        return path


def _plain(obj):
    return [_plain(o) for o in obj] if isinstance(obj, (tuple, list)) else obj


def _tuple(obj):
    return tuple(_tuple(o) for o in obj) if isinstance(obj, list) else obj


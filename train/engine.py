"""The TwinGAN training engine: one `Trainer` holding models, optimisers, EMA, samplers and RNGs.

`Trainer.step` draws a global batch, runs the generator once, updates the discriminators on
`Trainer.discriminator_loss`, then the generator on `Trainer.generator_loss` against the updated
discriminators, then the EMA. Each loss is one line per term with its weight from the config,
built from the loss functions in `train/losses.py`; the step around them uses this module's small
helpers (`requires_grad`, `accumulate`, `ema_beta`, `fade_real`, `gan_on_reconstructions`, ...)
and the schedule is `stage_at`. Exporting (`export_model`, `calibrate_batch_norm`) lives in
`train/export.py`. Distributed training averages gradients with one all-reduce per optimiser step,
as stylegan3's training loop does: the generator is used through `encode`/`decode` and the
discriminator loss includes a double-backward penalty, both of which `DistributedDataParallel`'s
forward hooks do not support; with equal per-rank batches the result is the same gradient mean.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from train import losses
from train.augment import upload_jitter
from train.config import REPO_ROOT, ConfigError, TrainConfig, to_dict
from train.data import DomainData, EpochSampler, balance_repeats, batch_images
from train.export import DISCRIMINATORS_DIR, TRAINING_INFO_NAME, calibrate_batch_norm, export_discriminator, export_model
from twingan.config import TwinGANConfig
from twingan.model import Discriminator, TwinGAN

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


# ---------------------------------------------------------------- pure helpers

def _stage(position: float, lengths: tuple, cfg: TrainConfig) -> tuple[int, float]:
    """(resolution, alpha) at `position` along a schedule whose stages (but the last) last `lengths`."""
    stages = cfg.resolutions
    start = 0
    for i, res in enumerate(stages):
        length = lengths[min(i, len(lengths) - 1)]
        if i == len(stages) - 1 or position < start + length:
            if i == 0 or cfg.fade_fraction == 0:
                return res, 1.0
            return res, min(1.0, (position - start) / (cfg.fade_fraction * length))
        start += length
    raise AssertionError("unreachable")


def stage_at(images: int, cfg: TrainConfig) -> tuple[int, float]:
    """(resolution, alpha) after `images` training images: stage lengths from cfg.stage_images."""
    return _stage(images, cfg.stage_images, cfg)


def stage_at_time(seconds: float, cfg: TrainConfig) -> tuple[int, float]:
    """(resolution, alpha) after `seconds` of training: stage lengths are cfg.stage_fractions of the budget.

    Time, not images, because a stage at 16 px costs a small part of one at 128 px per image: a
    time box then gives each stage a known share of the card whatever its speed turns out to be.
    """
    return _stage(seconds / (60 * cfg.budget_minutes), cfg.stage_fractions, cfg)


def discriminator_config(cfg: TrainConfig) -> TwinGANConfig:
    """The generator's architecture with channels scaled by cfg.d_width (the discriminators' own)."""
    if cfg.d_width == 1:
        return cfg.model
    m = cfg.model
    return dataclasses.replace(m, base_channels=max(1, round(m.base_channels * cfg.d_width)),
                               max_channels=max(1, round(m.max_channels * cfg.d_width)))


def read_levels(latent: torch.Tensor, skips: dict, config: TwinGANConfig) -> list[torch.Tensor]:
    """The encoder outputs the generator reads: the 4x4 latent, then each used skip from low to high."""
    return [latent] + [skips[r] for r in sorted(skips) if config.uses_skip(r)]


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def accumulate(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """ema = beta * ema + (1 - beta) * model for parameters; buffers are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - beta)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def ema_beta(batch: int, images_seen: int, half_life: int, rampup: float) -> float:
    hl = min(half_life, max(images_seen * rampup, 1e-8)) if rampup > 0 else half_life
    return 0.5 ** (batch / max(hl, 1e-8))


def fade_real(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """PGGAN: during a fade-in, real images blend with their upsampled half-resolution version."""
    if alpha >= 1.0:
        return x
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    return torch.lerp(low, x, alpha)


def gan_on_reconstructions(cfg: TrainConfig, resolution: int | None = None) -> bool:
    """Whether the recipe has the GAN loss on reconstructions at all (resolution None), or at this stage."""
    on = bool(cfg.gan_recon_from and cfg.w_gan_recon)
    return on if resolution is None else on and resolution >= cfg.gan_recon_from


# The discriminators' side of the GAN on reconstructions, as every run so far had it (cfg.w_gan_recon
# weights the generator's side only). The target D takes target reconstructions as extra fakes, at
# full weight (its real term is d_gan's); the source D gets a second logistic loss on (real source
# images, source reconstructions) at half weight, so with `reverse` its real term counts 1.5 times.
# Why the two sides differ is not recorded; changing it would change the recipe.
D_RECON_TARGET_WEIGHT = 1.0
D_RECON_SOURCE_WEIGHT = 0.5


def grad_allreduce(params: list[nn.Parameter], world: int) -> None:
    """Average gradients over ranks with one flat all-reduce (missing grads count as zero)."""
    if world <= 1:
        return
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def load_tagger(path: Path, device: torch.device):
    """The frozen tagger for the conditioning loss, or None when its folder is not there (yet)."""
    from twingan.checkpoint import load_pretrained
    from twingan.tagger import Tagger

    if not (path / "model.safetensors").is_file():
        return None
    tagger = load_pretrained(Tagger, path, device=device)
    requires_grad(tagger, False)
    return tagger.eval()


# ---------------------------------------------------------------- the trainer

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
            from train.eyes import cached_eyes

            self.source_eyes = cached_eyes(source.images, cfg.run_path / "source_eyes.pt")
            self.eye_rgb = losses.eye_prototypes(self.vocab).to(self.device)
        tagged = target.hair >= 0
        pool = tagged | (target.eye >= 0)
        self.tag_pool = (target.tags[pool], target.hair[pool], target.eye[pool]) if bool(pool.any()) else None
        self.step_count, self.images_seen = 0, 0
        self.train_seconds = 0.0  # training-loop wall time, across resumes: the clock of stage_fractions
        self.tagger = None
        self.tagger_path = Path(cfg.tagger) if Path(cfg.tagger).is_absolute() else REPO_ROOT / cfg.tagger
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
                from train.data import fill_missing_tags

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
            from train.eyes import eye_masks

            xs = torch.cat([xs, eye_masks(self.source_eyes[si.cpu()], resolution).to(xs.device)], 1)
        if self.cfg.augment:
            from train.tags_data import augment

            xs, xt = augment(xs, self.rng), augment(xt, self.rng)
        if self.cfg.upload_jitter:
            xs = upload_jitter(xs, self.rng, self.cfg.upload_jitter)
        if self.source_eyes is not None:
            xs, extra["eye_masks"] = xs[:, :3], xs[:, 3:]
        xs, xt = fade_real(xs, alpha), fade_real(xt, alpha)
        if self.tag_pool is not None:
            fake_tags, fake_hair, fake_eye = losses.sample_target_tags(
                *self.tag_pool, global_batch, self.vocab, self.cfg.uniform_color_prob, self.rng,
                self.source.hair[si], self.cfg.own_hair_prob)
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

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.autocast)

    def _discriminators(self) -> list[Discriminator]:
        return [d for d in (self.d_target, self.d_source) if d is not None]

    def _g_forward(self, batch: dict) -> dict:
        """The generator's passes of a step. Keys: z* latents, s* skips, rec_* reconstructions, fake_*
        translations; *_s / *_t the source / target domain (fake_t: source -> target)."""
        m, src, tgt = self.model, self.src_name, self.tgt_name
        zs, ss = m.encode(batch["xs"], src)
        zt, st = m.encode(batch["xt"], tgt)
        out = dict(zs=zs, zt=zt, ss=ss, st=st,
                   rec_s=m.decode(zs, ss, src, batch["src_tags"]),
                   rec_t=m.decode(zt, st, tgt, batch["tgt_tags"]),
                   fake_t=m.decode(zs, ss, tgt, batch["fake_tags"]))
        if self.cfg.reverse:
            out["fake_s"] = m.decode(zt, st, src, None)
        return out

    def gradient_penalty(self, batch: dict, alpha: float) -> torch.Tensor:
        """cfg.gp ("dragan" or "r1") of the target D, plus the source D's when translating back."""
        pairs = [(self.d_target, batch["xt"])] + ([(self.d_source, batch["xs"])] if self.cfg.reverse else [])
        return sum(losses.dragan_penalty(d, real, self.rng, alpha) if self.cfg.gp == "dragan"
                   else losses.r1_penalty(d, real, alpha) for d, real in pairs)

    def discriminator_loss(self, batch: dict, gen: dict, alpha: float,
                           recon_gan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The discriminators' loss on real images and the generator's detached outputs; (loss, logged terms)."""
        cfg, d_t, d_s = self.cfg, self.d_target, self.d_source
        logs = {}
        with self._autocast():
            real_t, real_tags = d_t(batch["xt"], alpha)  # (B,), (B, TAG_DIM) or None
            fake_t, _ = d_t(gen["fake_t"].detach(), alpha)
            # One score of the real source images serves the source D's translation and reconstruction terms.
            real_s = d_s(batch["xs"], alpha)[0] if cfg.reverse or recon_gan else None
            logs["d_gan"] = d_gan = losses.d_logistic(real_t, fake_t)
            loss = d_gan  # D's GAN terms weigh 1: cfg.w_gan scales the generator's side
            if real_tags is not None and cfg.w_tag_d:
                logs["d_tag"] = d_tag = losses.tag_loss(real_tags.float(), batch["tgt_hair"], batch["tgt_eye"],
                                                        batch["tgt_tags"], batch["tgt_binary_known"], self.vocab)
                loss = loss + cfg.w_tag_d * d_tag
            if cfg.reverse:
                logs["d_gan_rev"] = d_rev = losses.d_logistic(real_s, d_s(gen["fake_s"].detach(), alpha)[0])
                loss = loss + d_rev
            if recon_gan:
                rec_t = d_t(gen["rec_t"].detach(), alpha)[0]
                rec_s = d_s(gen["rec_s"].detach(), alpha)[0]
                loss = loss + D_RECON_TARGET_WEIGHT * F.softplus(rec_t).mean()
                loss = loss + D_RECON_SOURCE_WEIGHT * losses.d_logistic(real_s, rec_s)
        if cfg.gp != "none" and cfg.gp_weight > 0 and self.step_count % cfg.gp_every == 0:
            logs["gp"] = gp = self.gradient_penalty(batch, alpha)
            loss = loss + cfg.gp_weight * cfg.gp_every * gp  # lazy: every gp_every steps, scaled up to match
        return loss, logs

    def generator_loss(self, batch: dict, gen: dict, alpha: float,
                       recon_gan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The generator's loss against the (frozen) discriminators; (loss, logged terms)."""
        cfg, m, d_t, d_s = self.cfg, self.model, self.d_target, self.d_source
        src, tgt = self.src_name, self.tgt_name
        logs = {}
        with self._autocast():
            logs["recon"] = recon = ((gen["rec_s"] - batch["xs"]).abs().mean()
                                     + (gen["rec_t"] - batch["xt"]).abs().mean())
            fake_score, fake_tags = d_t(gen["fake_t"], alpha)
            logs["g_gan"] = g_gan = losses.g_nonsaturating(fake_score)
            z_fake, s_fake = m.encode(gen["fake_t"], tgt)  # the translation, encoded back
            logs["latent"] = latent = (z_fake - gen["zs"]).abs().mean()
            loss = cfg.w_recon * recon
            loss = loss + cfg.w_gan * g_gan
            loss = loss + cfg.w_latent * latent
            if cfg.w_align:
                # Human encodings must land where the anime-norm generator expects its inputs, at every
                # level it reads: otherwise it draws a fixed pattern for out-of-distribution features.
                logs["align"] = align = losses.feature_alignment(read_levels(gen["zs"], gen["ss"], cfg.model),
                                                                 read_levels(gen["zt"], gen["st"], cfg.model))
                loss = loss + cfg.w_align * align
            if cfg.w_cycle:
                # Back through the image: the translation must carry the input's content, which the
                # latent term alone does not force once the latent has collapsed.
                logs["cycle"] = cycle = (m.decode(z_fake, s_fake, src, batch["src_tags"]) - batch["xs"]).abs().mean()
                loss = loss + cfg.w_cycle * cycle
            if cfg.w_shift:
                # The anime face must move with the person: a translation that draws its eyes (or a grid)
                # at the same place for every input does not.
                dy, dx = batch["shift"]
                moved = m.decode(*m.encode(losses.shift(batch["xs"], dy, dx), src), tgt, batch["fake_tags"])
                logs["shift"] = shift = losses.shift_consistency(moved, gen["fake_t"], dy, dx)
                loss = loss + cfg.w_shift * shift
            if cfg.w_eye_colour:
                # The asked eye colour, as pixels where the person's eyes are (no network reads it).
                asked = batch["fake_eye"] >= 0  # every row when the target has colour tags
                logs["eye_colour"] = eye_colour = losses.eye_colour(
                    gen["fake_t"][asked].float(), batch["eye_masks"][asked], self.eye_rgb[batch["fake_eye"][asked]])
                loss = loss + cfg.w_eye_colour * eye_colour
            if fake_tags is not None and cfg.w_tag_d:
                logs["g_tag"] = g_tag = losses.tag_loss(
                    fake_tags.float(), batch["fake_hair"], batch["fake_eye"], batch["fake_tags"],
                    torch.zeros_like(batch["fake_hair"], dtype=torch.bool), self.vocab)
                loss = loss + cfg.w_tag_d * g_tag
            if self.tagger is not None and (cfg.w_tagger or cfg.w_tagger_features):
                read = self.tagger(gen["fake_t"].float().clamp(0, 1))
                if cfg.w_tagger:
                    logs["g_tagger"] = g_tagger = F.cross_entropy(read["hair_logits"], batch["fake_hair"]) + \
                        cfg.w_tagger_eye * F.cross_entropy(read["eye_logits"], batch["fake_eye"])
                    loss = loss + cfg.w_tagger * g_tagger
                if cfg.w_tagger_features:
                    with torch.no_grad():
                        real_features = self.tagger.features(batch["xt"].float())
                    logs["g_tagger_features"] = g_feat = losses.feature_moments(read["features"].float(),
                                                                                real_features)
                    loss = loss + cfg.w_tagger_features * g_feat
            if cfg.reverse:
                logs["g_gan_rev"] = g_rev = losses.g_nonsaturating(d_s(gen["fake_s"], alpha)[0])
                z_rev, s_rev = m.encode(gen["fake_s"], src)
                latent_rev = (z_rev - gen["zt"]).abs().mean()
                loss = loss + cfg.w_gan * g_rev
                loss = loss + cfg.w_latent * latent_rev
                if cfg.w_cycle:
                    logs["cycle_rev"] = cycle_rev = (m.decode(z_rev, s_rev, tgt, batch["tgt_tags"])
                                                     - batch["xt"]).abs().mean()
                    loss = loss + cfg.w_cycle * cycle_rev
            if recon_gan:
                g_gan_recon = (losses.g_nonsaturating(d_t(gen["rec_t"], alpha)[0])
                               + losses.g_nonsaturating(d_s(gen["rec_s"], alpha)[0])) / 2  # mean of the domains
                loss = loss + cfg.w_gan_recon * g_gan_recon
        return loss, logs

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
        batch = self._batch(res, alpha, global_batch)
        recon_gan = gan_on_reconstructions(cfg, res)
        self.model.train()
        with self._autocast():
            gen = self._g_forward(batch)

        requires_grad(self.model, False)  # D update on the detached generator outputs
        for d in self._discriminators():
            requires_grad(d, True)
        d_loss, d_logs = self.discriminator_loss(batch, gen, alpha, recon_gan)
        self._update(self.opt_d, d_loss, self.d_params)

        requires_grad(self.model, True)  # G update against the updated, frozen discriminators
        for d in self._discriminators():
            requires_grad(d, False)
        g_loss, g_logs = self.generator_loss(batch, gen, alpha, recon_gan)
        self._update(self.opt_g, g_loss, list(self.model.parameters()))
        for d in self._discriminators():
            requires_grad(d, True)

        self.step_count += 1
        self.images_seen += global_batch
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

    # ---- samples, checkpoints, export ----------------------------------

    def fixed_samples(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The same n source images and tags every time: (images uint8, tags) with hair colours cycling."""
        g = torch.Generator().manual_seed(1234)
        idx = torch.randperm(len(self.source), generator=g)[:n]
        tags = torch.zeros(len(idx), self.vocab.dim)
        for i in range(len(idx)):
            tags[i, self.vocab.hair_slice.start + i % len(self.vocab.hair)] = 1
            tags[i, self.vocab.eye_slice.start + (i * 3) % len(self.vocab.eye)] = 1
        return idx, tags

    @torch.no_grad()
    def sample_grid(self, n: int | None = None) -> torch.Tensor:
        """Rows: input | translation | reconstruction (EMA generator, eval mode), (3, H, W) in [0, 1]."""
        from torchvision.utils import make_grid

        res, alpha = self.stage
        idx, tags = self.fixed_samples(n or self.cfg.num_samples)
        x = batch_images(self.source, idx, res).to(self.device)
        self.ema.set_stage(res, alpha)
        model = self.calibrated(res, alpha)
        fake = model.translate(x, self.src_name, self.tgt_name, tags.to(self.device))
        rec = model.translate(x, self.src_name, self.src_name, self.source.tags[idx].to(self.device))
        rows = torch.cat([x, fake, rec]).float().cpu()
        rows = F.interpolate(rows, size=max(64, res), mode="nearest")
        return make_grid(rows, nrow=len(idx), padding=2, pad_value=1.0)

    def calibrated(self, res: int, alpha: float, n: int = 256) -> TwinGAN:
        """The EMA generator with batch-norm statistics measured on n fixed images per path.

        Order: target -> target and source -> source reconstructions, then source -> target
        translations (tags drawn from the target tag distribution), which own the target
        generator statistics in the export because translation is what inference runs.
        """
        g = torch.Generator().manual_seed(4321)
        si = torch.randperm(len(self.source), generator=g)[:n]
        ti = torch.randperm(len(self.target), generator=g)[:n]
        xs = batch_images(self.source, si, res).to(self.device)
        xt = batch_images(self.target, ti, res).to(self.device)
        tags = None
        if self.tag_pool is not None:
            tags = losses.sample_target_tags(*self.tag_pool, len(si), self.vocab, self.cfg.uniform_color_prob, g,
                                             self.source.hair[si], self.cfg.own_hair_prob)[0].to(self.device)
        self.ema.set_stage(res, alpha)
        d = self.device
        passes = [(xt, self.tgt_name, self.tgt_name, self.target.tags[ti].to(d)),
                  (xs, self.src_name, self.src_name, self.source.tags[si].to(d)),
                  (xs, self.src_name, self.tgt_name, tags)]
        return calibrate_batch_norm(self.ema, passes)

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
        (`grow_into`): its layers are loaded, the new resolutions' layers keep their fresh weights."""
        self.step_count, self.images_seen = int(state["step"]), int(state["images_seen"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        if grow:
            self._grow_from(state)  # the modules, and Adam's moments by parameter name
        else:
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.d_target.load_state_dict(state["d_target"])
            if self.d_source is not None:
                self.d_source.load_state_dict(state["d_source"])
            if "opt_g" in state:
                self.opt_g.load_state_dict(state["opt_g"])  # Adam casts moments saved in bf16 back to fp32
                self.opt_d.load_state_dict(state["opt_d"])
            else:  # a compact device state (train.device.compact_state) may leave the moments out
                log.warning("the checkpoint has no optimiser state: Adam starts afresh")
        # The config's learning rates win over the saved ones, so a resume can change them.
        for opt, lr in ((self.opt_g, self.cfg.lr), (self.opt_d, self.cfg.lr_d or self.cfg.lr)):
            for group in opt.param_groups:
                group["lr"] = lr
        self.src_sampler.load_state_dict(state["src_sampler"])
        self.tgt_sampler.load_state_dict(state["tgt_sampler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(_tuple(state["python_rng"]))
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        res, alpha = self.stage
        self.model.set_stage(res, alpha)
        self.ema.set_stage(res, alpha)
        if state.get("tagger_loaded"):
            self.maybe_load_tagger()

    def _grow_from(self, state: dict) -> None:
        """Load a state whose model was trained at a lower resolution into this larger one."""
        saved_res = int(state["config"]["model"]["resolution"])
        new = [r for r in self.cfg.model.resolutions if r > saved_res]
        if not new:
            raise ConfigError(f"--grow: the checkpoint was trained at {saved_res} px; set model.resolution above it "
                              f"(this run's is {self.cfg.model.resolution})")
        pairs = [(self.model, "model"), (self.ema, "ema"), (self.d_target, "d_target")]
        if self.d_source is not None:
            pairs.append((self.d_source, "d_source"))
        for module, key in pairs:
            grow_into(module, state[key], new, key)
        # The EMA was copied from the fresh model, so its new layers start where the model's do.
        carry_adam_moments(self.opt_g, [self.model], state["opt_g"], [state["model"]])
        ds = [m for m in (self.d_target, self.d_source) if m is not None]
        carry_adam_moments(self.opt_d, ds, state["opt_d"], [state[k] for k in ("d_target", "d_source")[:len(ds)]])
        self._check_grown_stage(saved_res, new, "--grow")

    def _check_grown_stage(self, saved_res: int, new: list[int], flag: str) -> None:
        """A grown model must start its first new stage at the images seen, fading in from the saved one."""
        res, alpha = self.stage
        if (res, alpha) != (new[0], 0.0):
            raise ConfigError(f"{flag}: at {self.images_seen} images the schedule is at {res} px (fade-in {alpha:.2f}); "
                              f"set stage_images so that the {new[0]} px stage starts there, e.g. "
                              f"stage_images='{list(grow_schedule(self.cfg, self.images_seen, new[0]))}'")
        log.info("grew the %d px checkpoint to %d px: new layers at %s px start fresh", saved_res,
                 self.cfg.model.resolution, ", ".join(map(str, new)))

    def init_from(self, folder: Path) -> None:
        """Start from an exported checkpoint folder (`export`): its generator as the model and the EMA,
        its discriminators where it has them (else they start fresh), its images seen from
        `training.json`; Adam starts afresh. A checkpoint of a lower resolution is grown as `--grow` does."""
        from twingan.checkpoint import load_pretrained

        saved = load_pretrained(TwinGAN, folder)
        saved_res = saved.config.resolution
        new = [r for r in self.cfg.model.resolutions if r > saved_res]
        if saved_res > self.cfg.model.resolution:
            raise ConfigError(f"--init-from: {folder} is a {saved_res} px model; this run's model.resolution is "
                              f"{self.cfg.model.resolution}")
        state = saved.state_dict()
        grow_into(self.model, state, new, "the generator")
        grow_into(self.ema, state, new, "the generator")
        for module, domain in ((self.d_target, self.tgt_name), (self.d_source, self.src_name)):
            path = Path(folder) / DISCRIMINATORS_DIR / domain
            if module is None:
                continue
            if not (path / "model.safetensors").is_file():
                log.warning("%s has no %s discriminator: it starts fresh", folder, domain)
                continue
            d = load_pretrained(Discriminator, path)
            try:
                grow_into(module, d.state_dict(), new, f"the {domain} discriminator")
            except RuntimeError as err:  # shapes: another d_width or architecture
                raise ConfigError(f"--init-from: the {domain} discriminator in {path} does not fit this run's "
                                  f"(d_width {self.cfg.d_width}): {str(err).splitlines()[-1].strip()}") from None
        info_path = Path(folder) / TRAINING_INFO_NAME
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        self.images_seen, self.step_count = int(info.get("images_seen", 0)), int(info.get("step", 0))
        if new:
            self._check_grown_stage(saved_res, new, "--init-from")
        res, alpha = self.stage
        self.model.set_stage(res, alpha)
        self.ema.set_stage(res, alpha)
        log.info("initialised from %s (%d px, %d images seen); Adam starts afresh", folder, saved_res, self.images_seen)

    def save_checkpoint(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        tmp.replace(path)  # atomic: a crash mid-write never leaves a broken checkpoint
        return path

    def export(self, folder: Path, dtype: torch.dtype | None = torch.float16) -> Path:
        """Export the EMA generator at the highest fully faded-in resolution (fp16 safetensors by default),
        with what `init_from` needs to train on from it: the discriminators (`discriminators/<domain>/`)
        and `training.json` (images seen, step, the run's config)."""
        res, alpha = self.stage
        if alpha < 1.0:
            res, alpha = max(res // 2, 8), 1.0
        folder = export_model(self.calibrated(res, alpha), folder, res, dtype)
        for module, domain in ((self.d_target, self.tgt_name), (self.d_source, self.src_name)):
            if module is not None:
                export_discriminator(module, folder / DISCRIMINATORS_DIR / domain, res, dtype)
        info = {"images_seen": self.images_seen, "step": self.step_count, "resolution": res,
                "config": to_dict(self.cfg)}
        (folder / TRAINING_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
        return folder


def grow_into(module: nn.Module, saved: dict, new_resolutions: list[int], name: str = "model") -> list[str]:
    """Load `saved`, the state dict of `module`'s architecture at a lower resolution, into `module`:
    every tensor must find its place with its shape, and only the layers of `new_resolutions` may be
    left out (they keep their weights). Returns the keys left out."""
    missing, unexpected = module.load_state_dict(saved, strict=False)  # shapes are checked all the same
    if unexpected:
        raise ConfigError(f"--grow: {name} has no place for {len(unexpected)} saved tensors, e.g. {unexpected[0]}")
    marks = tuple(f".{r}." for r in new_resolutions)
    old_layers = [k for k in missing if not any(m in k for m in marks)]
    if old_layers:
        raise ConfigError(f"--grow: the checkpoint lacks {len(old_layers)} tensors of the resolutions it was trained at, "
                          f"e.g. {name}.{old_layers[0]}")
    return missing


def carry_adam_moments(opt: torch.optim.Optimizer, modules: list[nn.Module], saved_opt: dict,
                       saved_states: list[dict]) -> None:
    """Give `opt` (over the parameters of `modules`, in order) the saved optimiser's moments of the
    parameters the saved modules had, matched by name; the new layers' parameters start without."""
    new_index, old_order = {}, []
    for i, (module, saved) in enumerate(zip(modules, saved_states)):
        for name, _ in module.named_parameters():
            new_index[(i, name)] = len(new_index)
            if name in saved:  # a grown module lists the saved parameters in their old order
                old_order.append((i, name))
    n_saved = sum(len(g["params"]) for g in saved_opt["param_groups"])
    if n_saved != len(old_order):
        raise ConfigError(f"--grow: the saved optimiser has {n_saved} parameters, the saved modules {len(old_order)}")
    target = opt.state_dict()
    target["state"] = {new_index[old_order[k]]: v for k, v in saved_opt["state"].items()}
    opt.load_state_dict(target)


def grow_schedule(cfg: TrainConfig, images: int, first_new: int) -> tuple[int, ...]:
    """stage_images for a run grown to `first_new` px at `images` images: the stages before as they
    were, the one before `first_new` lasting until `images`, each new stage as long as the last given."""
    lengths, out = list(cfg.stage_images), []
    for i, res in enumerate(cfg.resolutions):
        if res >= first_new:
            out.append(lengths[-1])
        elif res * 2 == first_new:
            out.append(images - sum(out))
        else:
            out.append(lengths[min(i, len(lengths) - 1)])
    return tuple(out)


def _plain(obj):
    return [_plain(o) for o in obj] if isinstance(obj, (tuple, list)) else obj


def _tuple(obj):
    return tuple(_tuple(o) for o in obj) if isinstance(obj, list) else obj


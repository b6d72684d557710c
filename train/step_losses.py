"""The two losses of a training step, as rosinality's stylegan2 writes them: `discriminator_loss`
and `generator_loss`, one line per term with its weight from the config, built from the loss
functions in `train/losses.py`. Each takes the `Trainer` (its models, config and RNG), this rank's
batch (`Trainer._batch`) and the generator's outputs (`g_forward`), and returns (loss, logged terms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from train import losses
from train.step_helpers import bf16_autocast, read_levels

# The discriminators' side of the GAN on reconstructions, as every run so far had it (cfg.w_gan_recon
# weights the generator's side only). The target D takes target reconstructions as extra fakes, at
# full weight (its real term is d_gan's); the source D gets a second logistic loss on (real source
# images, source reconstructions) at half weight, so with `reverse` its real term counts 1.5 times.
# Why the two sides differ is not recorded; changing it would change the recipe.
D_RECON_TARGET_WEIGHT = 1.0
D_RECON_SOURCE_WEIGHT = 0.5


def g_forward(trainer, batch: dict) -> dict:
    """The generator's passes of a step. Keys: z* latents, s* skips, rec_* reconstructions, fake_*
    translations; *_s / *_t the source / target domain (fake_t: source -> target)."""
    m, src, tgt = trainer.model, trainer.src_name, trainer.tgt_name
    zs, ss = m.encode(batch["xs"], src)
    zt, st = m.encode(batch["xt"], tgt)
    out = dict(zs=zs, zt=zt, ss=ss, st=st,
               rec_s=m.decode(zs, ss, src, batch["src_tags"]),
               rec_t=m.decode(zt, st, tgt, batch["tgt_tags"]),
               fake_t=m.decode(zs, ss, tgt, batch["fake_tags"]))
    if trainer.cfg.reverse:
        out["fake_s"] = m.decode(zt, st, src, None)
    return out


def gradient_penalty(trainer, batch: dict, alpha: float) -> torch.Tensor:
    """cfg.gp ("dragan" or "r1") of the target D, plus the source D's when translating back."""
    cfg = trainer.cfg
    pairs = [(trainer.d_target, batch["xt"])] + ([(trainer.d_source, batch["xs"])] if cfg.reverse else [])
    return sum(losses.dragan_penalty(d, real, trainer.rng, alpha) if cfg.gp == "dragan"
               else losses.r1_penalty(d, real, alpha) for d, real in pairs)


def discriminator_loss(trainer, batch: dict, gen: dict, alpha: float,
                       recon_gan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The discriminators' loss on real images and the generator's detached outputs; (loss, logged terms)."""
    cfg, d_t, d_s = trainer.cfg, trainer.d_target, trainer.d_source
    logs = {}
    with bf16_autocast(trainer.autocast):
        real_t, real_tags = d_t(batch["xt"], alpha)  # (B,), (B, TAG_DIM) or None
        fake_t, _ = d_t(gen["fake_t"].detach(), alpha)
        # One score of the real source images serves the source D's translation and reconstruction terms.
        real_s = d_s(batch["xs"], alpha)[0] if cfg.reverse or recon_gan else None
        logs["d_gan"] = d_gan = losses.d_logistic(real_t, fake_t)
        loss = d_gan  # D's GAN terms weigh 1: cfg.w_gan scales the generator's side
        if real_tags is not None and cfg.w_tag_d:
            logs["d_tag"] = d_tag = losses.tag_loss(real_tags.float(), batch["tgt_hair"], batch["tgt_eye"],
                                                    batch["tgt_tags"], batch["tgt_binary_known"], trainer.vocab)
            loss = loss + cfg.w_tag_d * d_tag
        if cfg.reverse:
            logs["d_gan_rev"] = d_rev = losses.d_logistic(real_s, d_s(gen["fake_s"].detach(), alpha)[0])
            loss = loss + d_rev
        if recon_gan:
            rec_t = d_t(gen["rec_t"].detach(), alpha)[0]
            rec_s = d_s(gen["rec_s"].detach(), alpha)[0]
            loss = loss + D_RECON_TARGET_WEIGHT * F.softplus(rec_t).mean()
            loss = loss + D_RECON_SOURCE_WEIGHT * losses.d_logistic(real_s, rec_s)
    if cfg.gp != "none" and cfg.gp_weight > 0 and trainer.step_count % cfg.gp_every == 0:
        logs["gp"] = gp = gradient_penalty(trainer, batch, alpha)
        loss = loss + cfg.gp_weight * cfg.gp_every * gp  # lazy: every gp_every steps, scaled up to match
    return loss, logs


def generator_loss(trainer, batch: dict, gen: dict, alpha: float,
                   recon_gan: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The generator's loss against the (frozen) discriminators; (loss, logged terms)."""
    cfg, m, d_t, d_s = trainer.cfg, trainer.model, trainer.d_target, trainer.d_source
    src, tgt = trainer.src_name, trainer.tgt_name
    logs = {}
    with bf16_autocast(trainer.autocast):
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
            logs["cycle"] = cycle = losses.cycle_l1(m.decode(z_fake, s_fake, src, batch["src_tags"]), batch["xs"],
                                                    cfg.cycle_colour)
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
                gen["fake_t"][asked].float(), batch["eye_masks"][asked], trainer.eye_rgb[batch["fake_eye"][asked]])
            loss = loss + cfg.w_eye_colour * eye_colour
        if fake_tags is not None and cfg.w_tag_d:
            logs["g_tag"] = g_tag = losses.tag_loss(
                fake_tags.float(), batch["fake_hair"], batch["fake_eye"], batch["fake_tags"],
                torch.zeros_like(batch["fake_hair"], dtype=torch.bool), trainer.vocab)
            loss = loss + cfg.w_tag_d * g_tag
        if trainer.tagger is not None and (cfg.w_tagger or cfg.w_tagger_features):
            read = trainer.tagger(gen["fake_t"].float().clamp(0, 1))
            if cfg.w_tagger:
                logs["g_tagger"] = g_tagger = losses.masked_ce(read["hair_logits"], batch["fake_hair"]) + \
                    cfg.w_tagger_eye * losses.masked_ce(read["eye_logits"], batch["fake_eye"])
                loss = loss + cfg.w_tagger * g_tagger
            if cfg.w_tagger_features:
                with torch.no_grad():
                    real_features = trainer.tagger.features(batch["xt"].float())
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
                logs["cycle_rev"] = cycle_rev = losses.cycle_l1(m.decode(z_rev, s_rev, tgt, batch["tgt_tags"]),
                                                                batch["xt"], cfg.cycle_colour)
                loss = loss + cfg.w_cycle * cycle_rev
        if recon_gan:
            g_gan_recon = (losses.g_nonsaturating(d_t(gen["rec_t"], alpha)[0])
                           + losses.g_nonsaturating(d_s(gen["rec_s"], alpha)[0])) / 2  # mean of the domains
            loss = loss + cfg.w_gan_recon * g_gan_recon
    return loss, logs

"""Growing a run: a state or an export trained at a lower model resolution, loaded into a larger model.

Every saved layer is loaded (a layer's shape depends on its resolution, not on the final one), the
new resolutions' layers keep their fresh weights, Adam's moments follow their parameters by name,
and the schedule must start the first new stage at the images seen, so it fades in from the saved
model. `grow_from` serves `Trainer.load_state_dict(grow=True)` (`--resume --grow`), `init_from`
`Trainer.init_from` (`--init-from`, an export folder as `train.export_format` describes it).

`--init-from` also widens: a run whose model has more channels at some resolutions than the export
(a larger `model.min_channels`, say) gets the saved weights in the leading channels, fresh weights in
the new ones, and zeros where a layer reads the new channels, so it starts computing exactly what
the export computed (`widen_state`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from train.config import ConfigError, TrainConfig
from train.export_format import DISCRIMINATORS_DIR
from train.step_helpers import discriminator_config
from twingan.checkpoint import TRAINING_INFO_NAME, load_pretrained
from twingan.config import TwinGANConfig
from twingan.layers import DomainNorm
from twingan.model import Discriminator, TwinGAN

log = logging.getLogger(__name__)


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


def widen_state(module: nn.Module, saved: dict, name: str = "model") -> dict:
    """`saved` fitted to `module` where `module` has more channels: each saved tensor fills the
    leading channels of the module's (freshly initialised) one, and a conv's weights on its new input
    channels are zero, so the widened network computes what the saved one did (with pixel norm off:
    pixel norm averages over all channels). Returns the state to load; a tensor that would shrink,
    or one of a layer that cannot widen this way, is a ConfigError."""
    current = module.state_dict()
    owners = dict(module.named_modules())
    out = dict(saved)
    for key, old in saved.items():
        new = current.get(key)
        if new is None or new.shape == old.shape:
            continue
        if new.ndim != old.ndim or any(n < o for n, o in zip(new.shape, old.shape)):
            raise ConfigError(f"--init-from: {name}.{key} has shape {tuple(old.shape)} in the checkpoint, "
                              f"{tuple(new.shape)} here; only more channels can be filled in")
        owner_name, _, leaf = key.rpartition(".")
        owner = owners.get(owner_name)
        parent = owners.get(owner_name.rpartition(".")[0])
        fitted = new.clone()
        lead = tuple(slice(0, o) for o in old.shape)
        if isinstance(owner, nn.Conv2d) and leaf == "weight":
            fitted[lead] = old.to(fitted.dtype)
            fitted[:, old.shape[1]:] = 0  # the new input channels are not read yet
        elif isinstance(owner, nn.Conv2d) and leaf == "bias" or isinstance(owner, DomainNorm):
            fitted[lead] = old.to(fitted.dtype)  # (domains, C): scale/shift and running statistics
        elif isinstance(owner, nn.Linear) and isinstance(parent, DomainNorm) and leaf == "weight":
            # The tag modulation: (2C, E), the scales' rows then the shifts'.
            c_old, c_new = old.shape[0] // 2, new.shape[0] // 2
            fitted[:c_old, :old.shape[1]] = old[:c_old].to(fitted.dtype)
            fitted[c_new:c_new + c_old, :old.shape[1]] = old[c_old:].to(fitted.dtype)
        else:
            raise ConfigError(f"--init-from: {name}.{key} ({type(owner).__name__}) cannot be widened from "
                              f"{tuple(old.shape)} to {tuple(new.shape)}")
        out[key] = fitted
    return out


def check_widening(saved: TwinGANConfig, new: TwinGANConfig, reads_skips: bool = True) -> list[int]:
    """The resolutions whose channels `new` widens from `saved`; a ConfigError where a widened layer
    feeds a UNet skip (`reads_skips`: the generator reads it concatenated behind its own channels, so a leading
    slice would not be the saved layout) or the architectures differ otherwise."""
    if saved.skip_resolutions != new.skip_resolutions or saved.tag_dim != new.tag_dim:
        return []  # not a widening: the shape check reports it
    wider = [r for r in saved.resolutions if new.channels(r) > saved.channels(r)]
    skipped = [r for r in wider if reads_skips and r * 2 in new.resolutions and new.uses_skip(r * 2)]
    if skipped:
        raise ConfigError(f"--init-from: widening the {skipped[0]} px layers is not supported: the generator reads "
                          "them through a UNet skip")
    if wider and new.pixel_norm:
        log.warning("pixel norm is on: the widened model does not compute exactly what the checkpoint did")
    return wider


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


def grow_from(trainer, state: dict) -> None:
    """Load a Trainer state whose model was trained at a lower resolution into `trainer`'s larger one:
    the modules, and Adam's moments by parameter name."""
    saved_res = int(state["config"]["model"]["resolution"])
    new = [r for r in trainer.cfg.model.resolutions if r > saved_res]
    if not new:
        raise ConfigError(f"--grow: the checkpoint was trained at {saved_res} px; set model.resolution above it "
                          f"(this run's is {trainer.cfg.model.resolution})")
    pairs = [(trainer.model, "model"), (trainer.ema, "ema"), (trainer.d_target, "d_target")]
    if trainer.d_source is not None:
        pairs.append((trainer.d_source, "d_source"))
    for module, key in pairs:
        grow_into(module, state[key], new, key)
    # The EMA was copied from the fresh model, so its new layers start where the model's do.
    carry_adam_moments(trainer.opt_g, [trainer.model], state["opt_g"], [state["model"]])
    ds = [m for m in (trainer.d_target, trainer.d_source) if m is not None]
    carry_adam_moments(trainer.opt_d, ds, state["opt_d"], [state[k] for k in ("d_target", "d_source")[:len(ds)]])
    check_grown_stage(trainer, saved_res, new, "--grow")


def check_grown_stage(trainer, saved_res: int, new: list[int], flag: str) -> None:
    """A grown model must start its first new stage at the images seen, fading in from the saved one."""
    res, alpha = trainer.stage
    if (res, alpha) != (new[0], 0.0):
        raise ConfigError(f"{flag}: at {trainer.images_seen} images the schedule is at {res} px (fade-in {alpha:.2f}); "
                          f"set stage_images so that the {new[0]} px stage starts there, e.g. "
                          f"stage_images='{list(grow_schedule(trainer.cfg, trainer.images_seen, new[0]))}'")
    log.info("grew the %d px checkpoint to %d px: new layers at %s px start fresh", saved_res,
             trainer.cfg.model.resolution, ", ".join(map(str, new)))


def init_from(trainer, folder: Path) -> None:
    """Start `trainer` from an exported checkpoint folder: its generator as the model and the EMA, its
    discriminators where it has them (else they start fresh), its images seen from `training.json`;
    Adam starts afresh. A checkpoint of a lower resolution is grown as `--grow` does."""
    cfg = trainer.cfg
    saved = load_pretrained(TwinGAN, folder)
    saved_res = saved.config.resolution
    new = [r for r in cfg.model.resolutions if r > saved_res]
    if saved_res > cfg.model.resolution:
        raise ConfigError(f"--init-from: {folder} is a {saved_res} px model; this run's model.resolution is "
                          f"{cfg.model.resolution}")
    wider = check_widening(saved.config, cfg.model)
    state = saved.state_dict()
    try:
        if wider:
            log.info("widening the %s px layers of %s (channels %s -> %s)", ", ".join(map(str, wider)), folder,
                     [saved.config.channels(r) for r in wider], [cfg.model.channels(r) for r in wider])
            state = widen_state(trainer.model, state, "the generator")
        grow_into(trainer.model, state, new, "the generator")
        grow_into(trainer.ema, state, new, "the generator")
    except RuntimeError as err:  # shapes: another channel schedule, skips or tag vocabulary
        raise ConfigError(f"--init-from: the generator in {folder} does not fit this run's model config: "
                          f"{str(err).splitlines()[-1].strip()}") from None
    for module, domain in ((trainer.d_target, trainer.tgt_name), (trainer.d_source, trainer.src_name)):
        path = Path(folder) / DISCRIMINATORS_DIR / domain
        if module is None:
            continue
        if not cfg.init_discriminators:
            log.info("the %s discriminator starts fresh (init_discriminators is false)", domain)
            continue
        if not (path / "model.safetensors").is_file():
            log.warning("%s has no %s discriminator: it starts fresh", folder, domain)
            continue
        d = load_pretrained(Discriminator, path)
        try:
            d_state = d.state_dict()
            if check_widening(d.config, discriminator_config(cfg), reads_skips=False):
                d_state = widen_state(module, d_state, f"the {domain} discriminator")
            grow_into(module, d_state, new, f"the {domain} discriminator")
        except RuntimeError as err:  # shapes: another d_width or architecture
            raise ConfigError(f"--init-from: the {domain} discriminator in {path} does not fit this run's "
                              f"(d_width {cfg.d_width}): {str(err).splitlines()[-1].strip()}") from None
    info_path = Path(folder) / TRAINING_INFO_NAME
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    trainer.images_seen, trainer.step_count = int(info.get("images_seen", 0)), int(info.get("step", 0))
    if new:
        check_grown_stage(trainer, saved_res, new, "--init-from")
    res, alpha = trainer.stage
    trainer.model.set_stage(res, alpha)
    trainer.ema.set_stage(res, alpha)
    log.info("initialised from %s (%d px, %d images seen); Adam starts afresh", folder, saved_res,
             trainer.images_seen)

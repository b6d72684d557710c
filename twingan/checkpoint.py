"""Save and load models as `config.json` + `model.safetensors` folders (also Hub model repos).

A checkpoint folder holds the full architecture config, so loading rebuilds the model from the
folder alone and loads the weights with `strict=True`. Nothing is ever unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TRAINING_INFO_NAME = "training.json"  # beside an exported TwinGAN: images seen, step and the run's config
# Where the bundled checkpoints live; a Hub repo id falls back to checkpoints/<repo name>.
LOCAL_CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"

M = TypeVar("M", bound=nn.Module)


class CheckpointError(RuntimeError):
    """A checkpoint folder or repo that cannot be loaded; the message says what is wrong."""


def trained_both_ways(folder: str | os.PathLike) -> bool:
    """Whether a TwinGAN checkpoint folder was trained to translate back, target -> source, too: its
    training.json says the run had `reverse`. A folder without one (an older export) was not."""
    info_path = Path(folder) / TRAINING_INFO_NAME
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return bool(info.get("config", {}).get("reverse"))


def save_pretrained(model: nn.Module, folder: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write `model.config` and its weights (floats cast to `dtype`, e.g. torch.float16) to `folder`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_type": model.model_type, **dataclasses.asdict(model.config)}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        state[name] = tensor.contiguous()
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"model_type": model.model_type})
    return folder


def config_from_dict(config_cls, values: dict):
    """Build a config dataclass from JSON values; unknown keys are an error, lists become tuples."""
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise CheckpointError(f"config has keys that {config_cls.__name__} does not know: {', '.join(unknown)}")
    defaults = config_cls()
    kwargs = {}
    for name, value in values.items():
        if isinstance(getattr(defaults, name), tuple) and isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[name] = value
    return config_cls(**kwargs)


def load_pretrained(model_cls: type[M], name_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> M:
    """Rebuild `model_cls` from a checkpoint folder or Hub repo id and load its weights strictly.

    The model class must define `model_type` (a string stored in config.json) and `config_class`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_checkpoint(name_or_path)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise CheckpointError(f"{folder} is not a checkpoint folder: {path.name} is missing")
    try:
        values = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_path} is not valid JSON: {err}") from None
    model_type = values.pop("model_type", None)
    if model_type != model_cls.model_type:
        raise CheckpointError(
            f"{folder} holds a {model_type!r} model, not a {model_cls.model_type!r} model")
    try:
        config = config_from_dict(model_cls.config_class, values)
        model = model_cls(config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{config_path} does not describe a valid {model_cls.__name__}: {err}") from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file: {err}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights_path} does not match its config: missing {_few(missing)}; unexpected {_few(unexpected)}")
    wrong = [f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise CheckpointError(f"{weights_path} has tensors of the wrong shape: {_few(wrong)}")
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}  # fp16 exports load into fp32 models
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=dtype).eval()


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A local folder for `name_or_path`: a path as is, else a Hub repo, else the bundled copy.

    A Hub miss (offline, unknown repo, no network) falls back to `checkpoints/<repo name>` with a
    logged message. The network is probed once with a short timeout first, so an offline machine
    does not sit in huggingface_hub's retry loop.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/")):
        raise CheckpointError(f"checkpoint folder {name} does not exist")
    fallback = LOCAL_CHECKPOINTS / name.split("/")[-1]
    try:
        return Path(_hub_snapshot(name))
    except Exception as err:  # any Hub failure means: use the bundled copy if there is one
        if fallback.is_dir():
            log.warning("Could not get %s from the Hugging Face Hub (%s); using the bundled copy %s",
                        name, _first_line(err), fallback)
            return fallback
        raise CheckpointError(
            f"{name} is neither a local folder nor reachable on the Hugging Face Hub ({_first_line(err)}), "
            f"and there is no bundled copy at {fallback}") from None


def _hub_snapshot(repo_id: str) -> str:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    allow = [CONFIG_NAME, WEIGHTS_NAME, "README.md", TRAINING_INFO_NAME]
    try:  # a cached copy needs no network
        return snapshot_download(repo_id, allow_patterns=allow, local_files_only=True)
    except LocalEntryNotFoundError:
        pass  # not cached: try the network below
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise CheckpointError("HF_HUB_OFFLINE is set")
    if not _hub_reachable():
        raise CheckpointError("huggingface.co is not reachable")
    return snapshot_download(repo_id, allow_patterns=allow)


def _hub_reachable(timeout: float = 1.5) -> bool:
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _few(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__

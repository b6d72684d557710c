"""The one training config dataclass, filled from a JSON file and `key=value` overrides.

`TrainConfig.model` is the architecture (`TwinGANConfig`), written into every export; the other
fields are the recipe. Configs ship in `train/configs/*.json`; the resolved config is written to the
run folder as `config.json` so a run can be repeated or resumed from it alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from twingan.config import TwinGANConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and the problem."""


def default_data_root() -> str:
    """`$TWINGAN_DATA`, else ../shared/data relative to the repo root."""
    return os.environ.get("TWINGAN_DATA") or str(REPO_ROOT.parent / "shared" / "data")


@dataclass
class TrainConfig:
    model: TwinGANConfig = field(default_factory=TwinGANConfig)  # architecture, stored with the weights
    # --- data (paths relative to data_root unless absolute) ---
    data_root: str = ""  # "" = $TWINGAN_DATA or ../shared/data
    source_dirs: tuple[str, ...] = ("selfie2anime/trainA",)  # image folders of the source domain (human)
    target_dirs: tuple[str, ...] = ("selfie2anime/trainB",)  # untagged target folders (anime)
    target_tags_csv: str = "anime_tags/tags.csv"  # tagged target images ("" = none); gives the tag head labels
    target_tags_images: str = "anime_tags/images"  # folder the tags CSV's `file` column refers to
    source_attributes_csv: str = ""  # CelebA-style attributes for source hair colours ("" = none)
    source_attributes_images: str = ""  # folder holding the images the attributes CSV lists (added to source)
    source_attributes_limit: int = 0  # at most this many attribute-CSV images (0 = all); keeps the mix near the test selfies
    source_crop_top: float = 0.12  # non-square sources: where the square crop starts (0 top, 0.5 centre)
    limit_per_folder: int = 0  # keep at most this many images per folder (0 = all); for quick runs
    # --- schedule ---
    batch_size: int = 8  # global batch; split evenly across DDP processes
    start_resolution: int = 16  # progressive growing starts here (model.resolution = no growing)
    stage_images: tuple[int, ...] = (300_000,)  # images per stage before the last; one value = all stages
    fade_fraction: float = 0.5  # first part of each grown stage fades the new layers in
    batch_by_resolution: dict[str, int] = field(default_factory=dict)  # e.g. {"128": 4}: batch per stage
    total_images: int = 6_000_000  # training stops after this many images (counted globally)
    # --- optimiser ---
    lr: float = 1e-4  # Adam, G and D alike (original 1e-4)
    lr_d: float = 0.0  # discriminator learning rate (0 = lr); a faster D (TTUR) sharpens short runs
    betas: tuple[float, float] = (0.5, 0.99)  # original values
    ema_half_life_images: int = 10_000  # EMA of G: weight halves every this many images
    ema_rampup: float = 0.05  # early on the half-life is at most this fraction of images seen
    # --- losses ---
    w_recon: float = 1.0  # L1 self-reconstruction, both domains
    w_gan: float = 1.0  # non-saturating GAN loss on translations
    w_gan_recon: float = 1.0  # GAN loss on reconstructions (from gan_recon_from px up)
    gan_recon_from: int = 64  # 0 = never
    w_latent: float = 0.1  # L1 between the latent of an input and of its translation
    w_cycle: float = 0.0  # L1 of source -> target -> source (not in the original; makes translations use the input)
    # How much of each pixel's colour the cycle term compares: 1 the RGB L1; below 1 both images are first taken
    # toward their grey (luma) by 1 - this, so the translation need not carry the photo's skin and background hues.
    cycle_colour: float = 1.0
    reverse: bool = True  # also translate target -> source (second discriminator)
    w_tag_d: float = 1.0  # tag head of the target discriminator: CE on real tags, G gets it on fakes
    w_tagger: float = 0.0  # frozen tagger's loss on translations (0 = off)
    # Weight of the eye-colour term inside w_tagger's CE (0: the frozen tagger teaches hair only; eyes come
    # from D's tag head and w_eye_colour).
    w_tagger_eye: float = 1.0
    w_tagger_features: float = 0.0  # match mean/std of frozen-tagger features of translations to real target images
    # Match the per-position mean/std of source encodings to target encodings at the latent and every skip G reads.
    w_align: float = 0.0
    # L1 between translate(shift(x)) and shift(translate(x)), a random shift of up to 1/8 of the side: what is
    # painted at fixed places, whatever the input, breaks it.
    w_shift: float = 0.0
    # Each eye of a translation (found on the source by the face detector) must hold pixels of the asked eye
    # colour's RGB (train.losses.EYE_RGB): a pixel loss, not a network's reading.
    w_eye_colour: float = 0.0
    # Fresh discriminators' conv and linear weights: "normal" N(0, model.init_std), as the original; "he" He-normal
    # for leaky ReLU 0.2, which keeps the activations' scale through D (with 0.02 the 64 px layers' outputs shrink
    # ~10x and a fresh D's loss sat at chance for thousands of images).
    d_init: str = "normal"
    # --init-from also loads the checkpoint's discriminators (false: they start fresh, e.g. with another d_init).
    init_discriminators: bool = True
    d_width: float = 1.0  # discriminator channels = this x the generator's (D is not exported: inference cost unchanged)
    tagger: str = "checkpoints/tagger"  # frozen tagger for w_tagger (relative to the repo root)
    fill_tags_threshold: float = 0.0  # >0: untagged target images get the tagger's colours where it is this sure
    tagger_wait: bool = True  # if the tagger is missing, keep training and load it once it appears
    own_hair_prob: float = 0.2  # chance a source image with a known hair colour keeps it as the target tag
    uniform_color_prob: float = 0.5  # chance the hair/eye tag is drawn uniformly, so rare colours are learned
    # chance a translation asks for no hair colour, as the app's "auto" (and an untrusted hair read) does;
    # 0: every translation asks for one, and the app's "auto" sends the generator a tag it never saw
    auto_hair_prob: float = 0.0
    auto_eye_prob: float = 0.0  # the same for the eyes (the app's "auto" eyes: every eye colour at 1/n)
    # >0: each target image appears (commonest eye colour's count / its eye colour's count)^this times an epoch,
    # so D's tag head and the anime reconstructions see rare eye colours from real images (0 = once each).
    target_eye_balance: float = 0.0
    gp: str = "dragan"  # gradient penalty: "dragan" (original), "r1" or "none"
    gp_weight: float = 0.25  # original DRAGAN lambda
    gp_every: int = 1  # lazy regularisation: apply every k steps with weight * k
    augment: bool = True  # flip, crop 0.8-1.0, brightness (hue left alone: labels are colours)
    # Source images framed, tinted, greyed, blurred and JPEG-compressed like uploads (train.augment); scales
    # each one's chance (0 = off).
    upload_jitter: float = 0.0
    # --- engine ---
    seed: int = 0
    threads: int = 0  # torch.set_num_threads (0 = leave torch's default)
    channels_last: bool = False
    compile: bool = False  # torch.compile the encoder and generator (not the Ds: their penalty needs double backward)
    amp: bool = True  # bf16/fp16 autocast, CUDA only
    log_every: int = 50  # steps between TensorBoard scalars
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 2000  # steps between training checkpoints
    export_every_minutes: float = 0.0  # also export the EMA generator this often (0 = only at the end)
    num_samples: int = 8  # fixed samples in the grids
    run_dir: str = "runs/default"  # relative to the repo root unless absolute
    # --- a time-boxed run on a lent GPU (scripts/device_train.sh): data pack, wall-clock budget, CUDA speed switches ---
    pack: str = ""  # `python -m train.device.pack` file (relative to the repo root); replaces the folder fields above
    budget_minutes: float = 0.0  # stop training this long after `train` starts, data loading included (0 = no limit)
    stage_fractions: tuple[float, ...] = ()  # with a budget: each stage but the last gets this share of it (() = stage_images)
    export_margin_minutes: float = 0.5  # the end of the budget kept for the final checkpoint, samples and export
    cudnn_benchmark: bool = False  # CUDA: cuDNN picks the fastest conv algorithms (shapes repeat within a stage)
    tf32: bool = False  # CUDA: TF32 for the fp32 work left outside autocast (the gradient penalty, the EMA)

    def __post_init__(self):
        check(self)

    @property
    def root(self) -> Path:
        return Path(self.data_root or default_data_root())

    def resolve(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else self.root / p

    @property
    def run_path(self) -> Path:
        p = Path(self.run_dir)
        return p if p.is_absolute() else REPO_ROOT / p

    @property
    def resolutions(self) -> list[int]:
        """The stages trained, start_resolution .. model.resolution."""
        return [r for r in self.model.resolutions if self.start_resolution <= r <= self.model.resolution]

    def batch_for(self, resolution: int) -> int:
        return int(self.batch_by_resolution.get(str(resolution), self.batch_size))


def check(cfg: TrainConfig) -> None:
    """Range checks that a type check cannot do."""
    if cfg.start_resolution not in cfg.model.resolutions[1:]:
        raise ConfigError(f"start_resolution {cfg.start_resolution} must be one of {cfg.model.resolutions[1:]}")
    if cfg.batch_size < 1 or any(int(b) < 1 for b in cfg.batch_by_resolution.values()):
        raise ConfigError("batch sizes must be >= 1")
    if not cfg.stage_images or any(n < 1 for n in cfg.stage_images):
        raise ConfigError("stage_images must be one or more positive image counts")
    if not 0 <= cfg.fade_fraction <= 1:
        raise ConfigError(f"fade_fraction must be in [0, 1], got {cfg.fade_fraction}")
    if cfg.d_init not in ("normal", "he"):
        raise ConfigError(f"d_init must be 'normal' or 'he', got {cfg.d_init!r}")
    if cfg.gp not in ("dragan", "r1", "none"):
        raise ConfigError(f"gp must be 'dragan', 'r1' or 'none', got {cfg.gp!r}")
    if cfg.gp_every < 1 or cfg.log_every < 1 or cfg.sample_every < 1 or cfg.checkpoint_every < 1:
        raise ConfigError("gp_every, log_every, sample_every and checkpoint_every must be >= 1")
    if not cfg.source_dirs and not cfg.source_attributes_images:
        raise ConfigError("no source images: set source_dirs or source_attributes_images")
    if not cfg.target_dirs and not cfg.target_tags_csv:
        raise ConfigError("no target images: set target_dirs or target_tags_csv")
    if len(cfg.model.domains) != 2:
        raise ConfigError("training needs exactly two domains (source, target)")
    if not 0 <= cfg.target_eye_balance <= 1:
        raise ConfigError(f"target_eye_balance must be in [0, 1], got {cfg.target_eye_balance}")
    if not 0 <= cfg.upload_jitter <= 1:
        raise ConfigError(f"upload_jitter must be in [0, 1], got {cfg.upload_jitter}")
    if not 0 <= cfg.cycle_colour <= 1:
        raise ConfigError(f"cycle_colour must be in [0, 1], got {cfg.cycle_colour}")
    if cfg.d_width <= 0:
        raise ConfigError(f"d_width must be > 0, got {cfg.d_width}")
    for p in (cfg.own_hair_prob, cfg.uniform_color_prob, cfg.auto_hair_prob, cfg.auto_eye_prob, cfg.fill_tags_threshold):
        if not 0 <= p <= 1:
            raise ConfigError(f"probabilities must be in [0, 1], got {p}")
    if cfg.budget_minutes < 0 or cfg.export_margin_minutes < 0:
        raise ConfigError("budget_minutes and export_margin_minutes must be >= 0")
    if cfg.budget_minutes and cfg.export_margin_minutes >= cfg.budget_minutes:
        raise ConfigError(f"export_margin_minutes ({cfg.export_margin_minutes}) must be shorter than "
                          f"budget_minutes ({cfg.budget_minutes})")
    if cfg.stage_fractions:
        if not cfg.budget_minutes:
            raise ConfigError("stage_fractions schedule the stages over budget_minutes: set budget_minutes > 0")
        used = [cfg.stage_fractions[min(i, len(cfg.stage_fractions) - 1)] for i in range(len(cfg.resolutions) - 1)]
        if any(f <= 0 for f in cfg.stage_fractions) or sum(used) >= 1:
            raise ConfigError(f"stage_fractions must be > 0 and leave part of the budget to the last stage "
                              f"(stages {cfg.resolutions} use {used}, sum {sum(used):.2f})")


# ---------------------------------------------------------------- building from JSON and overrides

def _convert(value, hint, key: str):
    """Check `value` (from JSON) against the type hint and convert lists to tuples."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    wrong = ConfigError(f"{key}: expected {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if hint in (bool, str):
        if not isinstance(value, hint):
            raise wrong
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise wrong
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise wrong
        return {str(k): _convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for a in args:
            try:
                return _convert(value, a, key)
            except ConfigError:
                continue
        raise wrong
    raise ConfigError(f"{key}: unsupported type {hint}")


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) if typing.get_origin(hint) is None else str(hint).replace("typing.", "")


def _fill(cls, values: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(prefix + k for k in unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        if name == "model" and cls is TrainConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"model: expected an object of architecture fields, got {value!r}")
            kwargs[name] = _fill(TwinGANConfig, value, "model.")
        else:
            kwargs[name] = _convert(value, hints[name], prefix + name)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"invalid {prefix.rstrip('.') or 'config'}: {err}") from None


def to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_path(name_or_path: str) -> Path:
    """A shipped config name (`cpu-small`) or a path to a JSON file."""
    p = Path(name_or_path)
    if p.suffix == ".json" or p.exists():
        return p
    return CONFIG_DIR / f"{name_or_path}.json"


def parse_override(text: str) -> tuple[list[str], object]:
    """`a.b=value` -> (["a", "b"], value); the value is JSON if it parses, else a plain string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. batch_size=16, model.resolution=32)")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip().split("."), value


def load_config(name_or_path: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Build the TrainConfig from a config file (or the defaults) plus `key=value` overrides."""
    values: dict = {}
    if name_or_path:
        path = config_path(name_or_path)
        if not path.is_file():
            shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
            raise ConfigError(f"config {name_or_path!r} not found (looked for {path}); shipped configs: {shipped}")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a JSON object")
        values.pop("_comment", None)
    for text in overrides:
        keys, value = parse_override(text)
        node = values
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {text!r}: {k} is not a group of settings")
        node[keys[-1]] = value
    return _fill(TrainConfig, values)


def train_config_from_dict(values: dict) -> TrainConfig:
    """Rebuild a TrainConfig from a resolved config (a run folder's `config.json`, a checkpoint's
    "config"), checked like a config file. Model architectures alone load through
    `twingan.checkpoint.config_from_dict`."""
    return _fill(TrainConfig, dict(values))

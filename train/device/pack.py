"""A data pack for a device call: both domains' images as WebP bytes in one .npz, with their labels.

`python -m train.device.pack [DATA_ROOT] [--config gpu-128] [--out pack/gpu-128.npz] [--max-mib MIB]`
`python -m train.device.pack --check pack/gpu-128.npz`

The device machine gets only the working tree (64 MiB in all, the pack included), so the pack has a
hard cap: by default what the tree that travels beside it leaves of that, less 1 MiB (`room_mib`). Raw uint8
at 128 px is 48 KiB an image (about 1000 images in 48 MiB), so each image is stored encoded (WebP,
~2-4 KiB at quality 80) in one uint8 array with offsets, and `load_pack` decodes it once, in threads,
straight into a device tensor. The config names the folders: the source and target folders must
fit; then the attribute-labelled source images (up to `source_attributes_limit`) and the tagged
target images are added, in a seeded random order, while they fit. The anime images' hair and eye
colours come from the tags CSV; the frozen tagger fills those the CSV lacks (and all of the
untagged folders') where its probability reaches `--threshold`. The output must be ignored by git
(`.git/info/exclude`): a pack is third-party data and is never committed.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from train.config import REPO_ROOT, ConfigError, TrainConfig, load_config
from train.data import DataError, DomainData, concat, fill_missing_tags, load_attributes, load_folder, load_tagged
from train.frozen_tagger import load_tagger, tagger_path
from train.tags_data import TagsDataError
from twingan.vocab import TagVocab

PACK_VERSION = 1
DOMAINS = ("source", "target")
DEFAULT_PACK = "pack/gpu-128.npz"
MIB = 1 << 20
SENT_MIB = 64  # what a device call takes: the working tree and the carried pack together


class PackError(DataError):
    """A pack that cannot be written or used; the message says why."""


def encode_images(images: torch.Tensor, quality: int, workers: int = 4) -> list[bytes]:
    """(N, 3, R, R) uint8 -> WebP bytes per image (lossy at `quality`, RGB)."""
    from PIL import Image

    def one(x: torch.Tensor) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(x.permute(1, 2, 0).numpy()).save(buf, "WEBP", quality=quality, method=6)
        return buf.getvalue()

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, images))


def decode_images(data: np.ndarray, offsets: np.ndarray, resolution: int, workers: int = 8) -> np.ndarray:
    """Encoded images (concatenated, split at `offsets`) -> (N, R, R, 3) uint8."""
    from PIL import Image

    n = len(offsets) - 1
    out = np.empty((n, resolution, resolution, 3), dtype=np.uint8)

    def one(i: int) -> None:
        with Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]].tobytes())) as im:
            a = np.asarray(im.convert("RGB"))
        if a.shape != out.shape[1:]:
            raise PackError(f"image {i} of the pack is {a.shape[1]}x{a.shape[0]}, the pack says {resolution} px")
        out[i] = a

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(one, range(n)))
    return out


# ---------------------------------------------------------------- building

def _select(data: DomainData, idx: torch.Tensor) -> DomainData:
    return DomainData(data.images[idx], data.tags[idx], data.hair[idx], data.eye[idx], data.binary_known[idx],
                      data.skipped)


def _parts(cfg: TrainConfig, workers: int) -> tuple[list, list]:
    """(required, optional) parts as (domain, name, DomainData), each decoded at the model resolution."""
    res, vocab = cfg.model.resolution, cfg.model.vocab
    required = [("source", d, load_folder(cfg.resolve(d), res, vocab, cfg.source_crop_top, 0, workers))
                for d in cfg.source_dirs]
    required += [("target", d, load_folder(cfg.resolve(d), res, vocab, 0.5, 0, workers)) for d in cfg.target_dirs]
    optional = []
    if cfg.source_attributes_images:
        optional.append(("source", cfg.source_attributes_images,
                         load_attributes(cfg.resolve(cfg.source_attributes_csv),
                                         cfg.resolve(cfg.source_attributes_images), res, vocab,
                                         cfg.source_crop_top, cfg.source_attributes_limit, workers)))
    if cfg.target_tags_csv:
        optional.append(("target", cfg.target_tags_images,
                         load_tagged(cfg.resolve(cfg.target_tags_csv), cfg.resolve(cfg.target_tags_images), res,
                                     vocab, "train", 0, workers)))
    return required, optional


def _label_bytes(n: int, vocab: TagVocab) -> int:
    # tags float16, hair/eye int8, binary_known/filled bool, origin uint8, offsets int64
    return n * (2 * vocab.dim + 1 + 1 + 1 + 1 + 1) + 8 * (n + 1)


def _encode_within_cap(required: list, optional: list, cap: int, max_mib: float, quality: int, workers: int,
                       vocab: TagVocab) -> list[tuple[str, str, DomainData, list[bytes]]]:
    """Every required part encoded, then as much of each optional part as the cap leaves room for:
    (domain, name, DomainData, WebP bytes per image). Raises PackError if the required parts exceed it."""
    overhead = 64 << 10  # zip and .npy headers, meta
    chosen: list[tuple[str, str, DomainData, list[bytes]]] = []
    total = overhead
    for domain, name, data in required:
        enc = encode_images(data.images, quality, workers)
        total += sum(map(len, enc)) + _label_bytes(len(enc), vocab)
        chosen.append((domain, name, data, enc))
        print(f"{domain}: {name}: {len(enc)} images, {sum(map(len, enc)) / MIB:.1f} MiB", flush=True)
    if total > cap:
        raise PackError(f"the required folders alone take {total / MIB:.1f} MiB, over the {max_mib} MiB cap: "
                        f"lower --quality (now {quality}) or raise --max-mib")
    for domain, name, data in optional:
        # Where not all fit, a seeded random subset: file order need not be random.
        data = _select(data, torch.randperm(len(data), generator=torch.Generator().manual_seed(0)))
        enc: list[bytes] = []
        chunk = 256
        for start in range(0, len(data), chunk):
            more = encode_images(data.images[start:start + chunk], quality, workers)
            for b in more:
                if total + len(b) + _label_bytes(1, vocab) > cap:
                    break
                total += len(b) + _label_bytes(1, vocab)
                enc.append(b)
            if len(enc) < start + len(more):
                break
        chosen.append((domain, name, _select(data, torch.arange(len(enc))), enc))
        print(f"{domain}: {name}: {len(enc)} of {len(data)} images fit, {sum(map(len, enc)) / MIB:.1f} MiB",
              flush=True)
    return chosen


def _fill_colours(data: DomainData, path: Path, threshold: float, vocab: TagVocab, hair0: torch.Tensor,
                  eye0: torch.Tensor) -> dict:
    """Fill `data`'s unknown colours with the frozen tagger at `path` (in place); returns the pack's
    record of the fill (hair0 / eye0: the labels before it)."""
    model = load_tagger(path, torch.device("cpu"))
    if model is None:
        raise PackError(f"no tagger checkpoint at {path} to fill the missing anime colours "
                        f"(or pass --threshold 0)")
    if model.vocab != vocab:
        raise PackError(f"the tagger at {path} has another tag vocabulary than the config")
    fill_missing_tags(data, model, threshold)
    return {"hair": int(((hair0 < 0) & (data.hair >= 0)).sum()),
            "eye": int(((eye0 < 0) & (data.eye >= 0)).sum()),
            "tagger": str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path),
            "threshold": threshold}


def _domain_arrays(domain: str, data: DomainData, enc: list[bytes], origin: np.ndarray, hair0: torch.Tensor,
                   eye0: torch.Tensor) -> dict[str, np.ndarray]:
    """One domain's arrays of the pack: the encoded images with their offsets, then the labels
    (`filled`: a colour the tagger gave, where hair0 / eye0, the labels before the fill, had none)."""
    lengths = np.array([len(b) for b in enc], dtype=np.int64)
    return {f"{domain}_data": np.frombuffer(b"".join(enc), dtype=np.uint8),
            f"{domain}_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            f"{domain}_tags": data.tags.numpy().astype(np.float16),
            f"{domain}_hair": data.hair.numpy().astype(np.int8),
            f"{domain}_eye": data.eye.numpy().astype(np.int8),
            f"{domain}_binary_known": data.binary_known.numpy(),
            f"{domain}_filled": (((hair0 < 0) & (data.hair >= 0)) | ((eye0 < 0) & (data.eye >= 0))).numpy(),
            f"{domain}_origin": origin}


def _save_npz(arrays: dict[str, np.ndarray], out: Path, cap: int, max_mib: float) -> int:
    """Write `arrays` to `out` if they fit the cap (through a temporary file); returns the file's bytes."""
    payload = sum(a.nbytes for a in arrays.values())
    if payload + (8 << 10) > cap:
        raise PackError(f"the pack would take {payload / MIB:.1f} MiB, over the {max_mib} MiB cap; nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    size = tmp.stat().st_size
    if size > cap:
        tmp.unlink()
        raise PackError(f"the written pack is {size / MIB:.2f} MiB, over the {max_mib} MiB cap; removed")
    tmp.replace(out)
    return size


def build_pack(cfg: TrainConfig, out: Path, max_mib: float = 48.0, quality: int = 80, threshold: float = 0.7,
               tagger: str | None = None, workers: int = 4) -> dict:
    """Write the pack for `cfg` to `out`; returns its meta. Raises PackError if the required part exceeds the cap."""
    cap = int(max_mib * MIB)
    vocab = cfg.model.vocab
    required, optional = _parts(cfg, workers)
    chosen = _encode_within_cap(required, optional, cap, max_mib, quality, workers, vocab)
    arrays: dict[str, np.ndarray] = {}
    meta = {"version": PACK_VERSION, "format": "webp", "quality": quality, "resolution": cfg.model.resolution,
            "vocab": {"hair": list(vocab.hair), "eye": list(vocab.eye), "binary": list(vocab.binary)},
            "parts": {}, "filled": {}}
    for domain in DOMAINS:
        parts = [(name, data, enc) for d, name, data, enc in chosen if d == domain]
        if not parts:
            raise PackError(f"no {domain} images: the config names no {domain} folder")
        data = concat([p[1] for p in parts])
        enc = [b for p in parts for b in p[2]]
        origin = np.concatenate([np.full(len(p[2]), i, dtype=np.uint8) for i, p in enumerate(parts)])
        hair0, eye0 = data.hair.clone(), data.eye.clone()
        if domain == "target" and threshold > 0:
            meta["filled"] = _fill_colours(data, tagger_path(tagger or cfg.tagger), threshold, vocab, hair0, eye0)
        arrays.update(_domain_arrays(domain, data, enc, origin, hair0, eye0))
        meta["parts"][domain] = [{"name": name, "images": len(enc_), "mib": round(sum(map(len, enc_)) / MIB, 2),
                                  "skipped": d.skipped} for name, d, enc_ in parts]
    arrays["meta"] = np.array(json.dumps(meta))
    meta["file_mib"] = round(_save_npz(arrays, out, cap, max_mib) / MIB, 2)
    return meta


def travelling_bytes(root: Path = REPO_ROOT) -> int:
    """Bytes of the files a device call sends besides the pack: tracked files and untracked ones git does not ignore."""
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                capture_output=True, check=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError):
        raise PackError(f"cannot list the working tree at {root} (no git, or not a checkout): pass --max-mib") from None
    paths = (root / name for name in listed.decode().split("\0") if name)
    return sum(p.stat().st_size for p in paths if p.is_file())


def room_mib(root: Path = REPO_ROOT, margin_mib: float = 1.0) -> float:
    """The largest pack that still fits the device call beside the working tree (the default --max-mib)."""
    return round(SENT_MIB - travelling_bytes(root) / MIB - margin_mib, 1)


def check_ignored(path: Path) -> None:
    """Refuse a pack path inside the repository that git does not ignore: a pack is never committed."""
    path = path.resolve()
    if not path.is_relative_to(REPO_ROOT):
        return
    try:
        result = subprocess.run(["git", "-C", str(REPO_ROOT), "check-ignore", "-q", str(path)],
                                capture_output=True)
        exclude = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--git-path", "info/exclude"],
                                 capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:
        return  # no git: nothing to commit it to
    if result.returncode == 1:
        folder = path.parent.relative_to(REPO_ROOT)
        raise PackError(f"{path} is not ignored by git and a pack must never be committed: "
                        f"run  echo /{folder}/ >> {exclude}  first")


# ---------------------------------------------------------------- loading

def read_pack(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a pack file; raises PackError for a missing or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise PackError(f"pack not found: {path} (make one with `python -m train.device.pack`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise PackError(f"{path} is not a readable pack: {err}") from None
    if "meta" not in arrays:
        raise PackError(f"{path} is not a pack (no meta)")
    meta = json.loads(str(arrays.pop("meta")))
    if meta.get("version") != PACK_VERSION:
        raise PackError(f"{path} is pack version {meta.get('version')}, this code reads {PACK_VERSION}")
    return meta, arrays


def load_pack(path: str | os.PathLike, vocab: TagVocab, resolution: int, device: str | torch.device = "cpu",
              workers: int = 0) -> tuple[DomainData, DomainData]:
    """(source, target) from a pack, images decoded once and put on `device` at `resolution`."""
    meta, arrays = read_pack(path)
    v = meta["vocab"]
    if (tuple(v["hair"]), tuple(v["eye"]), tuple(v["binary"])) != (vocab.hair, vocab.eye, vocab.binary):
        raise PackError(f"{path} was made with another tag vocabulary than the model's")
    size = meta["resolution"]
    if resolution > size or size % resolution:
        raise PackError(f"{path} holds {size} px images; the model's {resolution} px must divide that")
    workers = workers or min(16, os.cpu_count() or 1)
    device = torch.device(device)
    out = []
    for domain in DOMAINS:
        images = decode_images(arrays[f"{domain}_data"], arrays[f"{domain}_offsets"], size, workers)
        x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2)  # (N, 3, R, R) uint8
        if resolution != size:  # area-downsample in chunks, as batch_images does per stage
            x = torch.cat([F.adaptive_avg_pool2d(c.float(), resolution).round().to(torch.uint8)
                           for c in x.split(1024)])
        out.append(DomainData(x.contiguous(), torch.from_numpy(arrays[f"{domain}_tags"].astype(np.float32)),
                              torch.from_numpy(arrays[f"{domain}_hair"].astype(np.int64)),
                              torch.from_numpy(arrays[f"{domain}_eye"].astype(np.int64)),
                              torch.from_numpy(arrays[f"{domain}_binary_known"]), 0))
    return out[0], out[1]


def describe_pack(path: str | os.PathLike) -> str:
    """Counts, sizes and label coverage of a pack, after decoding a few images of each domain."""
    from PIL import features

    if not features.check("webp"):
        raise PackError("this Pillow has no WebP support: the pack cannot be decoded here")
    meta, arrays = read_pack(path)
    lines = [f"{path}: {Path(path).stat().st_size / MIB:.1f} MiB, {meta['resolution']} px {meta['format']} "
             f"q{meta['quality']}"]
    for domain in DOMAINS:
        offsets = arrays[f"{domain}_offsets"]
        n = len(offsets) - 1
        decode_images(arrays[f"{domain}_data"], offsets[:min(n, 32) + 1], meta["resolution"])
        hair, eye = arrays[f"{domain}_hair"], arrays[f"{domain}_eye"]
        parts = ", ".join(f"{p['name']} {p['images']}" for p in meta["parts"][domain])
        lines.append(f"{domain}: {n} images ({parts}), {offsets[-1] / MIB:.1f} MiB; hair known {(hair >= 0).sum()}, "
                     f"eye known {(eye >= 0).sum()}, tagger-filled {arrays[f'{domain}_filled'].sum()}")
    if meta.get("filled"):
        lines.append(f"tagger fill: {meta['filled']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.device.pack", description=__doc__.splitlines()[0])
    p.add_argument("data_root", nargs="?", default=None, help="data folder (default: $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--config", default="gpu-128", help="training config naming the folders and the resolution")
    p.add_argument("--out", default=DEFAULT_PACK, help="pack file (relative to the repo root unless absolute)")
    p.add_argument("--max-mib", type=float, default=None,
                   help=f"refuse to write a larger pack (default: the {SENT_MIB} MiB a device call takes, less the "
                        "working tree that travels with it and 1 MiB)")
    p.add_argument("--quality", type=int, default=80, help="WebP quality 1-100")
    p.add_argument("--threshold", type=float, default=0.7, help="tagger probability that fills a colour (0 = no fill)")
    p.add_argument("--tagger", default=None, help="tagger checkpoint (default: the config's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--check", metavar="PACK", default=None,
                   help="only describe an existing pack and decode a few images")
    p.add_argument("overrides", nargs="*", default=[], help="config overrides key=value (after --)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.check:
            print(describe_pack(args.check))
            return 0
        if not 1 <= args.quality <= 100:
            raise PackError(f"--quality must be in 1..100, got {args.quality}")
        overrides = list(args.overrides) + ([f"data_root={args.data_root}"] if args.data_root else [])
        cfg = load_config(args.config, overrides)
        out = Path(args.out)
        out = out if out.is_absolute() else REPO_ROOT / out
        check_ignored(out)
        if args.max_mib is None:
            args.max_mib = room_mib()
            print(f"cap {args.max_mib} MiB: what the working tree leaves of the {SENT_MIB} MiB a device call takes")
        meta = build_pack(cfg, out, args.max_mib, args.quality, args.threshold, args.tagger, args.workers)
    except (ConfigError, DataError, TagsDataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {meta['file_mib']} MiB (cap {args.max_mib} MiB)")
    print(describe_pack(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Training data: two domains of images held in memory as uint8, with tags for the target side.

Images are decoded once (in threads) at the model's full resolution; lower progressive stages
average-pool them. On a CPU, decoding JPEGs every epoch would cost more than the small GAN steps.
Unreadable images are skipped and counted, never dropped silently.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from twingan.faces import IMAGE_SUFFIXES
from twingan.vocab import TagVocab

log = logging.getLogger(__name__)


class DataError(ValueError):
    """A data folder or file that cannot be used; the message says which and why."""


@dataclass
class DomainData:
    """One domain's images and (possibly unknown) tags, all in memory."""

    images: torch.Tensor  # (N, 3, R, R) uint8
    tags: torch.Tensor  # (N, TAG_DIM) float; unknown groups are zero
    hair: torch.Tensor  # (N,) long, vocab hair index or -1 when unknown
    eye: torch.Tensor  # (N,) long, -1 when unknown
    binary_known: torch.Tensor  # (N,) bool: binary tags are labels (tagged CSV rows), not zeros
    skipped: int = 0  # unreadable images skipped while loading

    def __len__(self) -> int:
        return self.images.shape[0]


def list_images(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"image folder not found: {folder}")
    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def square_box(width: int, height: int, crop_top: float) -> tuple[int, int, int, int]:
    """The largest square in a (width, height) image: centred across, `crop_top` of the slack from the top."""
    s = min(width, height)
    left = (width - s) // 2
    top = round((height - s) * crop_top) if height > width else 0
    return left, top, left + s, top + s


def _decode(path: Path, resolution: int, crop_top: float):
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (resolution, resolution))
            im = im.convert("RGB")
            im = im.crop(square_box(*im.size, crop_top)).resize((resolution, resolution), Image.BICUBIC)
            return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(
                resolution, resolution, 3).permute(2, 0, 1).clone()
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises these for truncated or non-image files
        return f"{path.name}: {type(err).__name__}: {err}"


def decode_images(folder: Path, files: list[str], resolution: int, crop_top: float = 0.5,
                  workers: int = 4) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode `files` to (N, 3, R, R) uint8; returns (images, kept indices, skip messages)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(lambda f: _decode(folder / f, resolution, crop_top), files))
    kept = [i for i, r in enumerate(results) if isinstance(r, torch.Tensor)]
    skipped = [r for r in results if isinstance(r, str)]
    if skipped:
        log.warning("skipped %d unreadable image(s) in %s, e.g. %s", len(skipped), folder, skipped[0])
    if not kept:
        raise DataError(f"none of the {len(files)} images in {folder} could be read; first error: {skipped[0]}")
    return torch.stack([results[i] for i in kept]), kept, skipped


def _untagged(images: torch.Tensor, vocab: TagVocab, skipped: int) -> DomainData:
    n = images.shape[0]
    return DomainData(images, torch.zeros(n, vocab.dim), torch.full((n,), -1), torch.full((n,), -1),
                      torch.zeros(n, dtype=torch.bool), skipped)


def concat(parts: list[DomainData]) -> DomainData:
    return DomainData(*(torch.cat([getattr(p, k) for p in parts]) for k in
                        ("images", "tags", "hair", "eye", "binary_known")), sum(p.skipped for p in parts))


def load_folder(folder: Path, resolution: int, vocab: TagVocab, crop_top: float, limit: int = 0,
                workers: int = 4) -> DomainData:
    files = list_images(folder)
    files = files[:limit] if limit else files
    images, _, skipped = decode_images(folder, files, resolution, crop_top, workers)
    return _untagged(images, vocab, len(skipped))


def load_tagged(csv_path: Path, image_dir: Path, resolution: int, vocab: TagVocab, split: str = "train",
                limit: int = 0, workers: int = 4) -> DomainData:
    """Images listed in a tags CSV (anime_tags format) with their tag vectors."""
    from train.tags_data import read_tags_csv

    rows = read_tags_csv(csv_path, vocab, split)
    files = sorted(rows)
    files = files[:limit] if limit else files
    if not image_dir.is_dir():
        raise DataError(f"image folder not found: {image_dir} (named by {csv_path})")
    images, kept, skipped = decode_images(image_dir, files, resolution, 0.5, workers)
    files = [files[i] for i in kept]
    tags = torch.tensor([rows[f].vector for f in files], dtype=torch.float32)
    hair_known = torch.tensor([rows[f].hair_known for f in files])
    eye_known = torch.tensor([rows[f].eye_known for f in files])
    hair = torch.where(hair_known, tags[:, vocab.hair_slice].argmax(1), -1)
    eye = torch.where(eye_known, tags[:, vocab.eye_slice].argmax(1), -1)
    return DomainData(images, tags, hair, eye, torch.ones(len(files), dtype=torch.bool), len(skipped))


def load_attributes(csv_path: Path, image_dir: Path, resolution: int, vocab: TagVocab, crop_top: float,
                    limit: int = 0, workers: int = 4) -> DomainData:
    """CelebA-style faces (train split) with a hair colour where exactly one hair attribute is set."""
    from train.tags_data import HUMAN_HAIR_CLASSES, celeba_split, read_celeba_hair

    labels = read_celeba_hair(csv_path)
    files = [f for f in list_images(image_dir) if celeba_split(f) == "train"]
    files = files[:limit] if limit else files
    images, kept, skipped = decode_images(image_dir, files, resolution, crop_top, workers)
    data = _untagged(images, vocab, len(skipped))
    for j, i in enumerate(kept):
        if files[i] in labels:
            h = vocab.hair_index(HUMAN_HAIR_CLASSES[labels[files[i]]])
            data.hair[j] = h
            data.tags[j, vocab.hair_slice.start + h] = 1.0
    return data


def load_domains(cfg, workers: int = 4, device: str | torch.device = "cpu") -> tuple[DomainData, DomainData]:
    """(source, target) data for a TrainConfig.

    With `cfg.pack` the images come from the pack, decoded once straight onto `device` (a GPU then
    does no per-step host-to-device copy of images); otherwise from the folders, held on the CPU.
    """
    res, vocab, lim = cfg.model.resolution, cfg.model.vocab, cfg.limit_per_folder
    if cfg.pack:
        from train.config import REPO_ROOT
        from train.pack import load_pack

        path = Path(cfg.pack) if Path(cfg.pack).is_absolute() else REPO_ROOT / cfg.pack
        return load_pack(path, vocab, res, device)
    source = [load_folder(cfg.resolve(d), res, vocab, cfg.source_crop_top, lim, workers) for d in cfg.source_dirs]
    if cfg.source_attributes_images:
        source.append(load_attributes(cfg.resolve(cfg.source_attributes_csv), cfg.resolve(cfg.source_attributes_images),
                                      res, vocab, cfg.source_crop_top, cfg.source_attributes_limit or lim, workers))
    target = [load_folder(cfg.resolve(d), res, vocab, 0.5, lim, workers) for d in cfg.target_dirs]
    if cfg.target_tags_csv:
        target.append(load_tagged(cfg.resolve(cfg.target_tags_csv), cfg.resolve(cfg.target_tags_images),
                                  res, vocab, "train", lim, workers))
    return concat(source), concat(target)


class EpochSampler:
    """Shuffled global batches, epoch after epoch (each rank then takes its shard, `[rank::world]`).

    Like DistributedSampler, every rank computes the same permutation and no sample is seen twice in
    an epoch. The permutation of epoch e is a pure function of (seed, e), so the state is just
    (epoch, position): exact resume needs no iterator pickling.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self.epoch, self.position = 0, 0  # position counts global samples consumed in this epoch

    def _perm(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.n, generator=g)

    def next(self, global_batch: int) -> torch.Tensor:
        """Indices (global_batch,) of the next global batch (drops an epoch's ragged tail)."""
        if global_batch > self.n:
            perm = torch.cat([self._perm() for _ in range(-(-global_batch // self.n))])
        else:
            if self.position + global_batch > self.n:
                self.epoch, self.position = self.epoch + 1, 0
            perm = self._perm()[self.position:self.position + global_batch]
            self.position += global_batch
        return perm[:global_batch]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])


def batch_images(data: DomainData, idx: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 images at idx -> float (B, 3, r, r) in [0, 1], area-downsampled to the stage's resolution."""
    x = data.images[idx].float() / 255
    if x.shape[-1] != resolution:
        x = F.adaptive_avg_pool2d(x, resolution)
    return x


@torch.no_grad()
def fill_missing_tags(data: DomainData, tagger, threshold: float, batch: int = 256) -> int:
    """Give images with an unknown hair/eye colour the tagger's colour where its probability >= threshold.

    Changes `data` in place (binary tags stay unknown); returns how many colours were filled.
    """
    vocab = tagger.vocab
    device = next(tagger.parameters()).device
    todo = torch.nonzero((data.hair < 0) | (data.eye < 0)).flatten()
    filled = 0
    for start in range(0, len(todo), batch):
        idx = todo[start:start + batch]
        probs = tagger.tag_probs(data.images[idx.to(data.images.device)].to(device).float() / 255).cpu()  # (B, TAG_DIM)
        for group, sl, labels in (("hair", vocab.hair_slice, data.hair), ("eye", vocab.eye_slice, data.eye)):
            p, c = probs[:, sl].max(1)
            fill = (labels[idx] < 0) & (p >= threshold)
            rows = idx[fill]
            labels[rows] = c[fill]
            data.tags[rows, sl] = 0.0
            data.tags[rows, sl.start + c[fill]] = 1.0
            filled += int(fill.sum())
    return filled

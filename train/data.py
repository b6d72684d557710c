"""Training data: two domains of images held in memory as uint8, with tags for the target side.

Images are decoded once (in threads) at the model's full resolution; lower progressive stages
average-pool them. On a CPU, decoding JPEGs every epoch would cost more than the small GAN steps.
Each domain's images are decoded straight into one preallocated uint8 tensor, so they exist once
in memory (paper-256: ~6.8 GB), never as a list plus a stacked copy. Unreadable images are
skipped and counted, never dropped silently (`train.decode`). The tagger training
(`train/tags_data.py`) decodes through the same `decode_images`, so the tagger sees images resized
as the GAN's are. Which source a run's domains come from (these folders or a pack) is
`train.domains.load_domains`'s choice: this module knows nothing of packs or of the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from train.decode import DataError, decode_images, list_images
from train.tags_data import HUMAN_HAIR_CLASSES, celeba_split, read_celeba_hair, read_tags_csv, tag_tensors
from twingan.vocab import TagVocab


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


# ---------------------------------------------------------------- the two domains

@dataclass
class _Listing:
    """Image files of one folder that a domain will hold, with one label row per file."""

    folder: Path
    files: list[str]
    crop_top: float
    tags: torch.Tensor  # (n, TAG_DIM)
    hair: torch.Tensor  # (n,)
    eye: torch.Tensor  # (n,)
    binary_known: torch.Tensor  # (n,) bool


def _unlabelled(folder: Path, files: list[str], crop_top: float, vocab: TagVocab) -> _Listing:
    n = len(files)
    return _Listing(folder, files, crop_top, torch.zeros(n, vocab.dim), torch.full((n,), -1), torch.full((n,), -1),
                    torch.zeros(n, dtype=torch.bool))


def _list_folder(folder: Path, vocab: TagVocab, crop_top: float, limit: int = 0) -> _Listing:
    files = list_images(folder)
    return _unlabelled(folder, files[:limit] if limit else files, crop_top, vocab)


def _list_tagged(csv_path: Path, image_dir: Path, vocab: TagVocab, split: str, limit: int = 0) -> _Listing:
    rows = read_tags_csv(csv_path, vocab, split)
    files = sorted(rows)
    files = files[:limit] if limit else files
    if not image_dir.is_dir():
        raise DataError(f"image folder not found: {image_dir} (named by {csv_path})")
    tags, hair, eye = tag_tensors(rows, files, vocab)
    return _Listing(image_dir, files, 0.5, tags, hair, eye, torch.ones(len(files), dtype=torch.bool))


def _list_attributes(csv_path: Path, image_dir: Path, vocab: TagVocab, crop_top: float, limit: int = 0) -> _Listing:
    labels = read_celeba_hair(csv_path)
    files = [f for f in list_images(image_dir) if celeba_split(f) == "train"]
    listing = _unlabelled(image_dir, files[:limit] if limit else files, crop_top, vocab)
    for j, f in enumerate(listing.files):
        if f in labels:
            h = vocab.hair_index(HUMAN_HAIR_CLASSES[labels[f]])
            listing.hair[j] = h
            listing.tags[j, vocab.hair_slice.start + h] = 1.0
    return listing


def _load(listings: list[_Listing], resolution: int, workers: int) -> DomainData:
    """Decode every listing into one uint8 tensor (the domain's only copy) and keep the labels of kept files."""
    images = torch.empty(sum(len(x.files) for x in listings), 3, resolution, resolution, dtype=torch.uint8)
    start, kept_rows, skipped = 0, [], 0
    for x in listings:
        _, kept, errors = decode_images(x.folder, x.files, resolution, x.crop_top, workers,
                                        out=images[start:start + len(x.files)])
        start += len(kept)  # the next folder overwrites the rows its skipped files left
        kept_rows.append(torch.tensor(kept, dtype=torch.long))
        skipped += len(errors)

    def labels(field: str) -> torch.Tensor:
        return torch.cat([getattr(x, field)[k] for x, k in zip(listings, kept_rows)])

    return DomainData(images[:start], labels("tags"), labels("hair"), labels("eye"), labels("binary_known"), skipped)


def concat(parts: list[DomainData]) -> DomainData:
    """Several DomainData as one (a copy: load_folders avoids it by decoding into one tensor)."""
    return DomainData(*(torch.cat([getattr(p, k) for p in parts]) for k in
                        ("images", "tags", "hair", "eye", "binary_known")), sum(p.skipped for p in parts))


def load_folder(folder: Path, resolution: int, vocab: TagVocab, crop_top: float, limit: int = 0,
                workers: int = 4) -> DomainData:
    """The images of one folder, untagged."""
    return _load([_list_folder(folder, vocab, crop_top, limit)], resolution, workers)


def load_tagged(csv_path: Path, image_dir: Path, resolution: int, vocab: TagVocab, split: str = "train",
                limit: int = 0, workers: int = 4) -> DomainData:
    """Images listed in a tags CSV (anime_tags format) with their tag vectors."""
    return _load([_list_tagged(csv_path, image_dir, vocab, split, limit)], resolution, workers)


def load_attributes(csv_path: Path, image_dir: Path, resolution: int, vocab: TagVocab, crop_top: float,
                    limit: int = 0, workers: int = 4) -> DomainData:
    """CelebA-style faces (train split) with a hair colour where exactly one hair attribute is set."""
    return _load([_list_attributes(csv_path, image_dir, vocab, crop_top, limit)], resolution, workers)


def load_folders(cfg, workers: int = 4) -> tuple[DomainData, DomainData]:
    """(source, target) from the folders a TrainConfig names, held on the CPU; each domain's images
    are one uint8 tensor (its folders decoded straight into it)."""
    vocab, lim = cfg.model.vocab, cfg.limit_per_folder
    source = [_list_folder(cfg.resolve(d), vocab, cfg.source_crop_top, lim) for d in cfg.source_dirs]
    if cfg.source_attributes_images:
        source.append(_list_attributes(cfg.resolve(cfg.source_attributes_csv),
                                       cfg.resolve(cfg.source_attributes_images), vocab, cfg.source_crop_top,
                                       cfg.source_attributes_limit or lim))
    target = [_list_folder(cfg.resolve(d), vocab, 0.5, lim) for d in cfg.target_dirs]
    if cfg.target_tags_csv:
        target.append(_list_tagged(cfg.resolve(cfg.target_tags_csv), cfg.resolve(cfg.target_tags_images),
                                   vocab, "train", lim))
    res = cfg.model.resolution
    return _load(source, res, workers), _load(target, res, workers)


def balance_repeats(labels: torch.Tensor, power: float) -> torch.Tensor:
    """How often each item appears in a class-balanced epoch: (most common class's count / its class's
    count) ** power, rounded, at least 1. labels (n,) class indices, -1 (unknown) appears once.

    power 0 leaves the epoch as it is; 1 gives every class as many appearances as the most common one;
    0.5 (the square root) raises a class 250x rarer than the commonest about 16x.
    """
    known = labels >= 0
    repeats = torch.ones(len(labels), dtype=torch.long)
    if power == 0 or not bool(known.any()):
        return repeats
    counts = torch.bincount(labels[known]).float()
    ratio = counts.max() / counts.clamp(min=1)
    repeats[known] = ratio[labels[known]].pow(power).round().long().clamp(min=1)
    return repeats


class EpochSampler:
    """Shuffled global batches, epoch after epoch (each rank then takes its shard, `[rank::world]`).

    Like DistributedSampler, every rank computes the same permutation and no sample is seen twice in
    an epoch. The permutation of epoch e is a pure function of (seed, e), so the state is just
    (epoch, position): exact resume needs no iterator pickling.
    """

    def __init__(self, n: int, seed: int, repeats: torch.Tensor | None = None):
        # repeats (n,): how often each item appears in an epoch (see `balance_repeats`); None = once each
        self.repeats = repeats
        self.items = None if repeats is None else torch.repeat_interleave(torch.arange(n), repeats)
        self.n = n if self.items is None else len(self.items)
        self.seed = seed
        self.epoch, self.position = 0, 0  # position counts global samples consumed in this epoch

    def _perm(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm if self.items is None else self.items[perm]

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
        for sl, labels in ((vocab.hair_slice, data.hair), (vocab.eye_slice, data.eye)):
            p, c = probs[:, sl].max(1)
            fill = (labels[idx] < 0) & (p >= threshold)
            rows = idx[fill]
            labels[rows] = c[fill]
            data.tags[rows, sl] = 0.0
            data.tags[rows, sl.start + c[fill]] = 1.0
            filled += int(fill.sum())
    return filled

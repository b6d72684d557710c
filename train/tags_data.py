"""Read the tagged anime faces (`anime_tags/tags.csv`) and the CelebA hair colours into tensors.

Shared by the tagger training and the GAN training. Images are decoded once, by the GAN's own
`train.decode.decode_images` (same crop, same resize), into a uint8 tensor in memory (20k faces at
64 px are ~250 MB), because decoding JPEGs every epoch would dominate a CPU run. Unreadable images
are skipped, counted and reported, never silently dropped.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import Dataset

from train.decode import DataError, decode_images
from twingan.vocab import DEFAULT_VOCAB, TagVocab

TAG_COLUMNS = ("file", "split", "hair_color", "eye_color")
# CelebA attribute -> anime vocabulary hair colour (grey hair is drawn as silver in anime).
CELEBA_HAIR = {"Black_Hair": "black", "Blond_Hair": "blonde", "Brown_Hair": "brown", "Gray_Hair": "silver"}
HUMAN_HAIR_CLASSES = ("black", "blonde", "brown", "silver")


# A tags CSV, attribute CSV or image folder that cannot be used: one error type for all training
# data (the image decoding raises it too); the old name stays importable.
TagsDataError = DataError


class TagRow(NamedTuple):
    """One image's tags. Unpacks as (tag_vector, hair_known, eye_known)."""

    vector: list[float]   # (TAG_DIM,) in the vocab layout; an unknown colour group stays all zero
    hair_known: bool      # False where the CSV's hair_color is empty (the source tagger was unsure)
    eye_known: bool
    split: str = ""


def read_tags_csv(path: str | os.PathLike, vocab: TagVocab = DEFAULT_VOCAB,
                  split: str | None = None) -> dict[str, TagRow]:
    """Map image file name -> TagRow from a tags CSV; `split` keeps only "train" or "test" rows.

    Raises TagsDataError for a missing file, missing columns, unknown colour names or
    non-numeric binary tags, naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise TagsDataError(f"tags CSV not found: {path} (expected a file with columns "
                            f"{', '.join(TAG_COLUMNS + vocab.binary)})")
    rows: dict[str, TagRow] = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in TAG_COLUMNS + vocab.binary if c not in (reader.fieldnames or ())]
        if missing:
            raise TagsDataError(f"{path} lacks the column(s) {', '.join(missing)}")
        for line, rec in enumerate(reader, start=2):
            if split is not None and rec["split"] != split:
                continue
            hair, eye = rec["hair_color"].strip(), rec["eye_color"].strip()
            if hair and hair not in vocab.hair:
                raise TagsDataError(f"{path}:{line}: unknown hair colour {hair!r}; "
                                    f"choose one of: {', '.join(vocab.hair)}")
            if eye and eye not in vocab.eye:
                raise TagsDataError(f"{path}:{line}: unknown eye colour {eye!r}; "
                                    f"choose one of: {', '.join(vocab.eye)}")
            try:
                binary = {name: float(rec[name] or 0) for name in vocab.binary}
            except ValueError as err:
                raise TagsDataError(f"{path}:{line}: binary tags must be numbers ({err})") from None
            rows[rec["file"]] = TagRow(vocab.encode(hair or None, eye or None, binary),
                                       bool(hair), bool(eye), rec["split"])
    if not rows:
        raise TagsDataError(f"{path} has no rows" + (f" with split={split!r}" if split else ""))
    return rows


def tag_tensors(rows: dict[str, TagRow], files: Sequence[str],
                vocab: TagVocab = DEFAULT_VOCAB) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows of `files` as tensors: tags (N, TAG_DIM) float, hair (N,) and eye (N,) vocab
    indices, -1 where the CSV left the colour empty."""
    tags = torch.tensor([rows[f].vector for f in files], dtype=torch.float32).view(len(files), vocab.dim)
    hair_known = torch.tensor([rows[f].hair_known for f in files], dtype=torch.bool)
    eye_known = torch.tensor([rows[f].eye_known for f in files], dtype=torch.bool)
    hair = torch.where(hair_known, tags[:, vocab.hair_slice].argmax(1), -1)
    eye = torch.where(eye_known, tags[:, vocab.eye_slice].argmax(1), -1)
    return tags, hair, eye


def eye_given_hair(hair: torch.Tensor, eye: torch.Tensor, vocab: TagVocab = DEFAULT_VOCAB) -> tuple[tuple[int, ...], ...]:
    """How many images have each (hair, eye) colour pair, from their vocab indices (N,) (-1 where
    unknown; those images are left out): rows are hair colours, columns eye colours
    (`TwinGANConfig.eye_given_hair`). Empty when no image has both colours known."""
    known = (hair >= 0) & (eye >= 0)
    if not bool(known.any()):
        return ()
    pairs = hair[known].long() * len(vocab.eye) + eye[known].long()
    counts = torch.bincount(pairs, minlength=len(vocab.hair) * len(vocab.eye)).view(len(vocab.hair), len(vocab.eye))
    return tuple(tuple(row) for row in counts.tolist())


class AnimeTagsDataset(Dataset):
    """Tagged anime faces of one split, held in memory as uint8 at `resolution`.

    Items are dicts: image float (3, R, R) in [0, 1], tags (TAG_DIM,), hair / eye class index
    (-1 where unknown), hair_known / eye_known bools. Augmentation is applied per batch by the
    trainer (`augment`), so items are deterministic.
    """

    def __init__(self, root: str | os.PathLike, split: str | None = "train", resolution: int = 64,
                 vocab: TagVocab = DEFAULT_VOCAB, csv_name: str = "tags.csv", image_dir: str = "images",
                 limit: int | None = None, progress: bool = False):
        root = Path(root)
        rows = read_tags_csv(root / csv_name, vocab, split)
        files = sorted(rows)[:limit] if limit else sorted(rows)
        self.images, kept, self.skipped = decode_images(root / image_dir, files, resolution, progress=progress)
        self.files = [files[i] for i in kept]
        self.vocab = vocab
        self.tags, self.hair, self.eye = tag_tensors(rows, self.files, vocab)  # (N, TAG_DIM), (N,), (N,)
        self.hair_known, self.eye_known = self.hair >= 0, self.eye >= 0

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i].float() / 255, "tags": self.tags[i], "hair": self.hair[i],
                "eye": self.eye[i], "hair_known": self.hair_known[i], "eye_known": self.eye_known[i]}


def read_celeba_hair(path: str | os.PathLike) -> dict[str, int]:
    """Map CelebA file -> index into HUMAN_HAIR_CLASSES, for images with exactly one hair attribute."""
    path = Path(path)
    if not path.is_file():
        raise TagsDataError(f"CelebA attribute CSV not found: {path}")
    out = {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("file", *CELEBA_HAIR) if c not in (reader.fieldnames or ())]
        if missing:
            raise TagsDataError(f"{path} lacks the column(s) {', '.join(missing)}")
        for line, rec in enumerate(reader, start=2):
            try:
                on = [name for name in CELEBA_HAIR if int(rec[name]) == 1]
            except ValueError as err:
                raise TagsDataError(f"{path}:{line}: attributes must be 0/1 ({err})") from None
            if len(on) == 1:  # none or several hair attributes: ambiguous, skipped
                out[rec["file"]] = HUMAN_HAIR_CLASSES.index(CELEBA_HAIR[on[0]])
    if not out:
        raise TagsDataError(f"{path} has no image with exactly one hair colour attribute")
    return out


def celeba_split(file: str, test_fraction: float = 0.1, total: int = 10000) -> str:
    """Deterministic split by image number (the last 10% are test), like CelebA's own index split."""
    number = int(Path(file).stem)
    return "test" if number > total * (1 - test_fraction) else "train"


class CelebAHairDataset(Dataset):
    """CelebA faces with one hair colour label (index into HUMAN_HAIR_CLASSES), held in memory."""

    def __init__(self, root: str | os.PathLike, split: str | None = "train", resolution: int = 64,
                 limit: int | None = None, progress: bool = False):
        root = Path(root)
        labels = read_celeba_hair(root / "attributes.csv")
        files = sorted(f for f in labels if split is None or celeba_split(f) == split)
        files = files[:limit] if limit else files
        self.images, kept, self.skipped = decode_images(root / "images", files, resolution, progress=progress)
        self.files = [files[i] for i in kept]
        self.labels = torch.tensor([labels[f] for f in self.files])  # (N,)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i].float() / 255, "label": self.labels[i]}

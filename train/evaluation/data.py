"""The evaluation's inputs: the held-out test splits (test selfies, real anime test faces and their
tags), the tag vectors the translations are asked for, and the folders of real photos."""

from __future__ import annotations

from pathlib import Path

import torch

from train.config import REPO_ROOT
from train.data import decode_images, list_images
from twingan.vocab import TagVocab


def load_test_sets(data: Path, resolution: int, vocab: TagVocab, limit: int = 0, app_size: int = 0) -> dict:
    """Test selfies (testA, and their paths as `selfie_files`), real anime test faces (testB +
    anime_tags test) with their tags; with `app_size`, the same real anime at that size too
    (`anime_app`, and `anime_app_sets`: how many faces of each data set it holds, in order)."""
    from train.tags_data import read_tags_csv

    folder = data / "selfie2anime" / "testA"
    files = list_images(folder)[: limit or None]
    selfies, kept, _ = decode_images(folder, files, resolution)
    parts, tags, app_parts, app_sets = [], [], [], {}
    folder = data / "selfie2anime" / "testB"
    if folder.is_dir():
        files_b = list_images(folder)[: limit or None]
        imgs, _, _ = decode_images(folder, files_b, resolution)
        parts.append(imgs)
        tags.append(torch.full((len(imgs), vocab.dim), float("nan")))  # untagged
        if app_size:
            app_parts.append(decode_images(folder, files_b, app_size)[0])
            app_sets["selfie2anime/testB"] = len(app_parts[-1])
    sets = {"selfies": selfies.float() / 255, "selfie_files": [data / "selfie2anime" / "testA" / files[i] for i in kept]}
    csv_path = data / "anime_tags" / "tags.csv"
    if csv_path.is_file():
        rows = read_tags_csv(csv_path, vocab, "test")
        files = sorted(rows)
        imgs, kept, _ = decode_images(data / "anime_tags" / "images", files, resolution)
        # All of them, whatever `limit`: the judges' recall on real faces decides which colours they confirm.
        sets["tagged_anime"] = imgs.float() / 255
        sets["tagged_tags"] = torch.tensor([rows[files[i]].vector for i in kept])
        n = min(limit * 5, len(imgs)) if limit else len(imgs)
        parts.append(imgs[:n])
        tags.append(sets["tagged_tags"][:n])
        if app_size:
            app_parts.append(decode_images(data / "anime_tags" / "images", [files[i] for i in kept[:n]], app_size)[0])
            app_sets["anime_tags test"] = len(app_parts[-1])
    if not parts:
        raise FileNotFoundError(f"no anime test images under {data} (selfie2anime/testB or anime_tags)")
    if app_size:
        sets["anime_app"], sets["anime_app_sets"] = torch.cat(app_parts).float() / 255, app_sets
    return {**sets, "anime": torch.cat(parts).float() / 255, "anime_tags": torch.cat(tags)}


def sample_tags(anime_tags: torch.Tensor, n: int, vocab: TagVocab, generator: torch.Generator) -> torch.Tensor:
    """n tag vectors drawn from the known rows of the anime test tags (colours always set)."""
    known = anime_tags[~torch.isnan(anime_tags).any(1)]
    rows = known[torch.randint(len(known), (n,), generator=generator)].clone()
    for sl, k in ((vocab.hair_slice, len(vocab.hair)), (vocab.eye_slice, len(vocab.eye))):
        empty = rows[:, sl].sum(1) == 0
        pick = torch.randint(k, (n,), generator=generator)
        rows[empty, sl] = torch.nn.functional.one_hot(pick[empty], k).float()
    return rows


def default_photo_dirs(data: Path) -> list[Path]:
    """Real photos of people for the app's portraits: the public-domain examples/ and the data's photos/."""
    return [REPO_ROOT / "examples", Path(data) / "photos"]


def photo_files(dirs) -> list[Path]:
    """The images in each folder of `dirs`, sorted per folder; a missing folder adds none."""
    from twingan.images import IMAGE_SUFFIXES

    return [path for d in map(Path, dirs) if d.is_dir()
            for path in sorted(d.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]

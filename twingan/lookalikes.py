"""Lookalike search: gallery faces of both domains encoded once, cached on disk, searched by cosine similarity.

`LatentIndex.build(root, encode, cache_key, ...)` takes the encoder as a plain function (a list of
same-size RGB images and a domain -> (B, D) unit-length vectors) and a key that names that encoder
(weights and input size), so the index knows nothing of the model or the pipeline. Importing this
module does no I/O.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from twingan.images import IMAGE_SUFFIXES, ImageError, load_image, square_crop

log = logging.getLogger(__name__)

# Gallery sub-folders and the domain their faces belong to (selfie2anime's names work as is).
GALLERY_DOMAINS = {"anime": "anime", "human": "human", "trainB": "anime", "testB": "anime",
                   "trainA": "human", "testA": "human"}
# (images, domain) -> (B, D) unit-length latents; images are same-size RGB.
EncodeFn = Callable[[list[Image.Image], str], torch.Tensor]


@dataclass
class Lookalike:
    path: Path
    domain: str
    similarity: float  # cosine similarity of the flattened latents


class LatentIndex:
    """Unit-length latents of gallery faces per domain, with their files."""

    def __init__(self, root: Path, latents: dict[str, torch.Tensor], files: dict[str, list[str]]):
        self.root = root
        self.latents = latents  # domain -> (N, D)
        self.files = files  # domain -> relative paths, same order

    def __len__(self) -> int:
        return sum(len(f) for f in self.files.values())

    def nearest(self, query: torch.Tensor, k: int = 4) -> dict[str, list[Lookalike]]:
        """The k gallery faces of each domain nearest to a (D,) unit-length query."""
        out = {}
        for domain, latents in self.latents.items():
            if not len(latents):
                continue
            sims = latents @ query  # (N,)
            top = sims.topk(min(k, len(sims)))
            out[domain] = [Lookalike(self.root / self.files[domain][i], domain, float(s))
                           for s, i in zip(top.values.tolist(), top.indices.tolist())]
        return out

    @classmethod
    def build(cls, root: Path, encode: EncodeFn, cache_key: str, image_size: int, cache_dir: Path,
              batch_size: int = 64) -> LatentIndex:
        """Encode every gallery image (centre square, image_size px), or load the cached result.

        cache_key names the encoder (e.g. weights hash and resolution); the cache file also changes
        when any gallery file is added, removed or modified. Unreadable files are skipped with a warning.
        """
        from safetensors.torch import load_file, save_file

        files = gallery_files(root)
        if not any(files.values()):
            raise ValueError(f"The gallery {root} has no images in sub-folders "
                             f"{', '.join(sorted(GALLERY_DOMAINS))}")
        key = _gallery_key(root, files, cache_key)
        tensors_path, names_path = cache_dir / f"gallery-{key}.safetensors", cache_dir / f"gallery-{key}.json"
        if tensors_path.is_file() and names_path.is_file():
            names = json.loads(names_path.read_text())
            latents = load_file(str(tensors_path))
            log.info("Loaded the gallery index from %s", tensors_path)
            return cls(root, {d: latents[d] for d in names["files"]}, names["files"])
        log.info("Indexing %d gallery images in %s", sum(map(len, files.values())), root)
        latents, kept = {}, {}
        for domain, paths in files.items():
            vectors, ok = [], []
            for start in range(0, len(paths), batch_size):
                images = []
                for rel in paths[start:start + batch_size]:
                    try:
                        images.append(square_crop(load_image(root / rel), image_size))
                        ok.append(rel)
                    except ImageError as err:
                        log.warning("Skipping gallery file %s: %s", rel, err)
                if images:
                    vectors.append(encode(images, domain))
            latents[domain] = torch.cat(vectors) if vectors else torch.zeros(0, 1)
            kept[domain] = ok
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_file({d: t.contiguous() for d, t in latents.items()}, str(tensors_path))
        names_path.write_text(json.dumps({"root": str(root), "files": kept}) + "\n")
        return cls(root, latents, kept)


def gallery_files(root: Path) -> dict[str, list[str]]:
    """Domain -> image paths relative to `root`, sorted, from the known sub-folders."""
    if not root.is_dir():
        raise ValueError(f"The gallery folder {root} does not exist")
    files: dict[str, list[str]] = {"anime": [], "human": []}
    for sub, domain in GALLERY_DOMAINS.items():
        folder = root / sub
        if folder.is_dir():
            files[domain] += sorted(str(p.relative_to(root)) for p in folder.rglob("*")
                                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files


def _gallery_key(root: Path, files: dict[str, list[str]], cache_key: str) -> str:
    """Changes when the encoder's key or any gallery file (name, size, mtime) changes."""
    h = hashlib.sha256(f"{cache_key}:{root.resolve()}".encode())
    for domain, paths in files.items():
        for rel in paths:
            st = (root / rel).stat()
            h.update(f"{domain}/{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]

"""Crop raw human photos into training faces with the app's face cropper (so training and inference agree).

`python -m train.helpers.prepare_faces RAW_DIR OUT_DIR [--resolution 128] [--max-faces 1]`

Detection runs once; the crops are written to OUT_DIR (keep it outside the repository: dataset images
never go into git; `runs/` is ignored) and OUT_DIR is then used as a `source_dirs` entry. Photos
without a face and unreadable files are skipped and counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from train.config import REPO_ROOT
from train.data import list_images


def prepare_faces(raw: Path, out: Path, resolution: int = 128, max_faces: int = 1, min_confidence: float = 0.9,
                  allow_inside_repo: bool = False) -> dict:
    """Write one PNG per detected face (`<stem>_<k>.png`); returns counts."""
    from twingan.faces import FaceCropper, ImageError, NoFaceError

    out = out.resolve()
    inside = REPO_ROOT in out.parents and (REPO_ROOT / "runs") not in out.parents
    if inside and not allow_inside_repo:
        raise ValueError(f"{out} is inside the repository; write crops outside it (or under runs/, which git ignores)")
    out.mkdir(parents=True, exist_ok=True)
    cropper = FaceCropper(resolution=resolution, max_faces=max_faces, min_confidence=min_confidence)
    counts = {"photos": 0, "faces": 0, "no_face": 0, "unreadable": 0}
    for name in list_images(raw):
        counts["photos"] += 1
        try:
            faces = cropper(raw / name)
        except NoFaceError:
            counts["no_face"] += 1
            continue
        except (ImageError, OSError) as err:
            counts["unreadable"] += 1
            print(f"skipped {name}: {err}", file=sys.stderr)
            continue
        for k, face in enumerate(faces):
            face.image.save(out / f"{Path(name).stem}_{k}.png")
            counts["faces"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.helpers.prepare_faces", description=__doc__.splitlines()[0])
    p.add_argument("raw", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--max-faces", type=int, default=1, help="faces kept per photo, largest first")
    p.add_argument("--min-confidence", type=float, default=0.9)
    args = p.parse_args(argv)
    print(json.dumps(prepare_faces(args.raw, args.out, args.resolution, args.max_faces, args.min_confidence)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

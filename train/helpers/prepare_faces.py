"""Crop raw human photos into training faces with the app's face cropper (so training and inference agree).

`python -m train.helpers.prepare_faces RAW_DIR OUT_DIR [--resolution 128] [--max-faces 1]
[--as-app [--checkpoint DIR]] [--split train] [--limit N]`

Detection runs once; the crops are written to OUT_DIR (keep it outside the repository: dataset images
never go into git; `runs/` is ignored) and OUT_DIR is then used as a `source_dirs` entry. Photos
without a face and unreadable files are skipped and counted.

`--as-app` writes what the app's translator is given instead: the app's framing (the whole head,
faded to grey past the photo's edges) with the plain background laid in by the portrait segmenter,
at the TwinGAN checkpoint's resolution (the bundled one unless `--checkpoint` names another).
Training on such faces beside the raw ones shows the model the inputs the app makes. `--split train`
keeps CelebA-named files (`000123.jpg`) of its train split only, so the held-out faces stay held out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from train.config import REPO_ROOT
from train.data import list_images
from train.tags_data import celeba_split


def prepare_faces(raw: Path, out: Path, resolution: int = 128, max_faces: int = 1, min_confidence: float = 0.9,
                  allow_inside_repo: bool = False, names: list[str] | None = None, app=None) -> dict:
    """Write one PNG per detected face (`<stem>_<k>.png`) of `names` in `raw` (default: all its
    images); returns counts. `app`: a `TranslationPipeline` whose model inputs are written instead
    (its cropper and the plain background, at its model's resolution; see the module's doc)."""
    from twingan.faces import FaceCropper, ImageError, NoFaceError
    from twingan.images import tensor_to_images
    from twingan.pipeline import PLAIN

    out = out.resolve()
    inside = REPO_ROOT in out.parents and (REPO_ROOT / "runs") not in out.parents
    if inside and not allow_inside_repo:
        raise ValueError(f"{out} is inside the repository; write crops outside it (or under runs/, which git ignores)")
    if app is not None and app.segmenter is None:
        raise FileNotFoundError("the app's inputs need the portrait segmenter: " + "; ".join(app.notes))
    out.mkdir(parents=True, exist_ok=True)
    if app is None:
        cropper = FaceCropper(resolution=resolution, max_faces=max_faces, min_confidence=min_confidence)
    else:
        cropper = app.cropper

    def images(faces):
        return [face.image for face in faces] if app is None else tensor_to_images(app.model_inputs(faces, PLAIN)[0])

    counts = {"photos": 0, "faces": 0, "no_face": 0, "unreadable": 0}
    for name in tqdm(list_images(raw) if names is None else names, desc="faces", unit="photo"):
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
        for k, image in enumerate(images(faces)):
            image.save(out / f"{Path(name).stem}_{k}.png")
            counts["faces"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.helpers.prepare_faces", description=__doc__.splitlines()[0])
    p.add_argument("raw", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--max-faces", type=int, default=1, help="faces kept per photo, largest first")
    p.add_argument("--min-confidence", type=float, default=0.9)
    p.add_argument("--as-app", action="store_true", help="the app's model inputs: its framing, plain background")
    p.add_argument("--checkpoint", default=None, help="with --as-app: the TwinGAN checkpoint (its resolution)")
    p.add_argument("--split", choices=("train", "test"), help="CelebA-numbered files of this split only")
    p.add_argument("--limit", type=int, default=0, help="the first N photos (after --split) only")
    args = p.parse_args(argv)
    names = list_images(args.raw)
    if args.split:
        if not all(Path(n).stem.isdigit() for n in names):
            p.error(f"--split needs CelebA-numbered files (000123.jpg); {args.raw} has others")
        names = [n for n in names if celeba_split(n) == args.split]
    names = names[:args.limit] if args.limit else names
    app = None
    if args.as_app:
        from twingan.pipeline import DEFAULT_CHECKPOINT, TranslationPipeline

        app = TranslationPipeline.load(args.checkpoint or DEFAULT_CHECKPOINT, device="cpu", max_faces=args.max_faces)
        app.cropper.min_confidence = args.min_confidence
    print(json.dumps(prepare_faces(args.raw, args.out, args.resolution, args.max_faces, args.min_confidence,
                                   names=names, app=app)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

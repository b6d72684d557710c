"""Can the eye-colour judges see an eye colour? Two checks of the instruments, not of a model:

1. **Real close-ups.** How often each judge reads each eye colour on real anime faces framed like the
   portraits it judges (selfie2anime trainB + testB, untagged). A colour a judge almost never reads on
   real faces, it cannot confirm on portraits either, except where the generator learned features
   that fool it (the recipe trains with a tagger of tagger-eval's architecture and data).
2. **Painted irises.** A checkpoint's portraits of TRAIN selfies, asked for each eye colour, read before
   and after a disc of the colour word's RGB (`train.losses.EYE_RGB`) is painted over each eye (the
   face detector's landmarks on the selfie). A judge that reads the colour from the eyes reads it more
   often once the iris is that colour.

    python -m train.judge_check CHECKPOINT [--count 200] [--radius 0.04] [--figure PNG] [--threads 2]

Train selfies only: the test selfies stay for `train.evaluate`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from train.config import REPO_ROOT, default_data_root
from train.evaluate import EVAL_TAGGER, EVAL_TAGGER_RESIDUAL, asking, batched, sample_tags, to_anime
from twingan.vocab import TagVocab

TRAINING_TAGGER = REPO_ROOT / "checkpoints" / "tagger"
FIGURE_PHOTOS = (REPO_ROOT / "examples" / "astronaut.png", REPO_ROOT / "examples" / "camera.png")
CLOSE_UP_FOLDERS = ("selfie2anime/trainB", "selfie2anime/testB")


@torch.no_grad()
def eye_reading_shares(judge, images: torch.Tensor, vocab: TagVocab) -> dict[str, float]:
    """The share of (N, 3, R, R) images in [0, 1] that `judge` reads as each eye colour (top-1)."""
    read = batched(judge.tag_probs, images)[:, vocab.eye_slice].argmax(1)
    return {name: (read == c).float().mean().item() for c, name in enumerate(vocab.eye)}


def _irises(points: torch.Tensor, resolution: int, radius: float, vocab: TagVocab) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, R, R) discs of `radius` of the side over both eyes at `points`, and each eye colour's RGB (E, 3)."""
    from train.eyes import eye_masks
    from train.losses import eye_prototypes

    return eye_masks(points, resolution, radius).amax(1, keepdim=True), eye_prototypes(vocab)


def _painted(portraits: torch.Tensor, discs: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, R, R) portraits with the (N, 1, R, R) discs filled with the colour `rgb` (3,)."""
    return torch.lerp(portraits, rgb.view(1, 3, 1, 1).expand_as(portraits), discs)


@torch.no_grad()
def painted_iris_readings(model, judges: list, selfies: torch.Tensor, points: torch.Tensor, tags: torch.Tensor,
                          radius: float = 0.04) -> dict[str, dict[str, list[float]]]:
    """{"plain" | "painted": {eye colour: [share read right by each judge]}}.

    Every selfie is translated asking for each eye colour (the other tags as in `tags`); "painted"
    reads the same portraits with a disc of the colour's RGB, `radius` of the side, over each eye at
    `points` ((N, 2, 2) x, y fractions, as `train.eyes.locate_eyes` gives).
    """
    vocab = model.config.vocab
    discs, rgb = _irises(points, selfies.shape[-1], radius, vocab)
    out = {"plain": {}, "painted": {}}
    for c, name in enumerate(vocab.eye):
        portraits = to_anime(model, selfies, asking(tags, vocab.eye_slice, c))
        for key, images in (("plain", portraits), ("painted", _painted(portraits, discs, rgb[c]))):
            out[key][name] = [eye_reading_shares(j, images, vocab)[name] for j in judges]
    return out


@torch.no_grad()
def painted_figure(model, judge, selfies: torch.Tensor, points: torch.Tensor, tags: torch.Tensor,
                   colours: list[str], radius: float, path: Path):
    """Rows: the faces; columns: the input, then per colour its portrait as drawn and with a painted
    iris, each captioned with the eye colour `judge` reads there."""
    from PIL import ImageDraw
    from torchvision.transforms.functional import to_pil_image

    from train.figures import CELL, LABEL, grid

    vocab = model.config.vocab
    discs, rgb = _irises(points, selfies.shape[-1], radius, vocab)
    columns, captions = [selfies], ["input"]
    for name in colours:
        c = vocab.eye.index(name)
        portraits = to_anime(model, selfies, asking(tags, vocab.eye_slice, c))
        columns += [portraits, _painted(portraits, discs, rgb[c])]
        captions += [f"{name} asked", f"{name} painted"]
    sheet = grid([[to_pil_image(col[i].clamp(0, 1)) for col in columns] for i in range(len(selfies))], captions)
    draw = ImageDraw.Draw(sheet)
    for j, col in enumerate(columns[1:], start=1):
        read = batched(judge.tag_probs, col)[:, vocab.eye_slice].argmax(1)
        for i in range(len(selfies)):
            x, y = j * CELL + 2, LABEL + (i + 1) * CELL - 14
            draw.rectangle((x - 1, y - 1, x + 6 * len(vocab.eye[read[i]]) + 1, y + 11), fill="white")
            draw.text((x, y), vocab.eye[read[i]], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _load_close_ups(data: Path, resolution: int) -> torch.Tensor:
    from train.data import decode_images, list_images

    parts = []
    for sub in CLOSE_UP_FOLDERS:
        folder = data / sub
        if folder.is_dir():
            parts.append(decode_images(folder, list_images(folder), resolution)[0])
    if not parts:
        raise FileNotFoundError(f"no close-up anime faces under {data} ({' or '.join(CLOSE_UP_FOLDERS)})")
    return torch.cat(parts).float() / 255


def format_report(names: list[str], shares: list[dict], n_close: int, readings: dict, n_selfies: int,
                  radius: float, vocab: TagVocab) -> str:
    pct = lambda v: f"{100 * v:.0f}"  # noqa: E731
    lines = [f"## How often each judge reads each eye colour on {n_close} real close-up anime faces (%)", "",
             "| judge | " + " | ".join(vocab.eye) + " |", "|---|" + "---|" * len(vocab.eye)]
    lines += [f"| {name} | " + " | ".join(f"{100 * s[c]:.1f}" for c in vocab.eye) + " |"
              for name, s in zip(names, shares)]
    lines += ["", f"## Portraits of {n_selfies} train selfies asked for each eye colour: read right (%), "
                  f"as drawn -> with a painted iris (radius {radius} of the side)", "",
              "| judge | mean | " + " | ".join(vocab.eye) + " |", "|---|---|" + "---|" * len(vocab.eye)]
    for j, name in enumerate(names):
        plain = [readings["plain"][c][j] for c in vocab.eye]
        painted = [readings["painted"][c][j] for c in vocab.eye]
        mean = f"{100 * sum(plain) / len(plain):.1f} -> {100 * sum(painted) / len(painted):.1f}"
        lines.append(f"| {name} | {mean} | " + " | ".join(f"{pct(a)} -> {pct(b)}" for a, b in zip(plain, painted))
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.judge_check", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="exported TwinGAN folder whose portraits are painted")
    p.add_argument("--data", default=None, help="data root (default $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--judges", nargs="+", default=[str(EVAL_TAGGER), str(EVAL_TAGGER_RESIDUAL), str(TRAINING_TAGGER)],
                   help="tagger folders to check (default: both judges and, for comparison, the training tagger)")
    p.add_argument("--count", type=int, default=200, help="train selfies to translate")
    p.add_argument("--radius", type=float, default=0.04, help="painted iris radius, as a fraction of the side")
    p.add_argument("--figure", default=None, help="also save a PNG: the faces of --figure-photos asked for orange, "
                   "pink and aqua eyes, as drawn and painted, each captioned with the first judge's reading")
    p.add_argument("--figure-photos", nargs="+", default=[str(p) for p in FIGURE_PHOTOS],
                   help="photos for --figure (default: the public-domain examples; never the data's selfies, "
                   "which must not be redistributed)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from train.eyes import locate_eyes
    from train.tag_gain import load_train_sets
    from twingan.checkpoint import CheckpointError, load_pretrained
    from twingan.model import TwinGAN
    from twingan.tagger import Tagger

    data = Path(args.data or default_data_root())
    try:
        if not data.is_dir():
            raise FileNotFoundError(f"data folder {data} not found (set --data or TWINGAN_DATA)")
        model = load_pretrained(TwinGAN, args.checkpoint)
        judges = [load_pretrained(Tagger, j) for j in args.judges]
        vocab, res = model.config.vocab, model.config.resolution
        close = _load_close_ups(data, res)
        sets = load_train_sets(data, res, vocab, args.count)
        points, _ = locate_eyes((sets["selfies"] * 255).round().to(torch.uint8), progress=False)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    tags = sample_tags(sets["anime_tags"], len(sets["selfies"]), vocab, torch.Generator().manual_seed(0))
    shares = [eye_reading_shares(j, close, vocab) for j in judges]
    readings = painted_iris_readings(model, judges, sets["selfies"], points, tags, args.radius)
    names = [Path(j).name for j in args.judges]
    print(format_report(names, shares, len(close), readings, len(sets["selfies"]), args.radius, vocab))
    if args.figure:
        from twingan.faces import FaceCropper, ImageError

        cropper = FaceCropper(resolution=res, max_faces=1)
        try:
            faces = torch.stack([torch.from_numpy(np.array(cropper(photo)[0].image)).permute(2, 0, 1)
                                 for photo in args.figure_photos])
            face_points, _ = locate_eyes(faces, progress=False)
        except (ImageError, ValueError, IndexError) as err:
            print(f"error: no figure: {err or 'no face found'}", file=sys.stderr)
            return 2
        path = painted_figure(model, judges[0], faces.float() / 255, face_points, tags[:len(faces)],
                              ["orange", "pink", "aqua"], args.radius, Path(args.figure))
        print(f"\nwrote {path}: captions are what {names[0]} reads")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Figures of the anime upscaler: what it does to the app's portraits, and to held-out anime faces.

    python -m train.helpers.upscaler_figure --out docs/upscaler.png
    python -m train.helpers.upscaler_figure --held-out --out runs/upscaler/held_out.png [DATA_ROOT]

Default: the public-domain example photos (examples/) through the app's pipeline: the face crop,
its portrait at the model's resolution (128 px for the default checkpoint) resized to display size
(the upscaler off), the same portrait through the upscaler, and the eye band of both enlarged 2x
(nearest). --held-out: held-out anime faces from the
shared data, 64 -> 128 px: a degraded 64 px input bicubic-enlarged, the upscaler on it, the clean 64 px
input bicubic-enlarged, the upscaler on it, the real face; every cell enlarged 2x (nearest). Those
are third-party images: write that figure to a run folder, never into git.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image

from train.config import REPO_ROOT, default_data_root
from train.data import DataError
from train.evaluation.figures import eye_band, grid
from train.helpers.upscaler import bicubic_up, clean_input, degrade, load_faces
from twingan.checkpoint import CheckpointError, load_pretrained
from twingan.faces import ImageError
from twingan.pipeline import DEFAULT_CHECKPOINT, DEFAULT_UPSCALER, TranslationPipeline, _to_pil
from twingan.upscaler import AnimeUpscaler


def sheet(rows: list[list[Image.Image]], captions: list[str], zoom: int = 1) -> Image.Image:
    """Rows of square cells enlarged `zoom` times (nearest, so the pixels stay visible) under captions."""
    return grid(rows, captions, cell=rows[0][0].width * zoom, resample=Image.Resampling.NEAREST)


def portrait_rows(pipeline: TranslationPipeline, photos: list[Path]) -> list[list[Image.Image]]:
    """Per photo's largest face: crop, resized portrait, upscaled portrait, both eye bands x2 (256 px cells)."""
    size = pipeline.display_size
    rows = []
    for photo in photos:
        crop = pipeline.detect(photo)[:1]
        plain = pipeline.translate_crops(crop, hair=pipeline.default_hair, upscale=False)[0].anime
        sharp = pipeline.translate_crops(crop, hair=pipeline.default_hair, upscale=True)[0].anime
        eyes = [eye_band(p).resize((size, size), Image.Resampling.NEAREST) for p in (plain, sharp)]
        rows.append([crop[0].image.resize((size, size), Image.Resampling.LANCZOS), plain, sharp, *eyes])
    return rows


@torch.no_grad()
def held_out_rows(model: AnimeUpscaler, faces: torch.Tensor, counts: dict[str, int], per_set: int,
                  seed: int = 0) -> list[list[Image.Image]]:
    """`per_set` evenly spaced faces of each held-out set: degraded input (bicubic), upscaler on it,
    clean input (bicubic), upscaler on it, real (128 px cells)."""
    picks, start = [], 0
    for n in counts.values():
        picks += [start + i * n // per_set for i in range(per_set)]
        start += n
    hr = faces[picks].float() / 255
    degraded, clean = degrade(hr, torch.Generator().manual_seed(seed)), clean_input(hr)
    columns = [bicubic_up(degraded), model.upscale(degraded), bicubic_up(clean), model.upscale(clean), hr]
    return [list(row) for row in zip(*[_to_pil(c) for c in columns])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root", nargs="?", type=Path, default=None,
                        help="--held-out: folder holding anime_tags/ and selfie2anime/ (default $TWINGAN_DATA, "
                             "else ../shared/data)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--upscaler", default=str(DEFAULT_UPSCALER))
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="the translator (default figure)")
    parser.add_argument("--photos", nargs="*", type=Path, default=sorted((REPO_ROOT / "examples").glob("*.png")))
    parser.add_argument("--held-out", action="store_true", help="held-out anime faces instead (third-party images)")
    parser.add_argument("--per-set", type=int, default=3, help="--held-out: faces from each held-out image set")
    args = parser.parse_args(argv)
    try:
        if args.held_out:
            model = load_pretrained(AnimeUpscaler, args.upscaler)
            faces, counts, _ = load_faces(args.data_root or Path(default_data_root()), held_out=True)
            rows = held_out_rows(model, faces, counts, args.per_set)
            captions = ["degraded 64 px, bicubic", "upscaler (degraded)", "clean 64 px, bicubic",
                        "upscaler (clean)", "real 128 px"]
            figure = sheet(rows, captions, zoom=2)
        else:
            pipeline = TranslationPipeline.load(args.checkpoint, device="cpu", upscaler=args.upscaler)
            if pipeline.upscaler is None:
                raise CheckpointError(f"no upscaler checkpoint at {args.upscaler}")
            captions = ["face crop", "portrait, resized", "portrait, upscaler", "eyes, resized (2x)",
                        "eyes, upscaler (2x)"]
            figure = sheet(portrait_rows(pipeline, args.photos), captions)
    except (CheckpointError, DataError, ImageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out)
    print(f"wrote {args.out} ({figure.width} x {figure.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

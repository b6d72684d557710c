"""The README's results grids, made from a checkpoint: each input's face crop, its anime portrait,
and the same face in every hair colour of the vocabulary (or, with --eyes, the band of the portrait
that holds the eyes, enlarged, in every eye colour).

    python -m train.evaluation.figures --checkpoint checkpoints/twingan-selfie2anime --out docs/results.png
    python -m train.evaluation.figures --eyes --out docs/eyes.png
    python -m train.evaluation.figures --selfies ../shared/data/selfie2anime/testA --count 6 --out runs/figures/testA.png
    python -m train.evaluation.figures --compare OLD_CHECKPOINT --out docs/before_after.png
    python -m train.evaluation.figures --tight --out docs/tight_uploads.png
    python -m train.evaluation.figures --background --out docs/background.png

With --compare, each row is what the app shows at 256 px: the face crop, OLD_CHECKPOINT's portrait and
the checkpoint's, both through the anime upscaler as the app shows them, and the checkpoint's in three
asked-for hair colours. --before-resized shows OLD_CHECKPOINT's portrait with a plain resize instead,
as the app showed it before it had the upscaler (docs/before_after.png of 2026-12-02).

With --tight, each photo is first cut to its face's framing in the training selfies, as tightly
cropped selfies come, so that the app's crop reaches past the upload's edges; each row shows that
upload, then the crop and portrait with the part past the edges repeated from the edge pixels (the
app before 2026-12-05, night) and faded towards light grey (`twingan.faces.crop_face`, now); both
portraits with the photo's background, as the app made them then.

With --background, each row shows the face crop and its portrait with the photo's background
translated (the app before 2026-12-06), then what the translator sees with the plain background
(`TranslationPipeline.model_inputs`: the rest laid over light grey) and its portrait (now).

The default inputs are the public-domain example photos in examples/. A grid made from the
shared data sets (third-party images) belongs in a run folder, never in git.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from train.config import REPO_ROOT
from twingan.checkpoint import CheckpointError
from twingan.controls import face_seed
from twingan.faces import IMAGE_SUFFIXES, TRAIN_A_MARGINS, FaceCrop, ImageError, crop_box, crop_face, load_image
from twingan.pipeline import DEFAULT_CHECKPOINT, KEEP, PHOTO, PLAIN, TranslationPipeline

CELL, LABEL = 96, 16  # pixels per image and per caption line


def grid(rows: list[list[Image.Image]], captions: list[str], cell: int = CELL,
         resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
    """Rows of equal-sized cells (`cell` px, resized with `resample`) under one caption row."""
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * cell, LABEL + len(rows) * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for j, text in enumerate(captions):
        draw.text((j * cell + 3, 2), text, fill="black")
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            sheet.paste(image.resize((cell, cell), resample), (j * cell, LABEL + i * cell))
    return sheet


def eye_band(portrait: Image.Image) -> Image.Image:
    """The centred square of half the portrait's width, from a fifth of its height down: where the eyes are drawn."""
    w, h = portrait.size
    return portrait.crop((w // 4, h // 5, 3 * w // 4, h // 5 + w // 2))


def input_crops(pipeline: TranslationPipeline, photos: list[Path], selfies: Path | None, count: int):
    """One face crop per input: the largest detected face of a photo, or a pre-cropped selfie as is."""
    if selfies is not None:
        files = sorted(p for p in selfies.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:count]
        if not files:
            raise ImageError(f"no images in {selfies}")
        res = pipeline.cropper.resolution
        crops = []
        for f in files:
            image = load_image(f)
            box = (0.0, 0.0, float(image.width), float(image.height))
            crops.append(FaceCrop(image=crop_face(image, box, res), box=box, face_box=None, confidence=1.0))
        return crops
    return [pipeline.detect(p)[0] for p in photos]


COMPARE_HAIR = ("pink", "blue", "silver")  # a bright, a dark and a pale colour


def before_after(old: TranslationPipeline, new: TranslationPipeline, crops: list[FaceCrop],
                 before_upscaled: bool = True) -> Image.Image:
    """Rows of 256 px cells: crop | old portrait | new portrait | new in COMPARE_HAIR, each through its
    pipeline's upscaler (the old one resized instead unless `before_upscaled`)."""
    rows = []
    for crop in crops:
        before = old.translate_crops([crop], hair=old.default_hair, upscale=before_upscaled)[0].anime
        after = [new.translate_crops([crop], hair=h)[0].anime for h in (new.default_hair, *COMPARE_HAIR)]
        rows.append([crop.image, before, *after])
    captions = ["photo", "before", "now", *(f"now, {h} hair" for h in COMPARE_HAIR)]
    return grid(rows, captions, cell=256)


def tight_uploads(pipeline: TranslationPipeline, photos: list[Path]) -> Image.Image:
    """Rows of 256 px cells: a photo cut to its largest face's TRAIN_A_MARGINS frame | the app's crop
    of that cut with its outside edge-repeated | that crop's portrait | the crop faded outside | its
    portrait. Both portraits get the same "auto" eye colour."""
    rows = []
    for path in photos:
        photo = load_image(path)
        face = pipeline.detect(photo)[0]
        frame, _ = crop_box(face.face_box, face.landmarks, TRAIN_A_MARGINS)
        upload = photo.crop(tuple(round(v) for v in frame))
        crop = pipeline.detect(upload)[0]
        edge = crop_face(upload, crop.box, pipeline.cropper.resolution, crop.angle, fade_outside=False)
        edged = dataclasses.replace(crop, image=edge)
        seeds = [face_seed(crop.image)]
        before, after = (pipeline.translate_crops([c], eye_seeds=seeds, background=PHOTO)[0].anime
                         for c in (edged, crop))
        rows.append([upload, edge, before, crop.image, after])
    return grid(rows, ["upload", "crop before", "before", "crop now", "now"], cell=256)


def backgrounds(pipeline: TranslationPipeline, crops: list[FaceCrop]) -> Image.Image:
    """Rows of 256 px cells: the face crop | its portrait with the photo's background | what the
    translator sees with the plain background (at the translator's resolution) | that portrait."""
    from torchvision.transforms.functional import to_pil_image

    if pipeline.segmenter is None:
        raise CheckpointError("no portrait segmenter loaded: " + "; ".join(pipeline.notes))
    rows = []
    for crop in crops:
        photo, plain = (pipeline.translate_crops([crop], background=b)[0].anime for b in (PHOTO, PLAIN))
        seen = to_pil_image(pipeline.model_inputs([crop], PLAIN)[0][0])
        rows.append([crop.image, photo, seen, plain])
    return grid(rows, ["photo", "before: its background drawn", "plain background: the model's input", "now"],
                cell=256)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--photos", nargs="*", type=Path,
                        default=sorted((REPO_ROOT / "examples").glob("*.png")), help="photos to detect faces in")
    parser.add_argument("--selfies", type=Path, help="a folder of already cropped selfies (instead of --photos)")
    parser.add_argument("--count", type=int, default=6, help="how many selfies from --selfies")
    parser.add_argument("--eyes", action="store_true", help="vary the eye colour instead; show the eye band")
    parser.add_argument("--compare", metavar="OLD_CHECKPOINT", default=None,
                        help="before/after at display size: OLD_CHECKPOINT against --checkpoint, as the app shows them")
    parser.add_argument("--before-resized", action="store_true",
                        help="with --compare: OLD_CHECKPOINT's portraits with a plain resize, not the upscaler")
    parser.add_argument("--tight", action="store_true",
                        help="each photo cut to a tight selfie's framing; the crop's outside edge-repeated, then faded")
    parser.add_argument("--background", action="store_true",
                        help="each face with the photo's background translated, then with the plain background")
    parser.add_argument("--out", type=Path, default=None,
                        help="default docs/results.png (docs/eyes.png with --eyes, docs/before_after.png with --compare,"
                             " docs/tight_uploads.png with --tight, docs/background.png with --background)")
    args = parser.parse_args(argv)
    name = ("eyes.png" if args.eyes else "before_after.png" if args.compare else "tight_uploads.png" if args.tight
            else "background.png" if args.background else "results.png")
    out = args.out or REPO_ROOT / "docs" / name
    try:
        pipeline = TranslationPipeline.load(args.checkpoint, device="cpu")
        if args.tight:
            out.parent.mkdir(parents=True, exist_ok=True)
            tight_uploads(pipeline, args.photos).save(out)
            print(f"wrote {out} ({len(args.photos)} uploads, crops edge-repeated and faded)")
            return 0
        crops = input_crops(pipeline, args.photos, args.selfies, args.count)
        if args.background:
            out.parent.mkdir(parents=True, exist_ok=True)
            backgrounds(pipeline, crops).save(out)
            print(f"wrote {out} ({len(crops)} inputs, the photo's background and the plain one)")
            return 0
        old = TranslationPipeline.load(args.compare, device="cpu") if args.compare else None
    except (CheckpointError, ImageError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if old is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        before_after(old, pipeline, crops, before_upscaled=not args.before_resized).save(out)
        print(f"wrote {out} ({len(crops)} inputs, before and after)")
        return 0
    default = pipeline.default_hair
    rows = []
    if args.eyes:
        colours = list(pipeline.vocab.eye)
        for crop in crops:
            portraits = [pipeline.translate_crops([crop], hair=default, eye=e)[0].anime_raw for e in colours]
            rows.append([crop.image, *[eye_band(p) for p in portraits]])
        captions = ["input", *colours]
    else:
        colours = list(pipeline.vocab.hair)
        for crop in crops:
            own = pipeline.translate_crops([crop], hair=default)[0]
            recoloured = [pipeline.translate_crops([crop], hair=h)[0].anime_raw for h in colours]
            rows.append([crop.image, own.anime_raw, *recoloured])
        captions = ["input", "own hair" if default == KEEP else "no tags", *colours]
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, captions).save(out)
    print(f"wrote {out} ({len(rows)} inputs x {len(captions)} columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How well the human hair classifier ("keep my hair colour") reads each group of the CelebA test split.

Groups: everyone, men, women, young, old (CelebA's Male and Young attributes), the same faces shrunk
to 32 px and upscaled back (a face under 64 px in a photo), greyscale copies, and the faces framed
as the app frames them (FaceCropper on the aligned image, then the pipeline's resize): the model's
tight crop, which the classifier used to get, and the CelebA-like hair crop it gets now. For each:
top-1, balanced accuracy, mean confidence (top probability), and top-1 and coverage of the reads at
or above the app's confidence floor (`twingan.pipeline.HAIR_MIN_CONFIDENCE`), below which the app
lets the model choose instead.

    python -m train.helpers.hair_report [--data ../shared/data/celeba] [--checkpoint checkpoints/human-hair]
        [--out runs/hair_report.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from train.config import default_data_root
from train.tags_data import HUMAN_HAIR_CLASSES, CelebAHairDataset, TagsDataError
from twingan.checkpoint import CheckpointError, load_pretrained
from twingan.layers import luma, resize_square
from twingan.pipeline import DEFAULT_HAIR_CLASSIFIER, HAIR_MIN_CONFIDENCE, is_greyscale
from twingan.tagger import HumanHairClassifier

SMALL_FACE = 32  # px: "a face under 64 px", shrunk to this and upscaled back to the classifier's size


def read_attributes(path: Path, names: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """file -> {attribute: 0/1} for the named CelebA attributes."""
    with path.open(newline="") as fh:
        return {rec["file"]: {n: int(rec[n]) for n in names} for rec in csv.DictReader(fh)}


def greyscale(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> the same with R = G = B = luma (ITU-R 601, as PIL's "L")."""
    return luma(images).expand_as(images).contiguous()


def small_face(images: torch.Tensor, side: int = SMALL_FACE) -> torch.Tensor:
    """Shrink to side x side and upscale back (bicubic, as crop_face would upscale a small face)."""
    size = images.shape[-1]
    return F.interpolate(resize_square(images, side), size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def app_framing(root: Path, files: list[str], resolution: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The faces as the app frames them, from the aligned images: the model's crop (TRAIN_A_MARGINS)
    and the hair classifier's (CELEBA_MARGINS), 128 px resized to `resolution` as the pipeline does.
    Returns (model crops, hair crops, indices of the files where a face was found)."""
    from twingan.faces import CELEBA_MARGINS, FaceCropper, NoFaceError
    from twingan.pipeline import _to_tensor

    cropper = FaceCropper(128, max_faces=1, context_margins=CELEBA_MARGINS)
    crops, kept = [], []
    for i, name in enumerate(files):
        try:
            crops.append(cropper(root / "images" / name)[0])
            kept.append(i)
        except NoFaceError:
            continue

    return (resize_square(_to_tensor([c.image for c in crops]), resolution),
            resize_square(_to_tensor([c.context for c in crops]), resolution), kept)


def group_report(probs: torch.Tensor, labels: torch.Tensor, floor: float) -> dict:
    """Top-1, balanced accuracy, mean confidence, and top-1 / coverage above the confidence floor."""
    conf, pred = probs.max(1)
    correct = (pred == labels).float()
    recalls = [correct[labels == c].mean().item() for c in range(probs.shape[1]) if (labels == c).any()]
    sure = conf >= floor
    return {"n": int(len(labels)), "top1": correct.mean().item(), "balanced_accuracy": sum(recalls) / len(recalls),
            "mean_confidence": conf.mean().item(), "coverage": sure.float().mean().item(),
            "top1_above_floor": correct[sure].mean().item() if sure.any() else None,
            "predicted": {n: int((pred == c).sum()) for c, n in enumerate(HUMAN_HAIR_CLASSES)},
            # other floors: (coverage, top-1 of the reads kept), to choose HAIR_MIN_CONFIDENCE
            "floors": {f: (sure_f.float().mean().item(), correct[sure_f].mean().item() if sure_f.any() else None)
                       for f in (0.4, 0.5, 0.6, 0.7, 0.8) for sure_f in [conf >= f]}}


@torch.no_grad()
def hair_report(data: Path, checkpoint: Path, app_crops: bool = True) -> dict:
    model = load_pretrained(HumanHairClassifier, checkpoint, torch.device("cpu"), torch.float32).eval()
    res = model.config.resolution
    test = CelebAHairDataset(data, "test", res)
    attrs = read_attributes(data / "attributes.csv", ("Male", "Young"))
    images = test.images.float() / 255  # (N, 3, R, R)
    labels = test.labels

    def probs_of(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([model(x[i:i + 256]).float().softmax(-1) for i in range(0, len(x), 256)])

    probs = probs_of(images)
    male = torch.tensor([attrs[f]["Male"] == 1 for f in test.files])
    young = torch.tensor([attrs[f]["Young"] == 1 for f in test.files])
    groups = {"all": torch.ones_like(male), "men": male, "women": ~male, "young": young, "old": ~young}
    out = {name: group_report(probs[mask], labels[mask], HAIR_MIN_CONFIDENCE) for name, mask in groups.items()}
    out[f"faces of {SMALL_FACE} px"] = group_report(probs_of(small_face(images)), labels, HAIR_MIN_CONFIDENCE)
    grey = greyscale(images)
    out["greyscale"] = group_report(probs_of(grey), labels, HAIR_MIN_CONFIDENCE)
    out["greyscale"]["detected_as_greyscale"] = sum(is_greyscale(g) for g in grey) / len(grey)
    out["all"]["detected_as_greyscale"] = sum(is_greyscale(x) for x in images) / len(images)
    if app_crops:
        model_crops, hair_crops, kept = app_framing(data, test.files, res)
        out["app, model's crop"] = group_report(probs_of(model_crops), labels[kept], HAIR_MIN_CONFIDENCE)
        out["app, hair crop"] = group_report(probs_of(hair_crops), labels[kept], HAIR_MIN_CONFIDENCE)
    return {"checkpoint": str(checkpoint), "confidence_floor": HAIR_MIN_CONFIDENCE, "classes": HUMAN_HAIR_CLASSES,
            "groups": out}


def markdown(report: dict) -> str:
    """The report as a README table."""
    pct = lambda v: "-" if v is None else f"{v:.0%}"  # noqa: E731
    lines = [f"| group | n | top-1 | balanced | mean confidence | read (confidence >= {report['confidence_floor']}) "
             "| top-1 of those read |", "|---|---|---|---|---|---|---|"]
    for name, g in report["groups"].items():
        lines.append(f"| {name} | {g['n']} | {pct(g['top1'])} | {pct(g['balanced_accuracy'])} | "
                     f"{g['mean_confidence']:.2f} | {pct(g['coverage'])} | {pct(g['top1_above_floor'])} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path(default_data_root()) / "celeba")
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_HAIR_CLASSIFIER)
    p.add_argument("--out", type=Path, default=None, help="also write the report as JSON here")
    p.add_argument("--no-app-crops", action="store_true", help="skip the FaceCropper group (the slow one)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    try:
        report = hair_report(args.data, args.checkpoint, not args.no_app_crops)
    except (TagsDataError, CheckpointError) as err:
        print(f"hair_report: {err}", file=sys.stderr)
        return 1
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

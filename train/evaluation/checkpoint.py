"""Evaluate an exported checkpoint folder: load it, the judges, the feature net and the app's
pipeline, measure, and write the JSON and the figures (`evaluate_checkpoint`)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from train.config import REPO_ROOT, default_data_root
from train.evaluation.app_outputs import APP_SIZE, evaluate_app, photos_figure, photos_figure_path
from train.evaluation.data import default_photo_dirs, load_test_sets, photo_files, sample_tags
from train.evaluation.model_outputs import TWO_SAMPLE_STEPS, evaluate, evaluate_reverse
from twingan.pipeline import DEFAULT_HAIR_CLASSIFIER

EVAL_TAGGER = REPO_ROOT / "checkpoints" / "tagger-eval"
EVAL_TAGGER_RESIDUAL = REPO_ROOT / "checkpoints" / "tagger-eval-residual"
FEATNET = REPO_ROOT / "checkpoints" / "featnet-eval"


def comparison_grid(model, shown: dict, path: Path, n: int = 8) -> Path:
    """Rows: input selfies | translations (sampled tags) | reconstructions; then one input in every hair colour."""
    from torchvision.utils import save_image

    vocab = model.config.vocab
    x = shown["selfies"][:n]
    rows = [x, shown["translated"][:n], model.translate(x, "human", "human")]
    one = x[:1].expand(len(vocab.hair), -1, -1, -1)
    t = shown["tags"][:1].expand(len(vocab.hair), -1).clone()
    t[:, vocab.hair_slice] = torch.eye(len(vocab.hair))
    colours = model.translate(one, "human", "anime", t)
    path.parent.mkdir(parents=True, exist_ok=True)
    pad = torch.ones(max(0, len(vocab.hair) - n), *x.shape[1:])
    grid = torch.cat([torch.cat([r, pad]) for r in rows] + [colours])
    size = max(128, grid.shape[-1])  # small models are shown enlarged (nearest, so pixels stay honest)
    grid = torch.nn.functional.interpolate(grid, size=size, mode="nearest")
    save_image(grid, path, nrow=max(n, len(vocab.hair)), padding=2, pad_value=1.0)
    return path


def anime_colour_pairs(anime_tags: torch.Tensor, n: int, vocab, seed: int = 0) -> list[tuple[str, str]] | None:
    """n (hair, eye) colour names drawn from the tagged real anime test faces (`sample_tags`), or None
    when none is tagged."""
    if not bool((~torch.isnan(anime_tags).any(1)).any()):
        return None
    drawn = sample_tags(anime_tags, n, vocab, torch.Generator().manual_seed(seed + 1))
    hair, eye = drawn[:, vocab.hair_slice].argmax(1).tolist(), drawn[:, vocab.eye_slice].argmax(1).tolist()
    return [(vocab.hair[h], vocab.eye[e]) for h, e in zip(hair, eye)]


def evaluate_checkpoint(checkpoint, data=None, judge=EVAL_TAGGER, featnet=FEATNET, limit: int = 0, seed: int = 0,
                        two_sample_steps: int = TWO_SAMPLE_STEPS, out=None, grid=None,
                        second_judge=EVAL_TAGGER_RESIDUAL, photos=None, app_two_sample_steps: int = TWO_SAMPLE_STEPS,
                        hair_classifier=DEFAULT_HAIR_CLASSIFIER, app_two_sample_calibration: bool = True,
                        reverse: bool | None = None, app_two_sample_seeds: int = 1) -> dict:
    """Load a checkpoint folder, evaluate it on the test splits and return the metrics dict.

    The app's portraits come from a `TranslationPipeline` on the CPU with this checkpoint and
    `hair_classifier` (the app's; None: the model picks the hair colour), of the test selfies and
    of the images in the folders `photos` (default `default_photo_dirs`); `app_two_sample_calibration`
    and `app_two_sample_seeds` as `evaluate_app`'s `calibrate` and `two_sample_seeds`. `reverse`
    (None: when the checkpoint was trained so) also measures anime -> human (`evaluate_reverse`).
    Writes the JSON to `out`, the comparison grid to `grid` (default: next to `out`) and the photos'
    portraits beside the grid (`..._photos.png`) when `out` is given. Raises CheckpointError for a bad
    checkpoint, ValueError for the training tagger as judge, FileNotFoundError for a missing data folder.
    """
    from twingan.checkpoint import load_pretrained, trained_both_ways
    from twingan.featnet import FeatureNet
    from twingan.model import TwinGAN
    from twingan.pipeline import TranslationPipeline
    from twingan.tagger import Tagger

    for j in (judge, second_judge):
        if j is not None and Path(j).resolve() == (REPO_ROOT / "checkpoints" / "tagger").resolve():
            raise ValueError("the training tagger cannot judge its own generator; pass checkpoints/tagger-eval")
    data = Path(data or default_data_root())
    model = load_pretrained(TwinGAN, checkpoint)
    tagger = load_pretrained(Tagger, judge)
    tagger2 = load_pretrained(Tagger, second_judge) if second_judge is not None else None
    features = load_pretrained(FeatureNet, featnet)
    if not data.is_dir():
        raise FileNotFoundError(f"data folder {data} not found (set --data or TWINGAN_DATA)")
    sets = load_test_sets(data, model.config.resolution, model.config.vocab, limit, app_size=APP_SIZE)
    # The app's pipeline: no anime tagger (it only reads reference images, which the evaluation has none of).
    pipeline = TranslationPipeline.load(checkpoint, device="cpu", tagger=None, hair_classifier=hair_classifier)
    photo_dirs = [Path(d) for d in photos] if photos is not None else default_photo_dirs(data)
    t0 = time.time()
    metrics, shown = evaluate(model, tagger, sets, seed, features, two_sample_steps, tagger2)
    if reverse or (reverse is None and trained_both_ways(checkpoint)):
        metrics.update(evaluate_reverse(model, sets, seed, two_sample_steps))
    app_metrics, photo_faces = evaluate_app(pipeline, sets["selfie_files"], photo_files(photo_dirs), sets["anime_app"],
                                            seed, app_two_sample_steps, app_two_sample_calibration,
                                            anime_colour_pairs(sets["anime_tags"], len(sets["selfie_files"]),
                                                               model.config.vocab, seed),
                                            app_two_sample_seeds, sets["anime_app_sets"])
    # The pipeline's notes say which of its helpers were off (the evaluation's own choice: no anime tagger).
    metrics.update(app_metrics, app_photo_dirs=[str(d) for d in photo_dirs], app_pipeline_notes=pipeline.notes,
                   app_hair_classifier=None if pipeline.hair_classifier is None else str(hair_classifier))
    metrics.update(checkpoint=str(checkpoint), judge=str(judge), featnet=str(featnet),
                   second_judge=None if second_judge is None else str(second_judge),
                   resolution=model.config.resolution, seconds=time.time() - t0)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(metrics, indent=2) + "\n")
        grid = Path(grid) if grid else out.with_suffix(".png")
        comparison_grid(model, shown, grid)
        if photo_faces["faces"]:
            photos_figure(photo_faces["faces"], photos_figure_path(grid))
    return metrics


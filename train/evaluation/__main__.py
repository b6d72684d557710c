"""`python -m train.evaluation CHECKPOINT`: the evaluation's command line (the package doc says
what it measures)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from train import evaluation
from train.evaluation.app_outputs import APP_SIZE, photos_figure_path
from train.evaluation.checkpoint import EVAL_TAGGER, EVAL_TAGGER_RESIDUAL, FEATNET, evaluate_checkpoint
from train.evaluation.gates import GATES, format_table
from train.evaluation.model_outputs import TWO_SAMPLE_STEPS
from twingan.pipeline import DEFAULT_HAIR_CLASSIFIER

# Runs of the gated 128 px two-sample test: on the same portraits, one run's figure moved over 3-8
# points from seed to seed (several times its standard error), so the gate reads the mean of five.
APP_TWO_SAMPLE_SEEDS = 5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluation", description=evaluation.__doc__,
                                epilog="gates: " + ", ".join(f"{key} {d} {t:g}" for key, (d, t) in GATES.items()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="exported TwinGAN folder (config.json + model.safetensors)")
    p.add_argument("--data", default=None, help="data root (default $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--judge", default=str(EVAL_TAGGER), help="evaluation tagger (never the training one)")
    p.add_argument("--second-judge", default=str(EVAL_TAGGER_RESIDUAL),
                   help="evaluation tagger of another architecture; 'none' skips it")
    p.add_argument("--featnet", default=str(FEATNET), help="independent feature network for the FD")
    p.add_argument("--out", default=None, help="JSON file (default CHECKPOINT/eval.json)")
    p.add_argument("--grid", default=None, help="comparison grid PNG (default next to the JSON); the real photos' "
                   "faces and the app's portraits of them go beside it as GRID_photos.png (eval_photos.png)")
    p.add_argument("--photos", action="append", default=None, metavar="DIR",
                   help="folder of real photos of people for the app's portraits (repeat for more; "
                        "default: examples/ and DATA/photos/); every face the app finds counts")
    p.add_argument("--hair-classifier", default=str(DEFAULT_HAIR_CLASSIFIER),
                   help="the app's hair colour classifier ('keep my hair colour'); 'none': the model picks")
    p.add_argument("--limit", type=int, default=0,
                   help="quick checks: only this many test selfies and testB faces, 5x as many anime_tags faces")
    p.add_argument("--two-sample-steps", type=int, default=TWO_SAMPLE_STEPS,
                   help="training steps of the CNN of the two-sample test of the model's translations (0 skips it)")
    p.add_argument("--app-two-sample-steps", type=int, default=TWO_SAMPLE_STEPS,
                   help=f"training steps of the CNN of each of the three {APP_SIZE} px two-sample tests "
                        "(the app's portraits and its two calibrations; 0 skips them)")
    p.add_argument("--app-two-sample-seeds", type=int, default=APP_TWO_SAMPLE_SEEDS,
                   help="runs of the gated two-sample test of the app's portraits, each with its own seed; the "
                        "gate reads their mean (1: one run, as the calibrations)")
    p.add_argument("--quick", action="store_true", help="skip all two-sample tests (both step counts 0)")
    p.add_argument("--reverse", action="store_true",
                   help="also measure anime -> human (default: when the checkpoint's training.json says the run had reverse)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from twingan.checkpoint import CheckpointError

    out = Path(args.out) if args.out else Path(args.checkpoint) / "eval.json"
    try:
        metrics = evaluate_checkpoint(args.checkpoint, args.data, args.judge, args.featnet, args.limit, args.seed,
                                      0 if args.quick else args.two_sample_steps, out, args.grid,
                                      None if args.second_judge == "none" else args.second_judge, args.photos,
                                      0 if args.quick else args.app_two_sample_steps,
                                      None if args.hair_classifier == "none" else args.hair_classifier,
                                      reverse=True if args.reverse else None,
                                      app_two_sample_seeds=args.app_two_sample_seeds)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_table(metrics))
    grid = Path(args.grid) if args.grid else out.with_suffix(".png")
    written = [out, grid] + ([photos_figure_path(grid)] if metrics["app_photos_faces"] else [])
    print(f"\nwrote {', '.join(map(str, written))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

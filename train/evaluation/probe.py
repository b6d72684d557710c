"""What the 128 px two-sample test reads: the same test (`twingan.metrics.classifier_two_sample_test`,
the same portraits, reference half, steps and seed as `train.evaluation`) with both sides transformed
alike, each transform keeping one kind of evidence:

- `as shown`: nothing removed (the gated figure);
- `64 px`, `32 px`, `16 px`: both sides taken down to that side and back up, so detail finer than it
  cannot count;
- `greyscale`: colour removed, drawing and brightness kept;
- `shuffled pixels`: one fixed random permutation of the pixel positions, the same for every image, so
  only each image's colour histogram (and nothing of its drawing) is left.

With `--redraws`, one more row: the model asked to redraw the tagged faces of the other half of
the real anime test faces (anime -> anime, each face's own tags, shown as the app shows a portrait)
against the same reference: how far the generator's drawing alone is from real anime, whatever
the input domain. `--seeds N` reports each row as the mean of N runs with their own seeds.

    python -m train.evaluation.probe checkpoints/twingan-selfie2anime-128 --redraws --seeds 5

The portraits are the app's (`TranslationPipeline` at its default controls, the largest face of each
test selfie); the figures are noisy beyond their standard error, as every two-sample test's is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from train.evaluation.app_outputs import APP_SIZE, app_portraits, reference_halves, seeded_two_sample
from train.evaluation.model_outputs import TWO_SAMPLE_STEPS

PROBES = ("as shown", "64 px", "32 px", "16 px", "greyscale", "shuffled pixels")
REDRAWS = "the model's redraws of real anime (anime -> anime), not the portraits"


def probe_transform(name: str, images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """`images` (N, 3, H, W) in [0, 1] with the evidence of probe `name` (see the module doc) left."""
    from train.helpers.hair_report import greyscale, small_face

    if name == "as shown":
        return images
    if name.endswith(" px"):
        return small_face(images, int(name.split()[0]))
    if name == "greyscale":
        return greyscale(images)
    if name == "shuffled pixels":
        flat = images.flatten(2)
        order = torch.randperm(flat.shape[-1], generator=torch.Generator().manual_seed(seed))
        return flat[..., order].reshape(images.shape)
    raise ValueError(f"unknown probe {name!r}; choose from: {', '.join(PROBES)}")


def probe_two_sample(portraits: torch.Tensor, reference: torch.Tensor, probes=PROBES, steps: int = TWO_SAMPLE_STEPS,
                     seed: int = 0, seeds: int = 1) -> dict:
    """{probe: the two-sample test's result dict} for `portraits` against `reference` (as many of each
    as the smaller set has), both transformed by each probe; with `seeds` > 1 the mean of that many
    runs (seeds `seed`, `seed` + 1, ...; each run's accuracy under `seed_accuracies`)."""
    n = min(len(portraits), len(reference))
    return {name: seeded_two_sample(probe_transform(name, portraits[:n], seed), probe_transform(name, reference[:n], seed),
                                    steps, seed, seeds)
            for name in probes}


@torch.no_grad()
def anime_redraws(pipeline, anime: torch.Tensor, tags: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Real anime faces (N, 3, APP_SIZE, APP_SIZE) in [0, 1] redrawn by the pipeline's model (anime ->
    anime with `tags` (N, tag dim); NaN entries count as not set) through the same display path as
    its portraits (the upscaler, when loaded, to display size), taken back to APP_SIZE."""
    from twingan.layers import resize_square

    model, res = pipeline.model, pipeline.model.config.resolution
    tags = torch.nan_to_num(tags.float(), nan=0.0)
    out = []
    for x, t in zip(anime.split(chunk), tags.split(chunk)):
        x = resize_square(x, res).to(pipeline.device, pipeline.dtype)
        cond = t.to(pipeline.device, pipeline.dtype) if pipeline.conditioned else None
        drawn = model.translate(x, "anime", "anime", cond)
        shown = pipeline.super_resolve(drawn) if pipeline.upscaler is not None else drawn
        out.append(resize_square(shown.float().cpu(), APP_SIZE).clamp(0, 1))
    return torch.cat(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluation.probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="exported TwinGAN folder (config.json + model.safetensors)")
    p.add_argument("--data", default=None, help="data root (default $TWINGAN_DATA or ../shared/data)")
    p.add_argument("--probe", action="append", choices=PROBES, default=None, help="run only these (repeat)")
    p.add_argument("--steps", type=int, default=TWO_SAMPLE_STEPS, help="training steps of each test's CNN")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=1, help="runs of each test, each with its own seed; the mean is shown")
    p.add_argument("--redraws", action="store_true",
                   help="also test the model's anime -> anime redraws of the other real anime half (as shown)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the results to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from train.config import default_data_root
    from train.evaluation.data import load_test_sets
    from twingan.checkpoint import CheckpointError
    from twingan.pipeline import TranslationPipeline

    data = Path(args.data or default_data_root())
    try:
        pipeline = TranslationPipeline.load(args.checkpoint, device="cpu", tagger=None)
        sets = load_test_sets(data, pipeline.model.config.resolution, pipeline.vocab, app_size=APP_SIZE)
    except (CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    portraits = app_portraits(pipeline, sets["selfie_files"], all_faces=False)["anime"]
    reference, other = reference_halves(sets["anime_app"], args.seed)
    if min(len(portraits), len(reference)) < 4:
        print(f"error: too few images for the test ({len(portraits)} portraits)", file=sys.stderr)
        return 2
    results = probe_two_sample(portraits, reference, args.probe or PROBES, args.steps, args.seed, args.seeds)
    if args.redraws:
        # The tagged faces only: without its colours the model draws a face it was never asked for.
        other_tags = reference_halves(sets["anime_tags"], args.seed)[1]
        tagged = ~torch.isnan(other_tags).any(1)
        n = min(len(portraits), int(tagged.sum()))
        if n >= 4:
            redrawn = anime_redraws(pipeline, other[tagged][:n], other_tags[tagged][:n])
            results[REDRAWS] = probe_two_sample(redrawn, reference, ["as shown"], args.steps, args.seed,
                                                args.seeds)["as shown"]
        else:
            print(f"--redraws: only {n} tagged real anime faces in the other half, too few for the test",
                  file=sys.stderr)
    print("| both sides | told apart (50% = indistinguishable) |\n|---|---|")
    for name, r in results.items():
        runs = r.get("seed_accuracies", [])
        each = f" (runs: {', '.join(f'{100 * a:.1f}%' for a in runs)})" if len(runs) > 1 else ""
        print(f"| {name} | {100 * r['accuracy']:.1f}% +- {100 * r['stderr']:.1f}{each} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"checkpoint": str(args.checkpoint), "probes": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the user sees: the app's portraits (`twingan.pipeline.TranslationPipeline`) of the test
selfies and of real photos, their sharpness ratio and 128 px two-sample test with calibrations
(`evaluate_app`), and the photos' figure."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from train.evaluation.model_outputs import TWO_SAMPLE_STEPS

APP_SIZE = 128  # px: the app's portraits and the real anime are compared at this size (its display shows 256)
SHARPNESS_BLURS = (64, 32)  # px: real anime taken down to these and back up calibrate the sharpness ratio
TWO_SAMPLE_BLUR = 64  # px: real anime taken down to this and back up calibrate the 128 px two-sample test



@torch.no_grad()
def app_portraits(pipeline, photos: list, all_faces: bool, size: int = APP_SIZE,
                  colours: list[tuple[str, str]] | None = None) -> dict:
    """The portraits the app shows for `photos` (paths or PIL images): `pipeline.translate` at the
    app's default controls (or, with `colours`, asked for the (hair, eye) colour pair given for each
    photo), `faces[0]` (the largest face) of each photo, or every face it returns when `all_faces`.
    Returns {"anime": (M, 3, size, size) in [0, 1], the portraits resized to `size` (antialiased),
    "photo": (M,) the index of each one's photo, "faces": the M FaceResults (display size images),
    "failed": {photo index: the app's message} for the photos it returns no portrait for (no face
    found, or an image it refuses)}."""
    from torchvision.transforms.functional import to_tensor

    from twingan.images import ImageError
    from twingan.layers import resize_square
    from twingan.pipeline import AUTO

    anime, owner, faces, failed = [], [], [], {}
    for i, photo in enumerate(photos):
        try:
            hair, eye = colours[i] if colours is not None else (pipeline.default_hair, AUTO)
            result = pipeline.translate(photo, hair=hair, eye=eye)
        except ImageError as err:  # NoFaceError is one; the app shows the user this message
            failed[i] = str(err)
            continue
        for face in result.faces if all_faces else result.faces[:1]:
            anime.append(resize_square(to_tensor(face.anime.convert("RGB"))[None], size)[0].clamp(0, 1))
            owner.append(i)
            faces.append(face)
    return {"anime": torch.stack(anime) if anime else torch.zeros(0, 3, size, size),
            "photo": torch.tensor(owner, dtype=torch.long), "faces": faces, "failed": failed}


def sharpness_with_stderr(images: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """`twingan.metrics.sharpness_ratio` of `images` against `reference`, and its standard error over
    the images (the reference's mean taken as exact); NaN for fewer than 2 images."""
    from twingan.metrics import high_band_magnitude

    if len(images) < 2:
        return float("nan"), float("nan")
    # Each image's share of the reference's mean: their mean is `sharpness_ratio`, spectra taken once.
    per_image = high_band_magnitude(images, APP_SIZE) / high_band_magnitude(reference, APP_SIZE).mean().clamp_min(1e-12)
    return per_image.mean().item(), (per_image.std() / len(images) ** 0.5).item()


def reference_halves(anime: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The real anime faces split in two seeded halves: (the reference, the other half)."""
    perm = torch.randperm(len(anime), generator=torch.Generator().manual_seed(seed))
    return anime[perm[: len(anime) // 2]], anime[perm[len(anime) // 2:]]


def evaluate_app(pipeline, selfie_files: list, photos: list, anime: torch.Tensor, seed: int = 0,
                 two_sample_steps: int = TWO_SAMPLE_STEPS, calibrate: bool = True,
                 anime_colours: list[tuple[str, str]] | None = None, two_sample_seeds: int = 1,
                 anime_sets: dict[str, int] | None = None) -> tuple[dict, dict]:
    """Metrics of the app's portraits (`app_portraits`) of the test selfies (`selfie_files`) and of the
    real `photos`, against the real anime test faces `anime` (N, 3, APP_SIZE, APP_SIZE), and the
    portraits of the photos (for `photos_figure`).

    The real anime is split in two seeded halves: the reference, and the other half for the
    calibrations (the same distribution as the reference; taken down and back up). Every two-sample
    test uses as many images per side as the portraits of the test selfies (at most half the anime),
    `two_sample_steps` steps (0 skips them) and the same seed; it needs 4 portraits per side. The gated
    test runs `two_sample_seeds` times (seeds `seed`, `seed` + 1, ...: other halves to train on, another
    CNN) on the same portraits and reports the mean (its standard error: the mean of the runs'), as
    one run's figure moves by several times its standard error from seed to seed.
    With the pipeline's anime upscaler, one more calibration (`app_two_sample_real_64px_upscaler_*`)
    takes the other half of the real anime to 64 px and back up through the upscaler as the app shows
    portraits (`through_upscaler`): what the test would read of a translator that drew real anime at 64 px.
    `calibrate=False` runs only the gated two-sample test (its calibrations cost twice as much again).
    With `anime_colours` ((hair, eye) names, one per test selfie, drawn from real anime tags) and
    `calibrate`, one more test (`app_two_sample_anime_colours_*`) scores portraits asked for those
    colours: how much of the gap is the colours the app's defaults pick (the person's own hair,
    mostly dark, against the bright hair of real anime), how much the drawing. With `anime_sets`
    (the number of faces of each real anime data set in `anime`, in order) and `calibrate`, one more
    (`app_two_sample_anime_sets_*`, as many runs as the gated test) tells the first two sets apart: how
    far the test reads two real anime data sets from each other.
    """
    from train.helpers.hair_report import small_face  # down to a side (antialiased), back up bicubic
    from twingan.metrics import sharpness_ratio

    if len(anime) < 4 or anime.shape[-1] != APP_SIZE:
        raise ValueError(f"need >= 4 real anime faces at {APP_SIZE} px, got {tuple(anime.shape)}")
    reference, other = reference_halves(anime, seed)
    selfies = app_portraits(pipeline, selfie_files, all_faces=False)
    shown = app_portraits(pipeline, photos, all_faces=True)
    out = {"app_size": APP_SIZE, "app_reference_n": len(reference), "app_selfies_n": len(selfie_files),
           "app_selfies_detected": len(selfies["anime"]),
           "app_selfies_failed": {_name(selfie_files[i], i): why for i, why in selfies["failed"].items()},
           "app_photos_n": len(photos), "app_photos_faces": len(shown["anime"]),
           "app_photos_failed": {_name(photos[i], i): why for i, why in shown["failed"].items()},
           "app_photos_faces_per_photo": {_name(photo, i): int((shown["photo"] == i).sum()) for i, photo in enumerate(photos)}}
    for name, portraits in (("", selfies["anime"]), ("_photos", shown["anime"])):
        out[f"app_sharpness_ratio{name}"], out[f"app_sharpness_ratio{name}_stderr"] = sharpness_with_stderr(
            portraits, reference)
    out["sharpness_ratio_anime_halves"] = sharpness_ratio(other, reference, APP_SIZE)
    for side in SHARPNESS_BLURS:
        out[f"sharpness_ratio_anime_{side}px"] = sharpness_ratio(small_face(other, side), reference, APP_SIZE)
    n = min(len(selfies["anime"]), len(reference), len(other))
    if two_sample_steps > 0 and n < 4:
        out["app_two_sample_accuracy"] = float("nan")  # too few portraits: the gate fails, and says why
        out["app_two_sample_skipped"] = f"only {n} portraits of test selfies"
    elif two_sample_steps > 0:
        t0 = time.time()
        tests = [("", selfies["anime"][:n])]
        if calibrate:
            tests += [("_real", other[:n]), (f"_real_{TWO_SAMPLE_BLUR}px", small_face(other[:n], TWO_SAMPLE_BLUR))]
            if pipeline.upscaler is not None:
                tests += [(f"_real_{TWO_SAMPLE_BLUR}px_upscaler", through_upscaler(pipeline, other[:n], TWO_SAMPLE_BLUR))]
            if anime_colours is not None:
                asked = app_portraits(pipeline, selfie_files, all_faces=False, colours=anime_colours)["anime"][:n]
                tests += [("_anime_colours", asked)] if len(asked) >= 4 else []
        for suffix, images in tests:
            test = seeded_two_sample(images, reference[:n], two_sample_steps, seed, 1 if suffix else two_sample_seeds)
            out.update({f"app_two_sample{suffix}_{k}": v for k, v in test.items()})
        sets = list(split_sets(anime, anime_sets, seed).items())[:2] if calibrate and anime_sets else []
        if len(sets) == 2 and min(len(images) for _, images in sets) >= 4:
            (name_a, a), (name_b, b) = sets
            n_sets = min(len(a), len(b), n)
            test = seeded_two_sample(a[:n_sets], b[:n_sets], two_sample_steps, seed, two_sample_seeds)
            out.update({f"app_two_sample_anime_sets_{k}": v for k, v in test.items()}, app_two_sample_anime_sets=[name_a, name_b])
        out["app_two_sample_seconds"] = time.time() - t0
    return out, shown


def through_upscaler(pipeline, anime: torch.Tensor, side: int) -> torch.Tensor:
    """`anime` (N, 3, H, W) in [0, 1] taken down to `side` px (antialiased), then to display size by the
    pipeline's anime upscaler (`TranslationPipeline.super_resolve`, as the portraits) and to APP_SIZE
    (antialiased, as `app_portraits` takes them); (N, 3, APP_SIZE, APP_SIZE) on the CPU."""
    from twingan.layers import resize_square

    shown = [pipeline.super_resolve(resize_square(batch, side).to(pipeline.device, pipeline.dtype)).float().cpu()
             for batch in anime.split(64)]
    return resize_square(torch.cat(shown), APP_SIZE).clamp(0, 1)


def split_sets(anime: torch.Tensor, sizes: dict[str, int], seed: int = 0) -> dict[str, torch.Tensor]:
    """The faces of each data set in `anime` (`sizes`: how many of each, in order), each set in a
    seeded random order."""
    if sum(sizes.values()) != len(anime):
        raise ValueError(f"the sets' sizes {sizes} do not add up to the {len(anime)} faces")
    g = torch.Generator().manual_seed(seed)
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = anime[start:start + size][torch.randperm(size, generator=g)]
        start += size
    return out


def seeded_two_sample(a: torch.Tensor, b: torch.Tensor, steps: int, seed: int = 0, seeds: int = 1) -> dict:
    """`classifier_two_sample_test` of `a` against `b` at APP_SIZE, run `seeds` times (seeds `seed`,
    `seed` + 1, ...): one run's dict, or the first run's with the mean accuracies and standard error,
    each run's accuracy under `seed_accuracies`."""
    from twingan.metrics import classifier_two_sample_test

    runs = [classifier_two_sample_test(a, b, steps=steps, seed=seed + k, resolution=APP_SIZE) for k in range(max(1, seeds))]
    if len(runs) == 1:
        return runs[0]
    mean = {k: sum(r[k] for r in runs) / len(runs) for k in ("accuracy", "accuracy_a", "accuracy_b", "stderr")}
    return {**runs[0], **mean, "seed_accuracies": [r["accuracy"] for r in runs]}


def _name(photo, i: int) -> str:
    """A photo's file name, for the JSON; "image i" for the i-th photo when it was given in memory."""
    return Path(photo).name if isinstance(photo, (str, Path)) else f"image {i}"


def photos_figure(faces: list, path: Path, size: int = 256, per_row: int = 4) -> Path:
    """Each face crop beside its portrait, as the app returns them (FaceResult.crop and .anime),
    at `size` px (display size), `per_row` pairs to a row."""
    from torchvision.transforms.functional import to_tensor
    from torchvision.utils import save_image

    from twingan.layers import resize_square

    if not faces:
        raise ValueError("no faces to show")
    tiles = [resize_square(to_tensor(im.convert("RGB"))[None], size)[0].clamp(0, 1)
             for face in faces for im in (face.crop, face.anime)]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.stack(tiles), path, nrow=2 * min(per_row, len(faces)), padding=4, pad_value=1.0)
    return path


def photos_figure_path(grid: Path) -> Path:
    """Where the photos' portraits go: beside the comparison grid (eval.png -> eval_photos.png)."""
    return grid.with_name(f"{grid.stem}_photos.png")


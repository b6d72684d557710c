"""The anime upscaler: the model, its degradations and training CLI, the pipeline with and without it,
and the shipped checkpoint. CPU, seconds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ASTRONAUT, data_root
from samples import webcam_frame, write_smooth_images
from train.data import decode_images
from train.helpers import upscaler as train_upscaler
from train.helpers.upscaler import Degradation, clean_input, degrade, downsample, load_faces
from twingan.checkpoint import load_pretrained, save_pretrained
from twingan.pipeline import AUTO, DEFAULT_UPSCALER, TranslationPipeline
from twingan.upscaler import AnimeUpscaler, UpscalerConfig
from twingan.vocab import BINARY_TAGS

TINY = UpscalerConfig(channels=8, blocks=1)


def randomised(config: UpscalerConfig = TINY, seed: int = 0) -> AnimeUpscaler:
    """An upscaler whose last conv is not zero, so its output is not plain bicubic."""
    torch.manual_seed(seed)
    model = AnimeUpscaler(config)
    torch.nn.init.normal_(model.tail.weight, std=0.05)
    return model.eval()


# --- model --------------------------------------------------------------------------------------

def test_doubles_the_side_in_range_and_starts_as_bicubic():
    x = torch.rand(2, 3, 16, 24)
    untrained = AnimeUpscaler(TINY).eval()
    out = untrained.upscale(x)
    assert out.shape == (2, 3, 32, 48)
    bicubic = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.equal(out, bicubic)  # the zero-initialised last conv adds nothing
    out = randomised().upscale(x)
    assert out.min() >= 0 and out.max() <= 1 and not torch.equal(out, bicubic)


def test_bad_inputs_are_named():
    model = AnimeUpscaler(TINY)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 16, 16))
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.rand(1, 3, 15, 16))
    with pytest.raises(ValueError, match="blocks >= 0"):
        AnimeUpscaler(UpscalerConfig(blocks=-1))


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    model = randomised()
    save_pretrained(model, tmp_path / "up")
    again = load_pretrained(AnimeUpscaler, tmp_path / "up")
    assert again.config == model.config
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(again.upscale(x), model.upscale(x))
    half = load_pretrained(AnimeUpscaler, save_pretrained(model, tmp_path / "fp16", torch.float16))
    assert (half.upscale(x) - model.upscale(x)).abs().max() < 1e-2


# --- degradations -------------------------------------------------------------------------------

def test_degradations_halve_the_side_are_seeded_and_clean_means_bicubic():
    hr = torch.rand(6, 3, 32, 32)
    a = degrade(hr, torch.Generator().manual_seed(3))
    b = degrade(hr, torch.Generator().manual_seed(3))
    assert a.shape == (6, 3, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    clean = degrade(hr, torch.Generator().manual_seed(3), Degradation(clean=1.0))
    assert torch.allclose(clean, downsample(hr, "bicubic").clamp(0, 1))
    assert (a - clean).abs().mean() > 0.01
    assert torch.allclose(clean_input(hr) * 255, (clean_input(hr) * 255).round())  # 8-bit, as a saved image


# --- training CLI -------------------------------------------------------------------------------

def write_tiny_data(root, n_train: int = 12, n_test: int = 4) -> None:
    """The data layout the trainer reads: anime_tags (images + tags.csv) and selfie2anime/trainB, testB."""
    names = write_smooth_images(root / "anime_tags" / "images", n_train + n_test, 128, seed=0)
    with (root / "anime_tags" / "tags.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "split", "hair_color", "eye_color", *BINARY_TAGS])
        for i, name in enumerate(names):
            w.writerow([name, "train" if i < n_train else "test", "", "", *[0] * len(BINARY_TAGS)])
    write_smooth_images(root / "selfie2anime" / "trainB", n_train, 128, seed=1)
    write_smooth_images(root / "selfie2anime" / "testB", n_test, 128, seed=2)


def test_training_lowers_the_loss_on_a_fixed_batch(tmp_path):
    write_tiny_data(tmp_path / "data")
    folder = tmp_path / "data" / "anime_tags" / "images"
    images, _, _ = decode_images(folder, sorted(p.name for p in folder.iterdir()), 128)
    # Noise only: what the network can learn in a few steps (smooth images barely blur).
    noisy = Degradation(clean=0.0, blur=0.0, blotches=0.0, noise=1.0, noise_sigma=(0.05, 0.05), jpeg=0.0)
    hr = images[:8].float() / 255
    lr = degrade(hr, torch.Generator().manual_seed(5), noisy)
    torch.manual_seed(0)
    model = AnimeUpscaler(TINY)
    with torch.no_grad():
        before = F.l1_loss(model(lr), hr).item()
    args = train_upscaler.parse_args([str(tmp_path), "--out", str(tmp_path / "unused"), "--steps", "60",
                                      "--batch-size", "8", "--patch", "32", "--lr", "5e-3", "--no-progress"])
    run = train_upscaler.train_upscaler(model, images, args, noisy)
    with torch.no_grad():
        after = F.l1_loss(model(lr), hr).item()
    assert run["steps"] == 60 and after < 0.85 * before, (before, after)


def test_training_cli_writes_a_loadable_checkpoint_and_its_report(tmp_path):
    write_tiny_data(tmp_path / "data")
    out = tmp_path / "up"
    argv = [str(tmp_path / "data"), "--out", str(out), "--steps", "20", "--batch-size", "4", "--patch", "32",
            "--channels", "8", "--blocks", "1", "--log-every", "10", "--no-progress"]
    report = train_upscaler.main(argv)
    assert report["steps"] == 20 and [step for step, _ in report["loss_curve"]] == [10, 20]
    assert report["n_train"] == {"anime_tags train": 12, "selfie2anime/trainB": 12}
    assert report["n_test"] == {"anime_tags test": 4, "selfie2anime/testB": 4}
    for kind in ("clean", "degraded"):
        assert set(report["held_out"][kind]["psnr_db"]) == {"upscaler", "bicubic"}
        assert 0 < report["held_out"][kind]["sharpness_ratio"]["bicubic"] < 2
    assert json.loads((out / "report.json").read_text())["steps"] == 20
    card = (out / "README.md").read_text()
    assert "python -m train.helpers.upscaler " + " ".join(argv) in card and "third-party" in card
    model = load_pretrained(AnimeUpscaler, out)
    assert model.config == UpscalerConfig(channels=8, blocks=1)
    assert next(iter(model.state_dict().values())).dtype == torch.float32  # fp16 file, fp32 model


def test_missing_data_is_a_clear_error(tmp_path):
    with pytest.raises(train_upscaler.DataError, match="tags CSV not found"):
        train_upscaler.main([str(tmp_path), "--out", str(tmp_path / "up"), "--steps", "1"])


# --- pipeline -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pipelines(tiny_checkpoints, tmp_path_factory):
    """The tiny TwinGAN (32 px) with the tiny upscaler, and with a missing one."""
    common = dict(device="cpu", tagger=None, hair_classifier=None)
    return (TranslationPipeline.load(tiny_checkpoints.twingan, upscaler=tiny_checkpoints.upscaler, **common),
            TranslationPipeline.load(tiny_checkpoints.twingan, upscaler=tmp_path_factory.mktemp("x") / "none",
                                     **common))


def test_pipeline_portraits_go_through_the_upscaler_to_display_size(pipelines):
    on, missing = pipelines
    sharpened = on.translate(ASTRONAUT, AUTO).faces[0]
    resized = on.translate(ASTRONAUT, AUTO, upscale=False).faces[0]
    assert sharpened.anime.size == resized.anime.size == (256, 256) and sharpened.anime_raw.size == (32, 32)
    assert np.abs(np.asarray(sharpened.anime, np.float32) - np.asarray(resized.anime, np.float32)).mean() > 0.5
    # Without an upscaler checkpoint: a note, and the portraits are resized as before.
    assert missing.upscaler is None and any("anime upscaler is off" in n for n in missing.notes)
    assert np.array_equal(np.asarray(missing.translate(ASTRONAUT, AUTO).faces[0].anime), np.asarray(resized.anime))


def test_upscaler_passes_overshoot_then_resize_down(pipelines):
    on, _ = pipelines
    x = torch.rand(2, 3, 32, 32)
    on.display_size = 100  # 32 -> 64 -> 128, then down to 100
    try:
        assert on.super_resolve(x).shape == (2, 3, 100, 100)
    finally:
        on.display_size = 256
    assert on.super_resolve(x).shape == (2, 3, 256, 256)


def test_live_mode_leaves_the_upscaler_off_by_default(pipelines):
    on, _ = pipelines
    frame = np.asarray(webcam_frame())
    default, _ = on.translate_frame(frame, AUTO)
    off, _ = on.translate_frame(frame, AUTO, upscale=False)
    sharpened, _ = on.translate_frame(frame, AUTO, upscale=True)
    assert np.array_equal(np.asarray(default), np.asarray(off))
    assert not np.array_equal(np.asarray(default), np.asarray(sharpened))


# --- the shipped checkpoint ---------------------------------------------------------------------

def test_shipped_upscaler_is_small_and_loads():
    if not DEFAULT_UPSCALER.is_dir():
        pytest.skip(f"no shipped upscaler at {DEFAULT_UPSCALER}")
    assert (DEFAULT_UPSCALER / "model.safetensors").stat().st_size < 2_000_000
    model = load_pretrained(AnimeUpscaler, DEFAULT_UPSCALER)
    assert model.upscale(torch.rand(1, 3, 64, 64)).shape == (1, 3, 128, 128)


def test_shipped_upscaler_beats_bicubic_on_held_out_anime_faces():
    root = data_root()
    if not (root / "anime_tags" / "tags.csv").is_file():
        pytest.skip(f"shared data not found at {root} (set TWINGAN_DATA)")
    if not DEFAULT_UPSCALER.is_dir():
        pytest.skip(f"no shipped upscaler at {DEFAULT_UPSCALER}")
    faces, _, _ = load_faces(root, held_out=True, limit=16)
    hr = faces.float() / 255
    lr = clean_input(hr)
    model = load_pretrained(AnimeUpscaler, DEFAULT_UPSCALER)
    bicubic = F.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    assert train_upscaler.psnr(model.upscale(lr), hr).mean() > train_upscaler.psnr(bicubic, hr).mean()

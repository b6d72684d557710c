"""Training package tests: tiny generated data in tmp_path, CPU, seconds each."""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samples import write_smooth_images
from train.config import ConfigError, load_config
from train.data import DataError, EpochSampler, balance_repeats
from train.domains import load_domains
from train.engine import Trainer, stage_at
from train.loop import describe, export_now
from twingan.checkpoint import load_pretrained
from twingan.model import TwinGAN
from twingan.vocab import BINARY_TAGS, DEFAULT_VOCAB

REPO = Path(__file__).resolve().parent.parent



@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_data(tmp_path_factory.mktemp("data"))


def write_data(root: Path) -> Path:
    """16 human images (20 px) and 16 tagged anime images (16 px) under root."""
    write_smooth_images(root / "human", 16, 20, seed=1)  # non-square sources are cropped; 20 px exercises resizing
    names = write_smooth_images(root / "anime" / "images", 16, 16, seed=2)
    with (root / "anime" / "tags.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "split", "hair_color", "eye_color", *BINARY_TAGS])
        for i, name in enumerate(names):
            w.writerow([name, "train", DEFAULT_VOCAB.hair[i % 12], DEFAULT_VOCAB.eye[i % 10],
                        *[(i + j) % 2 for j in range(len(BINARY_TAGS))]])
    return root


TINY_MODEL = {"resolution": 16, "base_channels": 32, "max_channels": 16, "norm": "instance",
              "pixel_norm": False, "tag_embed_dim": 8}


def tiny_overrides(root: Path, run: Path, **extra) -> list[str]:
    values = {
        "data_root": str(root), "run_dir": str(run),
        "model": TINY_MODEL,
        "source_dirs": ["human"], "source_attributes_csv": "", "source_attributes_images": "",
        "target_dirs": [], "target_tags_csv": "anime/tags.csv", "target_tags_images": "anime/images",
        "batch_size": 4, "start_resolution": 16, "stage_images": [1000], "total_images": 10**6,
        "w_tagger": 0.0, "w_tagger_features": 0.0, "gp": "r1", "gp_weight": 0.1, "gp_every": 2, "augment": False, "threads": 1,
        "lr": 0.002, "log_every": 1000, "sample_every": 1000, "checkpoint_every": 1000, "num_samples": 4,
    }
    values.update(extra)
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


def make_trainer(root: Path, run: Path, **extra) -> Trainer:
    cfg = load_config(None, tiny_overrides(root, run, **extra))
    torch.set_num_threads(1)
    source, target = load_domains(cfg, workers=1)
    return Trainer(cfg, source, target)


def test_recon_loss_goes_down(data_root, tmp_path):
    # The whole tiny set is one batch, so the loss is comparable from step to step.
    trainer = make_trainer(data_root, tmp_path / "run", batch_size=16, w_gan=0.0, w_tag_d=0.0, w_latent=0.0)
    recon = [trainer.step()["recon"] for _ in range(25)]
    assert sum(recon[-5:]) / 5 < 0.9 * sum(recon[:5]) / 5, recon


def test_cycle_loss_is_trained(data_root, tmp_path):
    # Only the cycle term (both directions) drives G: it must fall, so it is wired into G's loss.
    trainer = make_trainer(data_root, tmp_path / "run", batch_size=16, w_gan=0.0, w_tag_d=0.0, w_latent=0.0,
                           w_recon=0.0, w_cycle=1.0, reverse=True)
    logs = [trainer.step() for _ in range(25)]
    for key in ("cycle", "cycle_rev"):
        cycle = [log[key] for log in logs]
        assert sum(cycle[-5:]) / 5 < 0.95 * sum(cycle[:5]) / 5, (key, cycle)


@pytest.mark.parametrize("weight,key", [
    ("w_align", "align"),  # human encodings must move towards the anime ones at every level
    ("w_shift", "shift"),  # translations of shifted inputs must come to match shifted translations
])
def test_alignment_and_shift_losses_are_trained(data_root, tmp_path, weight, key):
    # Only this term drives G, so it must fall.
    trainer = make_trainer(data_root, tmp_path / "run", batch_size=16, w_gan=0.0, w_tag_d=0.0, w_latent=0.0,
                           w_recon=0.0, **{weight: 1.0}, model={**TINY_MODEL, "skip_resolutions": [8]})
    logs = [trainer.step() for _ in range(25)]
    values = [log[key] for log in logs]
    assert sum(values[-5:]) / 5 < 0.8 * sum(values[:5]) / 5, values


def test_eye_colour_loss_is_trained(data_root, tmp_path, monkeypatch):
    # The generated faces have no eyes a detector finds: every source image gets the same two points.
    points = torch.tensor([[0.35, 0.4], [0.65, 0.4]])
    monkeypatch.setattr("train.eyes.locate_eyes", lambda images: (points.expand(len(images), 2, 2).clone(), 0))
    trainer = make_trainer(data_root, tmp_path / "run", batch_size=16, w_gan=0.0, w_tag_d=0.0, w_latent=0.0,
                           w_recon=0.0, w_eye_colour=1.0, augment=True)
    assert (tmp_path / "run" / "source_eyes.pt").is_file()  # kept with the run for a resume
    values = [trainer.step()["eye_colour"] for _ in range(40)]  # each step asks for other colours: noisy
    assert sum(values[-10:]) / 10 < 0.8 * sum(values[:10]) / 10, values


def test_alignment_reads_the_latent_and_the_used_skips_only():
    from train.step_helpers import read_levels
    from twingan.config import TwinGANConfig

    config = TwinGANConfig(resolution=32, skip_resolutions=(8,))
    latent, skips = torch.zeros(2, 4, 4, 4), {8: torch.ones(2, 4, 8, 8), 16: torch.ones(2, 4, 16, 16),
                                              32: torch.ones(2, 4, 32, 32)}
    levels = read_levels(latent, skips, config)
    assert [t.shape[-1] for t in levels] == [4, 8]


def test_wider_discriminator(data_root, tmp_path):
    trainer = make_trainer(data_root, tmp_path / "run", d_width=2.0)
    narrow = make_trainer(data_root, tmp_path / "run2")
    assert sum(p.numel() for p in trainer.d_target.parameters()) > \
        3 * sum(p.numel() for p in narrow.d_target.parameters())
    assert sum(p.numel() for p in trainer.model.parameters()) == sum(p.numel() for p in narrow.model.parameters())
    assert all(math.isfinite(v) for v in trainer.step().values())  # a step runs and gives finite losses


# The losses of the first steps of two tiny runs that switch on every loss term (distinct weights, so
# a term under the wrong weight shows), recorded with the code before Trainer.step was split into a
# discriminator loss and a generator loss: the split, and any later tidying, must not change them.
GOLDEN_STEPS = 3
GOLDEN_RECIPES = {
    "all_terms": dict(augment=True, gp="dragan", gp_every=1, reverse=True, gan_recon_from=16, w_gan_recon=0.7,
                      w_recon=1.3, w_gan=0.9, w_latent=0.2, w_cycle=0.6, w_tag_d=0.8, w_align=0.5, w_tagger=0.4,
                      w_tagger_features=0.3, d_width=1.5, model={**TINY_MODEL, "skip_resolutions": [8]}),
    "recon_gan_one_way": dict(reverse=False, gan_recon_from=16, w_gan_recon=0.7, gp="r1", gp_every=2, w_cycle=0.6,
                              w_latent=0.2),
}
GOLDEN = {
    'all_terms': [
        {'align': 0.9401087760925293, 'cycle': 0.2474646419286728, 'cycle_rev': 0.20531077682971954,
         'd_gan': 1.38812255859375, 'd_gan_rev': 1.3864457607269287, 'd_tag': 5.113435745239258,
         'd_total': 8.495363235473633, 'g_gan': 0.6541454792022705, 'g_gan_rev': 0.6836066246032715,
         'g_tag': 4.7469353675842285, 'g_tagger': 4.840376377105713, 'g_tagger_features': 1.195258617401123,
         'g_total': 9.228208541870117, 'gp': 1.9999974966049194, 'latent': 0.3351758122444153,
         'recon': 0.45216500759124756},
        {'align': 0.7551063299179077, 'cycle': 0.22903405129909515, 'cycle_rev': 0.21022088825702667,
         'd_gan': 1.387877345085144, 'd_gan_rev': 1.386385440826416, 'd_tag': 5.186673164367676,
         'd_total': 8.550525665283203, 'g_gan': 0.6588537693023682, 'g_gan_rev': 0.6878551244735718,
         'g_tag': 4.788656234741211, 'g_tagger': 4.7765069007873535, 'g_tagger_features': 1.3741843700408936,
         'g_total': 9.169161796569824, 'gp': 1.999995231628418, 'latent': 0.28990402817726135,
         'recon': 0.4399788975715637},
        {'align': 0.5100160837173462, 'cycle': 0.19569702446460724, 'cycle_rev': 0.20268619060516357,
         'd_gan': 1.3875133991241455, 'd_gan_rev': 1.3863208293914795, 'd_tag': 5.1164045333862305,
         'd_total': 8.488777160644531, 'g_gan': 0.664980947971344, 'g_gan_rev': 0.6925454139709473,
         'g_tag': 4.741468906402588, 'g_tagger': 4.815432548522949, 'g_tagger_features': 1.0955407619476318,
         'g_total': 8.856648445129395, 'gp': 1.9999878406524658, 'latent': 0.24815011024475098,
         'recon': 0.3976917266845703},
    ],
    'recon_gan_one_way': [
        {'cycle': 0.22484856843948364, 'd_gan': 1.387795090675354, 'd_tag': 5.287040710449219,
         'd_total': 8.023877143859863, 'g_gan': 0.7348990440368652, 'g_tag': 4.64843225479126,
         'g_total': 6.499261379241943, 'gp': 1.3449592324186674e-14, 'latent': 0.34084492921829224,
         'recon': 0.40031081438064575},
        {'cycle': 0.20247924327850342, 'd_gan': 1.3879680633544922, 'd_tag': 5.185229301452637,
         'd_total': 7.920051574707031, 'g_gan': 0.7380051612854004, 'g_tag': 4.795460224151611,
         'g_total': 6.599625110626221, 'latent': 0.29626452922821045, 'recon': 0.37302374839782715},
        {'cycle': 0.1740390509366989, 'd_gan': 1.3882203102111816, 'd_tag': 5.126181125640869,
         'd_total': 7.858285903930664, 'g_gan': 0.7421448826789856, 'g_tag': 4.855734348297119,
         'g_total': 6.640491962432861, 'gp': 1.8189246495711048e-14, 'latent': 0.2809775471687317,
         'recon': 0.3696420192718506},
    ],
}


def golden_trainer(root: Path, tmp: Path, recipe: str) -> Trainer:
    """A trainer for GOLDEN_RECIPES[recipe], with a small random frozen tagger."""
    from twingan.checkpoint import save_pretrained
    from twingan.tagger import Tagger, TaggerConfig

    torch.manual_seed(123)
    save_pretrained(Tagger(TaggerConfig(resolution=16, channels=(8, 16), feature_dim=8)), tmp / "tagger")
    return make_trainer(root, tmp / "run", tagger=str(tmp / "tagger"), **GOLDEN_RECIPES[recipe])


@pytest.mark.parametrize("recipe", sorted(GOLDEN_RECIPES))
def test_step_losses_match_the_recorded_run(data_root, tmp_path, recipe):
    trainer = golden_trainer(data_root, tmp_path, recipe)
    for expected in GOLDEN[recipe]:
        got = trainer.step()
        assert got.keys() == expected.keys()
        # A tolerance for other CPUs' float rounding (one machine read the third step's latent term 1.3e-4
        # off the record); a changed term moves far more.
        for k in got:
            assert got[k] == pytest.approx(expected[k], rel=5e-4, abs=1e-6), (recipe, k, got, expected)


def test_tagger_eye_weight_scales_the_eye_term_only(data_root, tmp_path):
    # The first step's generator terms are computed before any generator update, so two runs that differ
    # only in w_tagger_eye log the same terms but g_tagger, which loses its eye cross-entropy.
    both = golden_trainer(data_root, tmp_path / "a", "all_terms").step()
    trainer = golden_trainer(data_root, tmp_path / "b", "all_terms")
    trainer.cfg.w_tagger_eye = 0.0
    hair_only = trainer.step()
    assert hair_only["g_tagger"] < both["g_tagger"] - 0.1
    for k in both:
        if k not in ("g_tagger", "g_total"):
            assert hair_only[k] == pytest.approx(both[k], rel=1e-5), k


def test_a_step_where_no_translation_asks_for_a_hair_colour_trains_without_the_tagger_hair_term(data_root, tmp_path):
    trainer = golden_trainer(data_root, tmp_path, "all_terms")
    trainer.cfg.w_tagger_eye, trainer.cfg.auto_hair_prob = 0.0, 1.0
    logs = trainer.step()
    assert logs["g_tagger"] == 0.0  # only the hair term was left, and no row asked for a hair colour
    assert all(math.isfinite(v) for v in logs.values()), logs


def test_a_step_where_no_translation_asks_for_an_eye_colour_trains_without_the_tagger_eye_term(data_root, tmp_path):
    # Two runs that differ only in w_tagger_eye: with no row asking for an eye colour, the eye term is
    # empty, so every logged term is the same.
    logs = []
    for name, w_eye in (("a", 1.0), ("b", 0.0)):
        trainer = golden_trainer(data_root, tmp_path / name, "all_terms")
        trainer.cfg.w_tagger_eye, trainer.cfg.auto_eye_prob = w_eye, 1.0
        logs.append(trainer.step())
    assert all(math.isfinite(v) for v in logs[0].values()), logs[0]
    assert logs[0]["g_tagger"] > 0 and logs[0] == pytest.approx(logs[1], rel=1e-6)


def test_stage_schedule():
    cfg = load_config(None, ["model={\"resolution\": 64}", "start_resolution=16", "stage_images=[100, 200]",
                             "fade_fraction=0.5"])
    assert stage_at(0, cfg) == (16, 1.0)
    assert stage_at(100, cfg) == (32, 0.0)
    assert stage_at(150, cfg) == (32, 0.5)
    assert stage_at(299, cfg)[0] == 32 and stage_at(300, cfg) == (64, 0.0)
    assert stage_at(10**6, cfg) == (64, 1.0)


def test_growing_8_to_16_keeps_outputs(data_root, tmp_path):
    trainer = make_trainer(data_root, tmp_path / "run", start_resolution=8, stage_images=[8], fade_fraction=0.5)
    for _ in range(2):  # 8 px stage
        trainer.step()
    assert trainer.stage == (16, 0.0)
    model = trainer.model.eval()
    x16 = torch.rand(2, 3, 16, 16)
    tags = torch.zeros(2, DEFAULT_VOCAB.dim)
    model.set_stage(8, 1.0)
    low = model(torch.nn.functional.avg_pool2d(x16, 2), "human", "anime", tags)
    model.set_stage(16, 0.0)
    high = model(x16, "human", "anime", tags)
    torch.testing.assert_close(high, torch.nn.functional.interpolate(low, scale_factor=2, mode="nearest"))
    for _ in range(3):  # through the fade-in into the 16 px stage
        losses = trainer.step()
        assert all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    assert trainer.stage[0] == 16 and trainer.stage[1] > 0
    out = trainer.ema.translate(x16, "human", "anime", tags)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()


def test_resume_gives_same_next_step(data_root, tmp_path):
    extra = dict(augment=True, gp="dragan", gp_every=1)
    straight = make_trainer(data_root, tmp_path / "a", **extra)
    expected = [straight.step() for _ in range(4)]
    first = make_trainer(data_root, tmp_path / "b", **extra)
    for _ in range(3):
        first.step()
    path = first.save_checkpoint(tmp_path / "b" / "checkpoint.pt")
    resumed = make_trainer(data_root, tmp_path / "b", **extra)
    resumed.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    got = resumed.step()
    assert got.keys() == expected[3].keys()
    for k in got:
        assert got[k] == pytest.approx(expected[3][k], rel=1e-5, abs=1e-6), k


def test_export_loads_in_inference_api(data_root, tmp_path):
    trainer = make_trainer(data_root, tmp_path / "run")
    trainer.step()
    folder = export_now(trainer, tmp_path / "run")
    model = load_pretrained(TwinGAN, folder)
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
    # The eye colours of each hair colour on the tagged target images, for the app's "auto" eyes.
    counts = torch.tensor(model.config.eye_given_hair)
    known = (trainer.target.hair >= 0) & (trainer.target.eye >= 0)
    assert counts.shape == (len(DEFAULT_VOCAB.hair), len(DEFAULT_VOCAB.eye)) and counts.sum() == known.sum() > 0
    pair = int(trainer.target.hair[known][0]), int(trainer.target.eye[known][0])
    assert counts[pair] == int(((trainer.target.hair == pair[0]) & (trainer.target.eye == pair[1])).sum())
    x = torch.rand(2, 3, 16, 16)
    tags = torch.tensor([DEFAULT_VOCAB.encode("blue", "red")] * 2)
    out = model.translate(x, "human", "anime", tags)
    ref = trainer.ema.eval().translate(x, "human", "anime", tags)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=0)  # fp16 weights


def test_eye_prior_writes_the_tags_csvs_counts_into_an_export(data_root, tmp_path, capsys):
    from train.helpers.eye_prior import main
    from train.tags_data import read_tags_csv

    trainer = make_trainer(data_root, tmp_path / "run")
    folder = export_now(trainer, tmp_path / "run")
    values = json.loads((folder / "config.json").read_text())
    del values["eye_given_hair"]  # as exports made before it was written
    (folder / "config.json").write_text(json.dumps(values))
    csv_path = data_root / "anime" / "tags.csv"
    assert main([str(folder), "--tags", str(csv_path)]) == 0
    counts = torch.tensor(load_pretrained(TwinGAN, folder).config.eye_given_hair)
    rows = [r for r in read_tags_csv(csv_path, DEFAULT_VOCAB, "train").values() if r.hair_known and r.eye_known]
    assert counts.sum() == len(rows) > 0
    assert "eye colours of" in capsys.readouterr().out
    assert main([str(folder), "--tags", str(tmp_path / "missing.csv")]) == 2
    assert "tags CSV not found" in capsys.readouterr().err
    assert main([str(folder), "--tags", str(csv_path), "--skip", "blue", "red"]) == 0  # never drawn by "auto"
    skipped = torch.tensor(load_pretrained(TwinGAN, folder).config.eye_given_hair)
    blue, red = DEFAULT_VOCAB.eye_index("blue"), DEFAULT_VOCAB.eye_index("red")
    drawn = [i for i in range(len(DEFAULT_VOCAB.eye)) if i not in (blue, red)]
    assert skipped[:, blue].sum() == skipped[:, red].sum() == 0
    assert torch.equal(skipped[:, drawn], counts[:, drawn])
    assert main([str(folder), "--tags", str(csv_path), "--skip", "plaid"]) == 2
    assert "unknown eye colour 'plaid'" in capsys.readouterr().err


def test_cli_dry_run_and_run_folder(data_root, tmp_path):
    from train.__main__ import main

    run = tmp_path / "run"
    assert main(["--config", "cpu-small", "--dry-run", *tiny_overrides(data_root, run)]) == 0
    assert main(["--config", "cpu-small", "--max-steps", "2", "--no-progress", *tiny_overrides(data_root, run)]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["batch_size"] == 4 and cfg["model"]["resolution"] == 16
    assert list((run / "samples").glob("*.png")) and (run / "export" / "config.json").is_file()
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2
    assert main(["--config", "cpu-small", "--max-steps", "1", "--resume", "--no-progress",
                 *tiny_overrides(data_root, run)]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 3
    # Exporting the checkpoint afterwards gives the loop's own final export.
    from safetensors.torch import load_file

    from train.export import main as export_main

    assert export_main([str(run), str(tmp_path / "exported")]) == 0
    a, b = load_file(run / "export" / "model.safetensors"), load_file(tmp_path / "exported" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_budgeted_run_bar_counts_minutes_left_not_an_image_total(data_root, tmp_path, capsys):
    from train.__main__ import main

    overrides = tiny_overrides(data_root, tmp_path / "run", total_images=10**9, budget_minutes=30)
    assert main(["--config", "cpu-small", "--max-steps", "2", *overrides]) == 0
    bar = capsys.readouterr().err
    assert "min left" in bar and "/1000000000" not in bar, bar[-2000:]
    assert main(["--config", "cpu-small", "--max-steps", "1", "--resume",  # no budget: the image total
                 *tiny_overrides(data_root, tmp_path / "run", total_images=10**6)]) == 0
    bar = capsys.readouterr().err
    assert "/1000000" in bar and "min left" not in bar, bar[-2000:]


def test_shipped_configs_parse():
    for name in ("cpu-small", "paper-256"):
        cfg = load_config(name)
        assert cfg.model.resolution in (64, 256)
    assert load_config("paper-256").batch_for(256) == 3


@pytest.mark.parametrize("override, message", [
    ("no_such_key=1", "unknown config key(s): no_such_key"),
    ("model.no_such_key=1", "model.no_such_key"),
    ("batch_size=\"big\"", "batch_size: expected int"),
    ("lr=true", "lr: expected float"),
    ("model.resolution=48", "power of two"),
    ("gp=\"wgan\"", "gp must be"),
    ("batch_size", "must look like key=value"),
    ("target_eye_balance=2", "target_eye_balance must be in [0, 1]"),
    ("cycle_colour=1.5", "cycle_colour must be in [0, 1]"),
])
def test_bad_configs(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("cpu-small", [override])
    assert message in str(err.value)


def test_unknown_config_name():
    with pytest.raises(ConfigError, match="shipped configs: .*cpu-small"):
        load_config("no-such-config")


def test_missing_and_empty_data_folders(data_root, tmp_path):
    cfg = load_config(None, tiny_overrides(data_root, tmp_path / "r", source_dirs=["missing"]))
    with pytest.raises(DataError, match="image folder not found: .*missing"):
        load_domains(cfg)
    (data_root / "empty").mkdir(exist_ok=True)
    cfg = load_config(None, tiny_overrides(data_root, tmp_path / "r", source_dirs=["empty"]))
    with pytest.raises(DataError, match="has no images"):
        load_domains(cfg)


def test_unreadable_image_is_skipped_and_counted(data_root, tmp_path):
    import shutil

    folder = tmp_path / "mixed"
    shutil.copytree(data_root / "human", folder)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "truncated.png").write_bytes((folder / "000.png").read_bytes()[:40])
    cfg = load_config(None, tiny_overrides(data_root, tmp_path / "r", source_dirs=[str(folder)]))
    source, _ = load_domains(cfg)
    assert len(source) == 16 and source.skipped == 2


def test_decode_writes_into_one_tensor_and_closes_gaps(data_root, tmp_path):
    """Images are decoded in place into the caller's uint8 tensor (no second copy); skipped rows close up."""
    import shutil

    from train.decode import decode_images

    folder = tmp_path / "mixed"
    shutil.copytree(data_root / "human", folder)
    (folder / "001.png").write_bytes(b"not a png")
    files = ["000.png", "001.png", "002.png", "003.png"]
    one_by_one = [decode_images(data_root / "human", [f], 16, 0.5, workers=1)[0][0] for f in files]
    out = torch.empty(len(files), 3, 16, 16, dtype=torch.uint8)
    images, kept, skipped = decode_images(folder, files, 16, 0.5, workers=2, out=out)
    assert kept == [0, 2, 3] and len(skipped) == 1 and skipped[0].startswith("001.png")
    assert images.data_ptr() == out.data_ptr() and images.shape == (3, 3, 16, 16)
    for row, i in enumerate(kept):
        assert torch.equal(images[row], one_by_one[i])


def test_domain_of_several_folders_keeps_labels_with_their_images(data_root, tmp_path):
    """A domain's folders share one tensor; a skipped image in the first folder shifts the rest, labels too."""
    import shutil

    from train.data import load_folder, load_tagged

    folder = tmp_path / "anime-untagged"
    shutil.copytree(data_root / "human", folder)
    (folder / "005.png").write_bytes(b"not a png")
    cfg = load_config(None, tiny_overrides(data_root, tmp_path / "r", target_dirs=[str(folder)]))
    _, target = load_domains(cfg, workers=2)
    untagged = load_folder(folder, 16, DEFAULT_VOCAB, 0.5)
    tagged = load_tagged(data_root / "anime" / "tags.csv", data_root / "anime" / "images", 16, DEFAULT_VOCAB)
    assert len(target) == 15 + 16 and target.skipped == 1
    assert torch.equal(target.images, torch.cat([untagged.images, tagged.images]))
    assert (target.hair[:15] == -1).all() and torch.equal(target.hair[15:], tagged.hair)
    assert torch.equal(target.binary_known, torch.arange(31) >= 15)


def test_square_image_crop_top():
    from PIL import Image

    from train.decode import square_image

    tall = Image.new("RGB", (10, 30), "red")
    tall.paste((0, 0, 255), (0, 10, 10, 30))  # red top third, blue below
    assert square_image(tall, 5, crop_top=0.0).getpixel((2, 0)) == (255, 0, 0)
    assert square_image(tall, 5, crop_top=1.0).getpixel((2, 0)) == (0, 0, 255)
    wide = Image.new("RGB", (30, 10), "red")
    wide.paste((0, 255, 0), (10, 0, 20, 10))  # the centre third is green
    centre = square_image(wide, 5, crop_top=0.0)
    assert centre.size == (5, 5) and all(centre.getpixel((x, 2)) == (0, 255, 0) for x in range(5))


@pytest.mark.slow
def test_two_process_gloo_matches_single_process(data_root, tmp_path):
    """2 CPU processes (torchrun, gloo) with the same global batch give the single process's losses."""
    common = ["--config", "cpu-small", "--max-steps", "3", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}

    def run(prefix: list[str], name: str) -> dict:
        out = subprocess.run([*prefix, "-m", "train", *common, *tiny_overrides(data_root, tmp_path / name, lr=0.0005)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])["losses"]

    single = run([sys.executable], "single")
    double = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
                 "ddp")
    assert single.keys() == double.keys()
    # Step 3's losses depend on two all-reduced updates. Minibatch-stddev groups in D differ with the
    # per-process batch (a tiny effect at these weights), hence a tolerance rather than equality.
    for k in single:
        assert double[k] == pytest.approx(single[k], rel=1e-4, abs=1e-6), (k, single, double)


def test_fill_missing_tags_from_the_tagger(data_root):
    from train.data import fill_missing_tags, load_folder
    from twingan.tagger import Tagger, TaggerConfig

    data = load_folder(data_root / "human", 16, DEFAULT_VOCAB, 0.5)
    assert (data.hair < 0).all()
    tagger = Tagger(TaggerConfig(resolution=16, channels=(8, 16), feature_dim=8)).eval()
    assert fill_missing_tags(data, tagger, threshold=1.01) == 0  # never that sure
    assert fill_missing_tags(data, tagger, threshold=0.0) == 2 * len(data)
    assert (data.hair >= 0).all() and (data.tags[:, DEFAULT_VOCAB.hair_slice].sum(1) == 1).all()
    assert not data.binary_known.any()


def test_feature_moments_loss():
    from train.losses import feature_moments

    g = torch.Generator().manual_seed(0)
    real = torch.randn(64, 8, generator=g)
    assert feature_moments(real.clone(), real) == pytest.approx(0.0, abs=1e-6)
    assert feature_moments(real + 3.0, real) > 5.0  # shifted mean
    fake = torch.zeros(64, 8, requires_grad=True)
    feature_moments(fake + torch.randn(64, 8, generator=g) * 0.1, real).backward()
    assert fake.grad is not None and torch.isfinite(fake.grad).all()


@pytest.mark.parametrize("dy,dx", [(3, 0), (0, -2), (-4, 5), (1, 1)])
def test_shift_moves_content_and_consistency_sees_fixed_patterns(dy, dx):
    from train.losses import shift, shift_consistency

    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 16, 16, generator=g)
    moved = shift(x, dy, dx)
    assert torch.equal(moved[..., 8 + dy, 8 + dx], x[..., 8, 8])  # content moved by (dy, dx)
    # A per-pixel function commutes with shifts: zero, though the border was filled by repetition.
    assert shift_consistency(moved.sigmoid(), x.sigmoid(), dy, dx) == pytest.approx(0.0, abs=1e-7)
    # The same picture added whatever the input (a grid) stays put while the content moves.
    grid = torch.zeros(16, 16)
    grid[::4] = 1.0
    grid[:, ::4] = 1.0
    assert shift_consistency(moved + grid, x + grid, dy, dx) > 0.1


def test_cycle_l1_weighs_the_colour_not_the_grey_layout():
    from train.losses import cycle_l1
    from twingan.layers import luma

    g = torch.Generator().manual_seed(0)
    photo = torch.rand(2, 3, 16, 16, generator=g)
    assert cycle_l1(photo * 0.5, photo) == pytest.approx((photo * 0.5 - photo).abs().mean().item())
    # A hue change that keeps every pixel's luma: counted in full at 1, by a quarter at 0.25, not at all at 0.
    hue = torch.zeros(3, 16, 16)
    hue[0], hue[1] = 0.1 / 0.299, -0.1 / 0.587  # red up, green down by as much luma
    assert luma(hue[None]).abs().max() < 1e-6
    full = cycle_l1(photo + hue, photo)
    assert cycle_l1(photo + hue, photo, 0.25) == pytest.approx(full.item() / 4, rel=1e-5)
    assert cycle_l1(photo + hue, photo, 0.0) < 1e-6
    # A change of brightness counts at every colour weight.
    assert cycle_l1(photo + 0.1, photo, 0.0) == pytest.approx(0.1, rel=1e-5)


def test_shift_consistency_needs_an_overlap():
    from train.losses import shift_consistency

    with pytest.raises(ValueError, match="no overlap"):
        shift_consistency(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), 8, 0)


def test_balance_repeats_raise_rare_classes():
    labels = torch.tensor([0] * 100 + [1] * 4 + [-1])
    assert balance_repeats(labels, 0.0).tolist() == [1] * 105
    half = balance_repeats(labels, 0.5)
    assert half[:100].unique().tolist() == [1] and half[100:104].unique().tolist() == [5] and half[104] == 1
    assert balance_repeats(labels, 1.0)[100:104].unique().tolist() == [25]  # as many draws as the commonest class
    assert balance_repeats(torch.full((3,), -1), 0.5).tolist() == [1, 1, 1]


def test_balanced_sampler_draws_each_item_its_repeats_per_epoch_and_resumes():
    repeats = torch.tensor([1, 3, 1, 2])
    sampler = EpochSampler(4, seed=0, repeats=repeats)
    assert sampler.n == 7
    epoch = torch.cat([sampler.next(1) for _ in range(7)])
    assert torch.bincount(epoch, minlength=4).tolist() == repeats.tolist()
    state = sampler.state_dict()
    expected = sampler.next(3)
    again = EpochSampler(4, seed=0, repeats=repeats)
    again.load_state_dict(state)
    assert torch.equal(again.next(3), expected)


def test_trainer_balances_target_eye_colours(data_root, tmp_path):
    # write_data: eye colour i % 10 of 16 images, so colours 6-9 have one image and the others two.
    assert make_trainer(data_root, tmp_path / "plain").tgt_sampler.n == 16
    balanced = make_trainer(data_root, tmp_path / "balanced", target_eye_balance=1.0)
    assert balanced.tgt_sampler.n == 20
    assert balanced.tgt_sampler.repeats[balanced.target.eye >= 6].unique().tolist() == [2]
    assert "target epoch: 20 draws (eye-colour balance 1.0: up to 2 draws per image)" in describe(balanced.cfg, balanced)


def test_sampled_tags_always_ask_for_colours():
    from train.losses import sample_target_tags

    v = DEFAULT_VOCAB
    pool = torch.zeros(3, v.dim)  # rows with unknown colours must still yield a colour
    tags, hair, eye = sample_target_tags(pool, torch.full((3,), -1), torch.full((3,), -1), 50, v, 0.0,
                                         torch.Generator().manual_seed(0),
                                         own_hair=torch.full((50,), 2), own_hair_prob=1.0)
    assert (tags[:, v.hair_slice].sum(1) == 1).all() and (tags[:, v.eye_slice].sum(1) == 1).all()
    assert (hair == 2).all() and (tags[:, v.hair_slice].argmax(1) == hair).all()
    assert (tags[:, v.eye_slice].argmax(1) == eye).all()



def test_auto_hair_rows_ask_for_every_hair_colour_alike_and_the_tagger_loss_skips_them():
    from train.losses import masked_ce, sample_target_tags

    v = DEFAULT_VOCAB
    pool = torch.zeros(3, v.dim)
    g = torch.Generator().manual_seed(0)
    tags, hair, eye = sample_target_tags(pool, torch.full((3,), -1), torch.full((3,), -1), 400, v, 0.0, g,
                                         own_hair=torch.full((400,), 2), own_hair_prob=1.0, auto_hair_prob=0.3)
    auto = hair < 0
    assert 0.2 < auto.float().mean() < 0.4
    assert torch.allclose(tags[auto][:, v.hair_slice], torch.tensor(1 / len(v.hair)))  # what the app sends for "auto"
    assert (tags[~auto][:, v.hair_slice].argmax(1) == 2).all() and (tags[~auto][:, v.hair_slice].sum(1) == 1).all()
    assert (tags[:, v.eye_slice].sum(1) == 1).all()  # the eye colour is still asked for
    logits = torch.randn(400, len(v.hair))
    assert torch.isclose(masked_ce(logits, hair), torch.nn.functional.cross_entropy(logits[~auto], hair[~auto]))
    assert masked_ce(logits, torch.full((400,), -1)) == 0  # a batch of only "auto" rows adds nothing


def test_auto_eye_rows_ask_for_every_eye_colour_alike_and_leave_the_hair_asked():
    from train.losses import sample_target_tags

    v = DEFAULT_VOCAB
    pool = torch.zeros(3, v.dim)
    args = (pool, torch.full((3,), -1), torch.full((3,), -1), 400, v, 0.0)
    tags, hair, eye = sample_target_tags(*args, torch.Generator().manual_seed(0), auto_eye_prob=0.3)
    auto = eye < 0
    assert 0.2 < auto.float().mean() < 0.4
    assert torch.allclose(tags[auto][:, v.eye_slice], torch.tensor(1 / len(v.eye)))  # what the app sends for "auto"
    assert (tags[~auto][:, v.eye_slice].argmax(1) == eye[~auto]).all() and (tags[~auto][:, v.eye_slice].sum(1) == 1).all()
    assert (hair >= 0).all() and (tags[:, v.hair_slice].sum(1) == 1).all()  # the hair colour is still asked for
    # Without it, the draws are those of a run that never had the option.
    plain = sample_target_tags(*args, torch.Generator().manual_seed(0))
    zero = sample_target_tags(*args, torch.Generator().manual_seed(0), auto_eye_prob=0.0)
    assert all(torch.equal(a, b) for a, b in zip(plain, zero))

@pytest.mark.slow
def test_cpu_recipe_script_runs_its_phases_in_one_run_folder(data_root, tmp_path):
    # The bundled checkpoint's phases, tiny: each of the first four resumes the last and switches its
    # own losses on; the fifth starts a run folder of its own from the fourth's export.
    run = tmp_path / "run"
    overrides = [o for o in tiny_overrides(data_root, run) if not o.startswith(("run_dir=", "total_images="))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "PYTHON": sys.executable,
           "PHASE1_IMAGES": "8", "PHASE2_IMAGES": "16", "PHASE3_IMAGES": "24", "PHASE4_IMAGES": "32",
           "TOTAL_IMAGES": "40"}
    out = subprocess.run(["bash", str(REPO / "scripts" / "train_cpu.sh"), str(run), *overrides, "--no-progress"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    summaries = [json.loads(line) for line in out.stdout.splitlines() if line.startswith('{"step"')]
    assert [s["images"] for s in summaries] == [8, 16, 24, 32, 40]
    assert "shift" not in summaries[0]["losses"] and "g_tagger" not in summaries[0]["losses"]
    assert "g_tagger" in summaries[1]["losses"] and "shift" not in summaries[1]["losses"]
    assert "shift" in summaries[2]["losses"] and "shift" in summaries[3]["losses"]
    saved = json.loads((run / "config.json").read_text())  # the last phase's
    assert (saved["w_shift"], saved["w_tagger"], saved["uniform_color_prob"]) == (15.0, 2.0, 1.0)
    assert load_pretrained(TwinGAN, run / "export").resolution == 16
    fifth = json.loads((run / "phase5" / "config.json").read_text())
    assert (fifth["d_init"], fifth["init_discriminators"], fifth["upload_jitter"]) == ("he", False, 0.5)
    assert json.loads((run / "phase5" / "export" / "training.json").read_text())["images_seen"] == 40


@pytest.mark.parametrize("eyes", [False, True])
def test_readme_figures_from_the_bundled_checkpoint(tmp_path, eyes):
    from PIL import Image

    from train.evaluation.figures import CELL, LABEL, main

    out = tmp_path / "grid.png"
    assert main(["--out", str(out), *(["--eyes"] if eyes else [])]) == 0
    columns = 1 + 10 if eyes else 2 + 12  # input, (own hair,) one per colour of the vocabulary
    assert Image.open(out).size == (columns * CELL, LABEL + 2 * CELL)  # one row per example photo


def test_before_after_shows_both_checkpoints_as_the_app_does(tmp_path):
    """Against itself, the bundled checkpoint's "before" cell is its "now" cell (both through the
    upscaler); --before-resized shows the plain resize instead, which differs."""
    import numpy as np
    from PIL import Image

    from train.evaluation.figures import LABEL, main
    from twingan.pipeline import DEFAULT_CHECKPOINT

    def cells(*flags):
        out = tmp_path / "compare.png"
        photo = str(REPO / "examples" / "astronaut.png")
        assert main(["--compare", str(DEFAULT_CHECKPOINT), "--photos", photo, "--out", str(out), *flags]) == 0
        sheet = np.asarray(Image.open(out), dtype=np.int16)
        assert sheet.shape[:2] == (LABEL + 256, 6 * 256)  # photo, before, now, three hair colours
        return sheet[LABEL:, 256:512], sheet[LABEL:, 512:768]

    before, now = cells()
    assert np.abs(before - now).max() <= 1
    resized, now_again = cells("--before-resized")
    assert np.array_equal(now, now_again) and np.abs(resized - now).mean() > 1


def test_tight_uploads_figure_fades_only_past_the_uploads_edges(tmp_path):
    """The astronaut cut to a tight selfie's framing: the app's crop reaches past the cut on every
    side, so the faded crop's borders are nearer the light grey than the edge-repeated crop's; the
    two agree in the middle; the two portraits differ."""
    import numpy as np
    from PIL import Image

    from train.evaluation.figures import LABEL, main
    from twingan.faces import OUTSIDE_GREY

    out = tmp_path / "tight.png"
    assert main(["--tight", "--photos", str(REPO / "examples" / "astronaut.png"), "--out", str(out)]) == 0
    sheet = np.asarray(Image.open(out), dtype=np.int16)[LABEL:]
    assert sheet.shape[:2] == (256, 5 * 256)  # upload, crop before, before, crop now, now
    edge, before, faded, now = (sheet[:, k * 256:(k + 1) * 256] for k in (1, 2, 3, 4))
    for band in (np.s_[:6], np.s_[-6:], np.s_[:, :6], np.s_[:, -6:]):  # top, bottom, left, right
        assert np.abs(faded[band] - OUTSIDE_GREY).mean() < 0.85 * np.abs(edge[band] - OUTSIDE_GREY).mean()
    assert np.abs(edge[96:160, 96:160] - faded[96:160, 96:160]).max() <= 2
    assert np.abs(before - now).mean() > 2


def test_grow_loads_a_smaller_run_and_starts_the_new_stage_where_it_left_off(data_root, tmp_path):
    from train.growing import grow_schedule

    small = make_trainer(data_root, tmp_path / "run", model=TINY_MODEL)
    for _ in range(2):
        small.step()
    state = small.state_dict()  # 8 images seen at 16 px
    bigger = {**TINY_MODEL, "resolution": 32}
    grown = make_trainer(data_root, tmp_path / "run", model=bigger, stage_images=[8, 1000])
    grown.load_state_dict(state, grow=True)
    assert grown.stage == (32, 0.0) and grown.images_seen == 8
    for module, key in ((grown.model, "model"), (grown.ema, "ema"), (grown.d_target, "d_target")):
        mine = module.state_dict()
        assert all(torch.equal(mine[k], v) for k, v in state[key].items()), key
        assert {k for k in mine if k not in state[key]} and all(".32." in k for k in mine if k not in state[key])
    # Adam's moments follow their parameters by name; the new layers' parameters start without.
    names = [n for n, _ in grown.model.named_parameters()]
    old_names = [n for n, _ in small.model.named_parameters()]
    for i, name in enumerate(names):
        moments = grown.opt_g.state.get(grown.opt_g.param_groups[0]["params"][i], {})
        saved = state["opt_g"]["state"].get(old_names.index(name)) if name in old_names else None
        if saved:  # (layers the 16 px stage never used, such as from_rgb at 8 px, have no moments either)
            assert torch.equal(moments["exp_avg"], saved["exp_avg"]), name
        else:
            assert not moments, name
    assert len(grown.opt_g.state) == len(state["opt_g"]["state"]) > 10
    # At fade-in 0 the grown model is the saved one, upsampled: a 32 px face translates as its 16 px copy did.
    x = torch.rand(2, 3, 32, 32)
    tags = torch.zeros(2, DEFAULT_VOCAB.dim)
    with torch.no_grad():
        out = grown.ema.translate(x, "human", "anime", tags)
        small.ema.set_stage(16, 1.0)
        ref = small.ema.translate(torch.nn.functional.avg_pool2d(x, 2), "human", "anime", tags)
    torch.testing.assert_close(out, torch.nn.functional.interpolate(ref, scale_factor=2, mode="nearest"))
    assert set(grown.step()) and grown.stage[0] == 32  # and it trains on
    assert grow_schedule(grown.cfg, 8, 32) == (8, 1000)


def test_grow_says_how_to_schedule_the_new_stage(data_root, tmp_path):
    from train.config import ConfigError

    small = make_trainer(data_root, tmp_path / "run", model=TINY_MODEL)
    small.step()
    state = small.state_dict()  # 4 images at 16 px
    late = make_trainer(data_root, tmp_path / "run", model={**TINY_MODEL, "resolution": 32}, stage_images=[1000])
    with pytest.raises(ConfigError, match=r"stage_images='\[4, 1000\]'"):
        late.load_state_dict(state, grow=True)
    same = make_trainer(data_root, tmp_path / "run", model=TINY_MODEL)
    with pytest.raises(ConfigError, match="set model.resolution above it"):
        same.load_state_dict(state, grow=True)


def test_cli_grow_needs_resume(tmp_path, capsys):
    from train.__main__ import main

    assert main(["--config", "cpu-small", "--grow", f"run_dir={tmp_path}"]) == 2
    assert "use it with --resume" in capsys.readouterr().err


def test_export_carries_discriminators_and_init_from_trains_on(data_root, tmp_path):
    from train.export import DISCRIMINATORS_DIR
    from twingan.checkpoint import TRAINING_INFO_NAME
    from twingan.model import Discriminator

    trainer = make_trainer(data_root, tmp_path / "run")
    for _ in range(2):
        trainer.step()
    folder = export_now(trainer, tmp_path / "run")
    info = json.loads((folder / TRAINING_INFO_NAME).read_text())
    assert (info["images_seen"], info["step"], info["resolution"]) == (8, 2, 16)
    for domain, d in (("anime", trainer.d_target), ("human", trainer.d_source)):
        saved = load_pretrained(Discriminator, folder / DISCRIMINATORS_DIR / domain)
        for k, v in d.state_dict().items():
            torch.testing.assert_close(saved.state_dict()[k], v.half().float(), msg=k)  # fp16 on disk
    # A fresh machine: a new run folder, only the exported checkpoint.
    fresh = make_trainer(data_root, tmp_path / "fresh")
    fresh.init_from(folder)
    assert (fresh.images_seen, fresh.step_count) == (8, 2) and not fresh.opt_g.state
    exported = load_pretrained(TwinGAN, folder).state_dict()
    for module in (fresh.model, fresh.ema):
        assert all(torch.equal(module.state_dict()[k], v) for k, v in exported.items())
    d_saved = load_pretrained(Discriminator, folder / DISCRIMINATORS_DIR / "anime").state_dict()
    assert all(torch.equal(fresh.d_target.state_dict()[k], v) for k, v in d_saved.items())
    losses = fresh.step()
    assert fresh.images_seen == 12 and all(math.isfinite(v) for v in losses.values())


def test_init_from_grows_a_smaller_export_and_starts_fresh_discriminators_without_them(data_root, tmp_path, caplog):
    import shutil

    from train.export import DISCRIMINATORS_DIR
    from twingan.checkpoint import TRAINING_INFO_NAME

    small = make_trainer(data_root, tmp_path / "run")
    for _ in range(2):
        small.step()
    folder = export_now(small, tmp_path / "run")
    grown = make_trainer(data_root, tmp_path / "big", model={**TINY_MODEL, "resolution": 32}, stage_images=[8, 1000])
    grown.init_from(folder)
    assert grown.stage == (32, 0.0)
    # At fade-in 0 the grown model translates as the export does, upsampled.
    x = torch.rand(2, 3, 32, 32)
    tags = torch.zeros(2, DEFAULT_VOCAB.dim)
    with torch.no_grad():
        out = grown.ema.eval().translate(x, "human", "anime", tags)
        ref = load_pretrained(TwinGAN, folder).translate(torch.nn.functional.avg_pool2d(x, 2), "human", "anime", tags)
    torch.testing.assert_close(out, torch.nn.functional.interpolate(ref, scale_factor=2, mode="nearest"))
    # Without the discriminators and training.json (an older export): fresh D, images from 0, a warning.
    shutil.rmtree(folder / DISCRIMINATORS_DIR)
    (folder / TRAINING_INFO_NAME).unlink()
    bare = make_trainer(data_root, tmp_path / "bare")
    before = {k: v.clone() for k, v in bare.d_target.state_dict().items()}
    bare.init_from(folder)
    assert bare.images_seen == 0 and "has no anime discriminator" in caplog.text
    assert all(torch.equal(bare.d_target.state_dict()[k], v) for k, v in before.items())
    with pytest.raises(ConfigError, match="stage_images="):  # its 0 images do not start the 32 px stage
        make_trainer(data_root, tmp_path / "big2", model={**TINY_MODEL, "resolution": 32},
                     stage_images=[8, 1000]).init_from(folder)


def test_the_128px_checkpoint_in_training_trains_on_without_growing(data_root, tmp_path):
    """checkpoints/twingan-selfie2anime-128 carries its 128 px anime discriminator and training.json:
    a run with the config it was trained with starts from it at 128 px, nothing fresh, and steps."""
    from train.export import DISCRIMINATORS_DIR
    from twingan.checkpoint import TRAINING_INFO_NAME
    from twingan.model import Discriminator

    folder = REPO / "checkpoints" / "twingan-selfie2anime-128"
    info = json.loads((folder / TRAINING_INFO_NAME).read_text())
    trained = info["config"]
    model = {k: trained["model"][k] for k in ("resolution", "base_channels", "max_channels", "norm",
                                              "skip_resolutions", "tag_embed_dim", "tag_head", "pixel_norm")}
    model["min_channels"] = trained["model"].get("min_channels", 1)  # a key since 2026-12-04
    trainer = make_trainer(data_root, tmp_path / "run", model=model, d_width=trained["d_width"],
                           start_resolution=trained["start_resolution"], stage_images=trained["stage_images"],
                           w_shift=1.0)
    trainer.init_from(folder)
    assert trainer.stage == (128, 1.0) and trainer.images_seen == info["images_seen"] > 180_000
    exported = load_pretrained(TwinGAN, folder).state_dict()
    assert all(torch.equal(trainer.ema.state_dict()[k], v) for k, v in exported.items())
    d_saved = load_pretrained(Discriminator, folder / DISCRIMINATORS_DIR / "anime").state_dict()
    assert any(".128." in k for k in d_saved)
    assert set(d_saved) == set(trainer.d_target.state_dict())
    assert all(torch.equal(trainer.d_target.state_dict()[k], v) for k, v in d_saved.items())
    assert all(math.isfinite(v) for v in trainer.step().values())


def test_init_from_widens_the_top_layers_and_starts_where_the_export_was(data_root, tmp_path):
    """A run with a larger model.min_channels starts from a narrower export: the saved weights fill
    the leading channels, the layers that read the new ones read zeros, so generator and
    discriminator compute what the export's did; training then moves the new channels."""
    from train.export import DISCRIMINATORS_DIR
    from twingan.model import Discriminator

    narrow = make_trainer(data_root, tmp_path / "run")
    for _ in range(2):
        narrow.step()
    folder = export_now(narrow, tmp_path / "run")
    wide = make_trainer(data_root, tmp_path / "wide", model={**TINY_MODEL, "min_channels": 16})
    assert (narrow.model.config.channels(16), wide.model.config.channels(16)) == (8, 16)
    wide.init_from(folder)
    x, tags = torch.rand(3, 3, 16, 16), torch.rand(3, DEFAULT_VOCAB.dim)
    saved = load_pretrained(TwinGAN, folder)
    d_saved = load_pretrained(Discriminator, folder / DISCRIMINATORS_DIR / "anime").eval()
    with torch.no_grad():
        torch.testing.assert_close(wide.ema.eval().translate(x, "human", "anime", tags),
                                   saved.translate(x, "human", "anime", tags))
        torch.testing.assert_close(wide.d_target.eval()(x, 1.0)[0], d_saved(x, 1.0)[0])
    new_rows = wide.model.generator.to_rgb["16"].weight[:, 8:]
    assert torch.count_nonzero(new_rows) == 0  # the new channels are not read yet
    wide.ema.train(), wide.d_target.train()
    wide.step()
    assert torch.count_nonzero(wide.model.generator.to_rgb["16"].weight[:, 8:]) > 0


def test_init_from_refuses_to_widen_a_layer_behind_a_skip(data_root, tmp_path):
    trainer = make_trainer(data_root, tmp_path / "run")
    trainer.step()
    folder = export_now(trainer, tmp_path / "run")
    wide = make_trainer(data_root, tmp_path / "wide", model={**TINY_MODEL, "min_channels": 32})  # 4 and 8 px too
    with pytest.raises(ConfigError, match="through a UNet skip"):
        wide.init_from(folder)


def test_cli_init_from_runs_and_refuses_resume(data_root, tmp_path, capsys):
    from train.__main__ import main

    trainer = make_trainer(data_root, tmp_path / "run")
    trainer.step()
    folder = export_now(trainer, tmp_path / "run")
    args = tiny_overrides(data_root, tmp_path / "next") + ["--init-from", str(folder), "--max-steps", "1", "--no-progress"]
    assert main(args + ["--resume"]) == 2
    assert "--init-from starts a run" in capsys.readouterr().err
    assert main(args) == 0
    state = torch.load(tmp_path / "next" / "checkpoint.pt", weights_only=True)
    assert (state["step"], state["images_seen"]) == (2, 8)


def test_init_from_says_when_the_checkpoint_does_not_fit_the_run(data_root, tmp_path):
    trainer = make_trainer(data_root, tmp_path / "run")
    trainer.step()
    folder = export_now(trainer, tmp_path / "run")
    other = make_trainer(data_root, tmp_path / "other", model={**TINY_MODEL, "max_channels": 8})
    with pytest.raises(ConfigError, match="does not fit this run's model config"):
        other.init_from(folder)


def test_he_init_keeps_the_discriminators_activations_at_scale(data_root, tmp_path):
    # d_init="normal" (std 0.02) shrinks the signal layer by layer, so a fresh D scores every image
    # alike; "he" keeps each conv's output at about its input's scale.
    def layer_stds(trainer):
        d, stds = trainer.d_target, []
        hooks = [m.register_forward_hook(lambda m, i, o: stds.append(o.std().item()))
                 for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
        with torch.no_grad():
            d(torch.rand(8, 3, 16, 16))
        for h in hooks:
            h.remove()
        return stds

    # The last conv (the 4x4 "valid" one) keeps PyTorch's default init in both: its output is its bias.
    normal = layer_stds(make_trainer(data_root, tmp_path / "normal"))[:-1]
    he = layer_stds(make_trainer(data_root, tmp_path / "he", d_init="he"))[:-1]
    assert normal[-1] < 0.01 * normal[0], normal
    assert all(0.1 < s / he[0] < 10 for s in he), he
    with pytest.raises(ConfigError, match="d_init"):
        make_trainer(data_root, tmp_path / "bad", d_init="xavier")


def test_init_from_can_leave_the_discriminators_fresh(data_root, tmp_path, caplog):
    trainer = make_trainer(data_root, tmp_path / "run")
    trainer.step()
    folder = export_now(trainer, tmp_path / "run")
    fresh = make_trainer(data_root, tmp_path / "fresh", init_discriminators=False, d_init="he")
    before = {k: v.clone() for k, v in fresh.d_target.state_dict().items()}
    with caplog.at_level("INFO"):
        fresh.init_from(folder)
    assert "anime discriminator starts fresh" in caplog.text
    assert all(torch.equal(fresh.d_target.state_dict()[k], v) for k, v in before.items())
    assert fresh.images_seen == 4  # the generator and the image count still come from the checkpoint


def test_batch_norm_calibration_averages_its_chunks():
    """Calibrating in chunks gives the statistics of one pass over all the images, not those of the
    last chunk (what momentum 1 per chunk would give) nor the layers' own slow 0.01."""
    from train.export import calibrate_batch_norm
    from twingan.config import TwinGANConfig

    torch.manual_seed(0)
    model = TwinGAN(TwinGANConfig(**{**TINY_MODEL, "norm": "batch"}))
    images = (torch.rand(64, 3, 1, 1) + 0.2 * torch.randn(64, 3, 16, 16)).clamp(0, 1)  # a flat colour each
    tags = torch.zeros(64, model.config.vocab.dim)

    def stats(first: int, chunk: int) -> dict[str, torch.Tensor]:
        calibrated = calibrate_batch_norm(model, [(images[first:], "human", "anime", tags[first:])], chunk=chunk)
        return {k: v for k, v in calibrated.named_buffers() if "running" in k}

    whole, chunked, last = stats(0, 64), stats(0, 16), stats(48, 64)
    # The encoder's first norm sees no normalised input, so the mean of the chunks' means is exact.
    first = "encoder.blocks.16.0.norm.running_mean"
    assert (chunked[first] - whole[first]).abs().max() < 1e-5 < (last[first] - whole[first]).abs().max()
    # Deeper layers see each chunk normalised by its own statistics: close to one pass, not equal.
    gap = sum((chunked[k] - whole[k]).abs().mean() for k in whole)
    assert gap < 0.6 * sum((last[k] - whole[k]).abs().mean() for k in whole)


def test_a_reverse_run_exports_statistics_of_the_anime_to_human_path(data_root, tmp_path):
    from train.export import calibrate_batch_norm, calibrated, calibration_passes

    trainer = make_trainer(data_root, tmp_path / "run", reverse=True, model={**TINY_MODEL, "norm": "batch"})
    for _ in range(2):
        trainer.step()
    paths = [(source, target) for _, source, target, _ in calibration_passes(trainer, 16)]
    assert paths == [("anime", "anime"), ("human", "human"), ("anime", "human"), ("human", "anime")]
    model = calibrated(trainer, 16, 1.0)
    passes = calibration_passes(trainer, 16)
    without = calibrate_batch_norm(trainer.ema, passes[:2] + passes[3:])  # the export before reverse had a pass
    images, source, target, tags = passes[2]
    with torch.no_grad():
        # In eval mode anime -> human normalises as training did, with that batch's statistics (up to
        # the running variance's n / (n - 1)); with the human reconstructions' statistics it does not.
        batch_stats = copy.deepcopy(model).train()(images, source, target, tags)
        error = (model(images, source, target, tags) - batch_stats).abs().max().item()
        error_without = (without(images, source, target, tags) - batch_stats).abs().max().item()
    assert error < 2e-3 and error_without > 10 * error, (error, error_without)
    forward_only = make_trainer(data_root, tmp_path / "fwd", reverse=False, model={**TINY_MODEL, "norm": "batch"})
    assert ("anime", "human") not in [(s, t) for _, s, t, _ in calibration_passes(forward_only, 16)]

"""`python -m train.evaluate` on tiny generated test splits with a tiny model and judge."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from tests.test_train import _write_images
from train.evaluate import EVAL_TAGGER, main
from twingan.checkpoint import save_pretrained
from twingan.config import TwinGANConfig
from twingan.model import TwinGAN
from twingan.tagger import Tagger, TaggerConfig
from twingan.vocab import BINARY_TAGS, DEFAULT_VOCAB

DATA = Path(os.environ.get("TWINGAN_DATA") or Path(__file__).resolve().parent.parent.parent / "shared" / "data")


@pytest.fixture()
def setup(tmp_path) -> dict:
    data = tmp_path / "data"
    _write_images(data / "selfie2anime" / "testA", 6, 16, seed=3)
    _write_images(data / "selfie2anime" / "testB", 6, 16, seed=4)
    names = _write_images(data / "anime_tags" / "images", 12, 16, seed=5)
    with (data / "anime_tags" / "tags.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "split", "hair_color", "eye_color", *BINARY_TAGS])
        for i, name in enumerate(names):
            w.writerow([name, "test", DEFAULT_VOCAB.hair[i % 12] if i % 3 else "", DEFAULT_VOCAB.eye[i % 10],
                        *[0] * len(BINARY_TAGS)])
    torch.manual_seed(0)
    model = TwinGAN(TwinGANConfig(resolution=16, base_channels=32, max_channels=16, norm="instance", tag_embed_dim=8))
    judge = Tagger(TaggerConfig(resolution=16, channels=(8, 16), feature_dim=8))
    return {"data": data, "model": save_pretrained(model, tmp_path / "model"),
            "judge": save_pretrained(judge.eval(), tmp_path / "judge"), "tmp": tmp_path}


def test_evaluate_writes_metrics_and_grid(setup, capsys):
    out = setup["tmp"] / "eval" / "metrics.json"
    assert main([str(setup["model"]), "--data", str(setup["data"]), "--judge", str(setup["judge"]),
                 "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["n_selfies"] == 6 and m["n_anime_reference"] == 18 - 6
    assert set(m["hair_per_colour"]) == set(DEFAULT_VOCAB.hair) and set(m["eye_per_colour"]) == set(DEFAULT_VOCAB.eye)
    assert 0 <= m["hair_accuracy"] <= 1 and 0 <= m["eye_accuracy"] <= 1
    assert m["fd"] >= 0 and m["fd_floor"] >= 0 and m["recon_l1_human"] > 0
    assert out.with_suffix(".png").is_file()
    assert "hair colour control" in capsys.readouterr().out


def test_evaluate_refuses_the_training_tagger(setup, capsys):
    judge = str(EVAL_TAGGER.parent / "tagger")
    if not (Path(judge) / "model.safetensors").is_file():
        pytest.skip("checkpoints/tagger is not there")
    assert main([str(setup["model"]), "--data", str(setup["data"]), "--judge", judge]) == 2
    assert "cannot judge its own generator" in capsys.readouterr().err


def test_evaluate_missing_checkpoint_is_a_clear_error(setup, capsys):
    assert main([str(setup["tmp"] / "nope"), "--data", str(setup["data"]), "--judge", str(setup["judge"])]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not (DATA / "selfie2anime" / "testA").is_dir(), reason=f"real data not found at {DATA}")
def test_floor_is_below_ceiling_on_real_data(tmp_path):
    """With the real evaluation tagger, real anime is closer to real anime than raw selfies are."""
    if not (EVAL_TAGGER / "model.safetensors").is_file():
        pytest.skip("checkpoints/tagger-eval is not there")
    model = save_pretrained(TwinGAN(TwinGANConfig(resolution=16, base_channels=32, max_channels=16)), tmp_path / "m")
    out = tmp_path / "e.json"
    assert main([str(model), "--data", str(DATA), "--limit", "20", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["fd_floor"] < m["fd_ceiling"]

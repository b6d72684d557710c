"""`python -m train.tag_gain`: the eye (or hair) gain read best by the training tagger on train selfies,
without costing the other group's control or input retrieval, written into the checkpoint's config.json."""

from __future__ import annotations

import json

import pytest
import torch

from samples import write_smooth_images, write_tags_csv
from train.tag_gain import best_gain, gain_table, main
from twingan.checkpoint import load_pretrained, save_pretrained
from twingan.config import TwinGANConfig
from twingan.model import TwinGAN
from twingan.tagger import Tagger, TaggerConfig
from twingan.vocab import DEFAULT_VOCAB


@pytest.fixture()
def setup(tmp_path) -> dict:
    data = tmp_path / "data"
    write_smooth_images(data / "selfie2anime" / "trainA", 6, 16, seed=3)
    names = write_smooth_images(data / "anime_tags" / "images", 10, 16, seed=5)
    write_tags_csv(data / "anime_tags" / "tags.csv", names, "train")
    torch.manual_seed(0)
    model = TwinGAN(TwinGANConfig(resolution=16, base_channels=32, max_channels=16, norm="instance", tag_embed_dim=8))
    tagger = Tagger(TaggerConfig(resolution=16, channels=(8, 16), feature_dim=8))
    return {"data": data, "model": save_pretrained(model, tmp_path / "model"),
            "tagger": save_pretrained(tagger.eval(), tmp_path / "tagger"), "tmp": tmp_path}


def test_writes_the_gain_the_tagger_reads_best(setup, capsys):
    out = setup["tmp"] / "gains.json"
    args = [str(setup["model"]), "--data", str(setup["data"]), "--tagger", str(setup["tagger"]),
            "--gains", "2,1,0.5", "--count", "6", "--write", "--out", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["n_selfies"] == 6 and list(report["table"]) == ["0.5", "1", "2"]
    table = {float(g): row for g, row in report["table"].items()}
    assert report["best"] == best_gain(table, report["tolerance"])
    for row in table.values():
        assert len(row["per_class"]) == 10
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["other_accuracy"] <= 1 and 0 <= row["retrieval"] <= 1
    model = load_pretrained(TwinGAN, setup["model"])
    assert model.config.eye_gain == report["best"] and model.config.hair_gain == 1.0
    printed = capsys.readouterr().out
    assert "| eye gain | eye accuracy | hair accuracy | retrieval |" in printed and f"wrote eye_gain = {report['best']:g}" in printed


def test_the_table_leaves_the_model_gain_as_it_was(setup):
    model = load_pretrained(TwinGAN, setup["model"])
    tagger = load_pretrained(Tagger, setup["tagger"])
    selfies = torch.rand(4, 3, 16, 16)
    tags = torch.tensor([DEFAULT_VOCAB.encode(hair="red", eye="blue")] * 3)
    table = gain_table(model, tagger, selfies, tags, "hair", (1.0, 3.0), progress=False)
    assert list(table) == [1.0, 3.0] and len(table[3.0]["per_class"]) == 12
    assert set(table[1.0]) == {"accuracy", "per_class", "other_accuracy", "retrieval"}
    assert model.config.hair_gain == 1.0 and model.config.eye_gain == 1.0


def _row(accuracy: float, other: float = 1.0, retrieval: float = 0.7) -> dict:
    return {"accuracy": accuracy, "other_accuracy": other, "retrieval": retrieval}


def test_ties_go_to_the_smaller_gain():
    assert best_gain({1.0: _row(0.9), 1.25: _row(0.95), 1.5: _row(0.95)}) == 1.25
    assert best_gain({1.0: _row(0.9), 2.0: _row(0.8)}) == 1.0


def test_a_gain_that_costs_the_other_group_or_the_retrieval_is_not_chosen():
    table = {1.0: _row(0.90), 1.25: _row(0.95, other=0.995, retrieval=0.695),
             1.5: _row(0.97, other=0.98), 2.0: _row(0.99, retrieval=0.65)}
    assert best_gain(table, tolerance=0.01) == 1.25
    assert best_gain(table, tolerance=0.1) == 2.0
    with pytest.raises(ValueError, match="needs gain 1"):
        best_gain({1.25: _row(0.95)})


def test_an_evaluation_judge_or_a_bad_gain_is_a_clear_error(setup, capsys):
    judge = setup["tmp"] / "tagger-eval"
    save_pretrained(load_pretrained(Tagger, setup["tagger"]), judge)
    base = [str(setup["model"]), "--data", str(setup["data"])]
    assert main([*base, "--tagger", str(judge)]) == 2
    assert "tagger-eval judges must stay untouched" in capsys.readouterr().err
    assert main([*base, "--tagger", str(setup["tagger"]), "--gains", "1,0"]) == 2
    assert "--gains must be comma-separated positive numbers, got '1,0'" in capsys.readouterr().err
    assert main([*base, "--tagger", str(setup["tagger"]), "--gains", "one"]) == 2
    assert "--gains must be comma-separated positive numbers, got 'one'" in capsys.readouterr().err
    assert main([*base, "--tagger", str(setup["tagger"]), "--tolerance", "-0.1"]) == 2
    assert "--tolerance must be >= 0" in capsys.readouterr().err

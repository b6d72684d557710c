"""Checkpoint folders: round trips, fp16 export, Hub fallback and clear errors for bad folders."""

import json
import time

import pytest
import torch

import twingan.checkpoint as ckpt
from twingan import CheckpointError, TwinGAN, TwinGANConfig, load_model, save_pretrained


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = TwinGAN(TwinGANConfig(resolution=32, base_channels=64, max_channels=32, domains=("human", "cat")))
    m.train()(torch.rand(4, 3, 32, 32), "human", "cat")  # give the running statistics real values
    return m.eval()


def test_round_trip_is_bit_identical(model, tmp_path):
    save_pretrained(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config  # rebuilt from config.json alone
    x = torch.rand(2, 3, 32, 32)
    tags = torch.rand(2, model.config.tag_dim)
    with torch.no_grad():
        assert torch.equal(loaded.translate(x, "human", "cat", tags), model.translate(x, "human", "cat", tags))


def test_fp16_export_loads_and_stays_close(model, tmp_path):
    save_pretrained(model, tmp_path / "half", dtype=torch.float16)
    save_pretrained(model, tmp_path / "full")
    half_size = (tmp_path / "half" / "model.safetensors").stat().st_size
    assert half_size < 0.6 * (tmp_path / "full" / "model.safetensors").stat().st_size
    loaded = load_model(tmp_path / "half")
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        diff = (loaded.translate(x, "human", "cat") - model.translate(x, "human", "cat")).abs().max()
    assert diff < 2e-2


def test_missing_weights_file(model, tmp_path):
    save_pretrained(model, tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_model(tmp_path / "m")


def test_missing_folder():
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model("no/such/dir/here")


@pytest.mark.parametrize("key, value, message", [
    ("max_channels", 16, "wrong shape"),  # a valid architecture, but not the saved weights'
    ("model_type", "tagger", "holds a 'tagger' model, not a 'twingan' model"),
    ("n_heads", 8, "does not know: n_heads"),
    ("resolution", 48, "power of two"),
])
def test_edited_config_is_a_clear_error(model, tmp_path, key, value, message):
    save_pretrained(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config[key] = value
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path / "m")


def test_weights_that_are_not_safetensors(model, tmp_path):
    save_pretrained(model, tmp_path / "m")
    torch.save(model.state_dict(), tmp_path / "m" / "model.safetensors")  # a pickle under the right name
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(tmp_path / "m")


def test_missing_tensor(model, tmp_path):
    from safetensors.torch import load_file, save_file

    save_pretrained(model, tmp_path / "m")
    state = load_file(tmp_path / "m" / "model.safetensors")
    del state["generator.to_rgb.32.weight"]
    save_file(state, tmp_path / "m" / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing generator.to_rgb.32.weight"):
        load_model(tmp_path / "m")


def test_hub_miss_falls_back_to_bundled_copy_quickly(model, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ckpt, "LOCAL_CHECKPOINTS", tmp_path)
    save_pretrained(model, tmp_path / "twingan-test")
    start = time.perf_counter()
    loaded = load_model("someone/twingan-test")
    assert time.perf_counter() - start < 5
    assert loaded.config == model.config
    assert "using the bundled copy" in caplog.text


def test_hub_miss_without_bundled_copy_names_both(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(ckpt, "LOCAL_CHECKPOINTS", tmp_path)
    with pytest.raises(CheckpointError, match="no bundled copy"):
        load_model("someone/not-there")

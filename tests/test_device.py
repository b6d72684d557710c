"""The device-call path on the CPU: data pack, time-boxed schedule, compact state, and the whole
`scripts/device_train.sh` end to end on a tiny pack with a 20-second budget."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from samples import write_smooth_images
from train.config import ConfigError, load_config
from train.device.device import MAX_FILE, MAX_FILES, compact_state, join_parts, write_parts
from train.device.pack import PackError, build_pack, check_ignored, describe_pack, load_pack, read_pack, room_mib
from train.engine import Trainer, stage_at_time
from twingan.checkpoint import load_pretrained
from twingan.model import TwinGAN
from twingan.vocab import BINARY_TAGS, DEFAULT_VOCAB

REPO = Path(__file__).resolve().parent.parent
TAGGER = REPO / "checkpoints" / "tagger"



@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """gpu-128's folder layout (selfie2anime, anime_tags) with a few synthetic images; no CelebA."""
    root = tmp_path_factory.mktemp("data")
    write_smooth_images(root / "selfie2anime" / "trainA", 12, 40, seed=1)
    write_smooth_images(root / "selfie2anime" / "trainB", 12, 40, seed=2)
    names = write_smooth_images(root / "anime_tags" / "images", 12, 40, seed=3)
    with (root / "anime_tags" / "tags.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "split", "hair_color", "eye_color", *BINARY_TAGS])
        for i, name in enumerate(names):  # every third row lacks its colours: the tagger may fill them
            known = i % 3 != 0
            w.writerow([name, "train", DEFAULT_VOCAB.hair[i % 12] if known else "",
                        DEFAULT_VOCAB.eye[i % 10] if known else "", *[(i + j) % 2 for j in range(len(BINARY_TAGS))]])
    return root


def tiny_overrides(root: Path | None = None) -> list[str]:
    values = {
        "model": {"resolution": 32, "base_channels": 32, "max_channels": 16, "skip_resolutions": [8, 16],
                  "tag_embed_dim": 8},
        "source_attributes_csv": "", "source_attributes_images": "",
        "batch_size": 4, "batch_by_resolution": {}, "threads": 1, "num_samples": 4,
        "log_every": 5, "sample_every": 20, "checkpoint_every": 50, "export_every_minutes": 0,
        "stage_fractions": [0.2], "export_margin_minutes": 0.1,
    }
    if root is not None:
        values["data_root"] = str(root)
    return [f"{k}={json.dumps(v)}" for k, v in values.items()]


@pytest.fixture(scope="module")
def pack(data_root, tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pack") / "tiny.npz"
    build_pack(load_config("gpu-128", tiny_overrides(data_root)), out, max_mib=1, quality=80, threshold=0.5,
               tagger=str(TAGGER), workers=1)
    return out


def test_pack_holds_both_domains_with_labels(pack):
    meta, arrays = read_pack(pack)
    assert meta["resolution"] == 32 and meta["format"] == "webp"
    assert [p["name"] for p in meta["parts"]["source"]] == ["selfie2anime/trainA"]
    assert [p["name"] for p in meta["parts"]["target"]] == ["selfie2anime/trainB", "anime_tags/images"]
    source, target = load_pack(pack, DEFAULT_VOCAB, 32)
    assert source.images.shape == (12, 3, 32, 32) and target.images.shape == (24, 3, 32, 32)
    assert source.images.dtype == torch.uint8
    # CSV colours survive (the tagged part is shuffled); untagged folders and empty CSV cells are
    # unknown unless the tagger filled them
    filled = torch.from_numpy(arrays["target_filled"])
    from_csv = target.hair[12:][(target.hair[12:] >= 0) & ~filled[12:]]
    assert sorted(from_csv.tolist()) == sorted(i % 12 for i in range(12) if i % 3 != 0)
    assert meta["filled"]["hair"] + meta["filled"]["eye"] >= int(filled.sum())
    assert ((target.hair >= 0) | (target.eye >= 0))[:12].eq(filled[:12]).all()  # trainB: only what the tagger filled
    assert target.binary_known[12:].all() and not target.binary_known[:12].any()
    assert (source.hair < 0).all()
    # decoding at half the pack's resolution area-pools
    half, _ = load_pack(pack, DEFAULT_VOCAB, 16)
    ref = torch.nn.functional.adaptive_avg_pool2d(source.images.float(), 16)
    assert (half.images.float() - ref).abs().max() <= 1
    assert "source: 12 images" in describe_pack(pack)


def test_pack_refuses_more_than_the_cap(data_root, tmp_path):
    out = tmp_path / "big.npz"
    with pytest.raises(PackError, match="cap"):
        build_pack(load_config("gpu-128", tiny_overrides(data_root)), out, max_mib=0.01, threshold=0, workers=1)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_pack_must_be_ignored_by_git(tmp_path):
    if subprocess.run(["git", "-C", str(REPO), "rev-parse"], capture_output=True).returncode:
        pytest.skip("not a git checkout")
    with pytest.raises(PackError, match="info/exclude"):
        check_ignored(REPO / "train" / "not-ignored.npz")
    check_ignored(REPO / "runs" / "x.npz")  # runs/ is in .gitignore
    check_ignored(tmp_path / "x.npz")  # outside the repository


def test_pack_cap_defaults_to_what_the_working_tree_leaves(tmp_path):
    """The device call takes 64 MiB with the pack: tracked and untracked files count, ignored ones do not."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("pack/\n")
    (tmp_path / "pack").mkdir()
    for name, mib in (("tracked.bin", 2), ("untracked.bin", 1), ("pack/old.npz", 10)):
        (tmp_path / name).write_bytes(bytes(mib << 20))
    subprocess.run(["git", "-C", str(tmp_path), "add", "tracked.bin"], check=True)
    assert room_mib(tmp_path) == 64 - 3 - 1
    outside = tmp_path.parent / f"{tmp_path.name}-not-a-checkout"
    outside.mkdir()
    with pytest.raises(PackError, match="--max-mib"):
        room_mib(outside)


def test_gpu_continue_config_is_the_128px_checkpoints_model_at_one_stage():
    """gpu-128-continue trains on from checkpoints/twingan-selfie2anime-128: the same architecture, at 128 px only."""
    saved = json.loads((REPO / "checkpoints" / "twingan-selfie2anime-128" / "training.json").read_text())
    cfg = load_config("gpu-128-continue", ["budget_minutes=7"])
    assert cfg.resolutions == [128] and not cfg.stage_fractions
    for key, value in saved["config"]["model"].items():
        assert json.loads(json.dumps(getattr(cfg.model, key))) == value, key


def test_pack_refuses_a_foreign_vocabulary_and_resolution(pack):
    from twingan.vocab import TagVocab

    with pytest.raises(PackError, match="vocabulary"):
        load_pack(pack, TagVocab(hair=("red", "blue")), 32)
    with pytest.raises(PackError, match="64 px"):
        load_pack(pack, DEFAULT_VOCAB, 64)


def test_time_schedule_and_its_checks():
    cfg = load_config("gpu-128", ["budget_minutes=8", "stage_fractions=[0.125, 0.25]"])
    assert cfg.resolutions == [16, 32, 64, 128]
    assert stage_at_time(0, cfg) == (16, 1.0)
    assert stage_at_time(60, cfg) == (32, 0.0)  # 16 px lasts 12.5% of 8 minutes
    assert stage_at_time(90, cfg) == (32, 0.5)  # then half of 32 px's 25% fades in
    assert stage_at_time(180, cfg) == (64, 0.0) and stage_at_time(300, cfg) == (128, 0.0)
    assert stage_at_time(10**6, cfg) == (128, 1.0)
    with pytest.raises(ConfigError, match="budget_minutes"):
        load_config("gpu-128", ["budget_minutes=0"])
    with pytest.raises(ConfigError, match="leave part"):
        load_config("gpu-128", ["stage_fractions=[0.4]"])
    with pytest.raises(ConfigError, match="shorter"):
        load_config("gpu-128", ["budget_minutes=1", "export_margin_minutes=1"])


def test_gpu_config_dry_run_reads_the_pack(pack, capsys):
    from train.__main__ import main

    assert main(["--config", "gpu-128", "--dry-run", *tiny_overrides(), f"pack={pack}"]) == 0
    out = capsys.readouterr().out
    assert f"data: {pack}" in out and "fractions of the 7" in out and '"source": 12' in out


def test_compact_state_forms_load_into_a_trainer(pack, tmp_path):
    cfg = load_config("gpu-128", [*tiny_overrides(), f"pack={pack}", f"run_dir={tmp_path}"])
    from train.domains import load_domains

    trainer = Trainer(cfg, *load_domains(cfg))
    trainer.train_seconds = 5.0
    trainer.step()
    state = trainer.state_dict()
    full, form, n_full = compact_state(state, 10**9)
    assert form == "full" and full is state
    _, form, n_moments = compact_state(state, n_full - 1)
    assert form == "moments-bf16" and n_moments < n_full
    weights, form, n_weights = compact_state(state, n_moments - 1)
    assert form == "weights" and "opt_g" not in weights and n_weights < n_moments
    _, form, _ = compact_state(state, 100)
    assert form == "skipped"
    for s in (compact_state(state, n_full - 1)[0], weights):
        write_parts(s, tmp_path)
        other = Trainer(cfg, trainer.source, trainer.target)
        other.load_state_dict(torch.load(join_parts(tmp_path, tmp_path / "joined.pt"), weights_only=True))
        assert other.train_seconds == 5.0 and other.step_count == 1
        for a, b in zip(other.ema.parameters(), trainer.ema.parameters()):
            assert torch.equal(a, b)
        for p in tmp_path.glob("state.pt.*"):
            p.unlink()


@pytest.mark.slow
def test_device_script_end_to_end_on_the_cpu(pack, tmp_path):
    """The device call's command with a 20 s budget: export, grid, state, figures and latency in OUT."""
    out, run = tmp_path / "out", tmp_path / "run"
    env = {**os.environ, "OUT": str(out), "PACK": str(pack), "RUN_DIR": str(run), "PYTHON": sys.executable,
           "PEAK_SECONDS": "0.3", "LATENCY_REPEATS": "3", "PROFILE_STEPS": "2", "OMP_NUM_THREADS": "1"}
    budget = 20 / 60
    proc = subprocess.Popen(["bash", str(REPO / "scripts" / "device_train.sh"), f"{budget:.4f}", *tiny_overrides()],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=420)  # generous: on a loaded machine torch imports alone take minutes
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the script and every step it started
        output, _ = proc.communicate()
    log = (out / "device.log").read_text() if (out / "device.log").exists() else output
    assert proc.returncode == 0, log[-4000:]
    files = sorted(p.name for p in out.iterdir())
    expected = {"config.json", "model.safetensors", "samples.png", "device.json", "device.log", "state.pt.000"}
    assert expected <= set(files)
    assert len(files) <= MAX_FILES and all((out / f).stat().st_size <= MAX_FILE for f in files)
    report = json.loads((out / "device.json").read_text())
    assert report["env"]["matmul_bf16_tflops"] > 0
    training = report["training"]
    assert training["images"] > 0 and training["stages"]
    # the loop stops export_margin_minutes (6 s) early, so the export lands inside the budget; the 5 s
    # beyond it are slack for a busy CI machine, where one step or the export can take seconds
    assert training["wall_seconds"] <= 20 + 5, training
    last = report["at_last_stage"]
    assert last["images_per_s"] > 0 and 0 < last["fraction_of_peak"]
    assert report["state"]["form"] == "full"
    assert report["latency"]["batch_1"]["ms_per_face"] > 0 and report["latency"]["dtype"] == "float32"
    profile = report["profile"]
    assert profile["wall_ms_per_step"] > 0 and profile["top_ops"] and profile["batch"] == 4
    assert {"batch", "g_forward", "d_update", "g_update", "ema"} <= set(profile["phases_cpu_ms_per_step"])
    assert "images/s" in log and "of the bf16 matmul peak" in log
    model = load_pretrained(TwinGAN, out)
    res = model.config.resolution
    assert res in (16, 32) and next(model.parameters()).dtype == torch.float32
    y = model.translate(torch.rand(2, 3, res, res), tags=torch.zeros(2, model.config.tag_dim))
    assert y.shape == (2, 3, res, res) and torch.isfinite(y).all()


def test_latency_path_runs_without_facenet_and_gradio(tiny_checkpoints):
    """The device has neither: importing the inference path must not need them, and detection is skipped."""
    code = ("import sys; sys.modules['facenet_pytorch'] = None; sys.modules['gradio'] = None\n"
            "from train.device.device import main\n"
            f"main(['latency', {str(tiny_checkpoints.twingan)!r}, '--faces', '2', '--repeats', '1'])\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])["latency"]
    assert report["detection"].startswith("skipped") and report["batch_2"]["ms_per_face"] > 0

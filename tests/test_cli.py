"""`python -m twingan translate` and `push`: outputs, skip reasons, reruns, exit codes, upload selection.

Translation uses the tiny random checkpoint (the portraits are noise; faces are found on the real
example photos). Push never touches the network: the token, the reachability probe and HfApi are
replaced where a test gets that far.
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ASTRONAUT, ROOT
from twingan import cli

CAMERA = ROOT / "examples" / "camera.png"
NOT_AN_IMAGE = "The file is not an image (use JPEG, PNG or WebP)"


@pytest.fixture
def photos(tmp_path) -> Path:
    """The two example photos, a file that is not an image and a flat grey PNG (no face)."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    shutil.copy(ASTRONAUT, folder / "astronaut.png")
    shutil.copy(CAMERA, folder / "more" / "camera.png")
    (folder / "broken.jpg").write_bytes(b"these bytes are not a JPEG\n" * 10)
    Image.new("RGB", (256, 256), (128, 128, 128)).save(folder / "grey.png")
    (folder / "notes.txt").write_text("not an image suffix: not picked up from a folder\n")
    return folder


def translate(capsys, tiny_checkpoints, *args) -> tuple[int, str, str]:
    rc = cli.main(["translate", *map(str, args), "--checkpoint", str(tiny_checkpoints.twingan), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def outputs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_translate_writes_portraits_skips_bad_files_and_a_rerun_skips_done_ones(photos, tiny_checkpoints, capsys):
    out = photos / "anime"  # inside the input folder: a rerun must not translate its own outputs
    rc, stdout, _ = translate(capsys, tiny_checkpoints, photos, "--out", out, "--paste", "--hair", "auto")
    assert rc == 0
    assert outputs(out) == ["astronaut_face1.png", "astronaut_pasted.jpg", "more/camera_face1.png",
                            "more/camera_pasted.jpg"]
    portrait = Image.open(out / "astronaut_face1.png")
    assert portrait.format == "PNG" and portrait.size == (256, 256)  # as the app shows it
    pasted = Image.open(out / "astronaut_pasted.jpg")
    assert pasted.format == "JPEG" and pasted.size == Image.open(ASTRONAUT).size
    assert f"skipped {photos / 'broken.jpg'}: {NOT_AN_IMAGE}\n" in stdout
    assert f"skipped {photos / 'grey.png'}: No face found in the image\n" in stdout
    assert "notes.txt" not in stdout
    assert stdout.rstrip().endswith(f"2 translated (2 faces), 2 skipped, 0 already done; outputs in {out}")

    os.utime(out / "astronaut_face1.png", (0, 0))
    rc, stdout, _ = translate(capsys, tiny_checkpoints, photos, "--out", out, "--paste", "--hair", "auto")
    assert rc == 0 and os.stat(out / "astronaut_face1.png").st_mtime == 0  # not written again
    assert "0 translated, 2 skipped, 2 already done (--overwrite redoes them)" in stdout
    assert outputs(out) == ["astronaut_face1.png", "astronaut_pasted.jpg", "more/camera_face1.png",
                            "more/camera_pasted.jpg"]

    rc, stdout, _ = translate(capsys, tiny_checkpoints, photos, "--out", out, "--hair", "auto", "--overwrite")
    assert rc == 0 and os.stat(out / "astronaut_face1.png").st_mtime > 0
    assert "2 translated (2 faces), 2 skipped, 0 already done" in stdout


def test_colour_controls_reach_the_portrait(tiny_checkpoints, tmp_path, capsys):
    portraits = {}
    for hair in ("blonde", "blue"):
        rc, _, _ = translate(capsys, tiny_checkpoints, ASTRONAUT, "--out", tmp_path / hair, "--hair", hair,
                             "--eye", "green", "--eye-strength", "0.5")
        assert rc == 0
        portraits[hair] = np.asarray(Image.open(tmp_path / hair / "astronaut_face1.png"), dtype=np.float32)
    assert np.abs(portraits["blonde"] - portraits["blue"]).mean() > 0.1


@pytest.mark.parametrize("flag, keyword, with_flag, without", [
    ("--no-upscale", "upscale", False, True),
    ("--keep-background", "background", "photo", "plain"),
])
def test_switches_reach_the_pipeline(flag, keyword, with_flag, without, tiny_checkpoints, tmp_path, monkeypatch,
                                     capsys):
    from twingan.pipeline import TranslationPipeline

    asked = []
    original = TranslationPipeline.translate

    def translate_and_record(self, photo, **kwargs):
        asked.append(kwargs[keyword])
        return original(self, photo, **kwargs)

    monkeypatch.setattr(TranslationPipeline, "translate", translate_and_record)
    assert translate(capsys, tiny_checkpoints, ASTRONAUT, "--out", tmp_path / "a", flag)[0] == 0
    assert translate(capsys, tiny_checkpoints, ASTRONAUT, "--out", tmp_path / "b")[0] == 0
    assert asked == [with_flag, without]


def test_nothing_translated_exits_non_zero(photos, tiny_checkpoints, tmp_path, capsys):
    rc, stdout, _ = translate(capsys, tiny_checkpoints, photos / "broken.jpg", photos / "grey.png",
                              tmp_path / "missing.png", photos / "notes.txt", "--out", tmp_path / "out")
    assert rc == 1
    assert f"skipped {tmp_path / 'missing.png'}: no such file or folder" in stdout
    assert f"skipped {photos / 'notes.txt'}: {NOT_AN_IMAGE}" in stdout  # named directly: tried, whatever its suffix
    assert "0 translated, 4 skipped, 0 already done" in stdout
    assert not (tmp_path / "out").exists() or outputs(tmp_path / "out") == []


def test_bad_controls_and_checkpoint_get_one_line_errors(tiny_checkpoints, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["translate", str(ASTRONAUT), "--out", str(tmp_path), "--hair-strength", "1.5"])
    assert exit_info.value.code == 2
    assert "--hair-strength: must be between 0 and 1, got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["translate", str(ASTRONAUT), "--out", str(tmp_path), "--eye", "keep"])
    assert "invalid choice: 'keep'" in capsys.readouterr().err
    assert cli.main(["translate", str(ASTRONAUT), "--out", str(tmp_path), "--checkpoint", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("twingan translate: ") and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_video_is_skipped_without_the_video_module(tiny_checkpoints, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "twingan.video", None)  # importing it raises ModuleNotFoundError
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypmp42")
    rc, stdout, _ = translate(capsys, tiny_checkpoints, clip, "--out", tmp_path / "out")
    assert rc == 1
    assert f"skipped {clip}: video is not supported in this install" in stdout


def test_video_goes_to_the_video_module(tiny_checkpoints, tmp_path, monkeypatch, capsys):
    calls = []

    def translate_video(pipeline, src, dst_path, **kwargs):
        calls.append((pipeline, Path(src), kwargs))
        Path(dst_path).write_bytes(b"video")

    video = types.ModuleType("twingan.video")
    video.translate_video = translate_video
    monkeypatch.setitem(sys.modules, "twingan.video", video)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "clip.MOV").write_bytes(b"a video")
    shutil.copy(ASTRONAUT, folder / "astronaut.png")
    rc, stdout, _ = translate(capsys, tiny_checkpoints, folder, "--out", tmp_path / "out", "--hair", "red",
                              "--eye-strength", "0.25")
    assert rc == 0 and "2 translated (1 face), 0 skipped" in stdout
    assert outputs(tmp_path / "out") == ["astronaut_face1.png", "clip_anime.mp4"]
    [(pipeline, src, kwargs)] = calls
    assert src == folder / "clip.MOV" and hasattr(pipeline, "translate")
    assert kwargs == dict(hair="red", hair_strength=1.0, eye="auto", eye_strength=0.25, progress=True)
    rc, stdout, _ = translate(capsys, tiny_checkpoints, folder, "--out", tmp_path / "out")
    assert rc == 0 and "0 translated, 0 skipped, 2 already done" in stdout and len(calls) == 1


def test_help_lists_the_outputs_and_options(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["python -m twingan", "translate", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("twingan", run_name="__main__")  # what `python -m twingan` runs
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for part in ("<stem>_face<N>.png", "<stem>_pasted.jpg", "<stem>_anime.mp4", "--overwrite", "--paste",
                 "--max-faces", "--hair-strength", "--no-upscale", "aqua", "Exit status 1"):
        assert part in text, part


# ---------------------------------------------------------------------------------------------
# push


def test_space_files_are_the_app_and_nothing_else():
    files = [f.as_posix() for f in cli.space_files(ROOT)]
    for name in ("app.py", "requirements.txt", "README.md", "twingan/pipeline.py", "twingan/cli.py",
                 "checkpoints/twingan-selfie2anime-128/model.safetensors", "checkpoints/twingan-selfie2anime-128/config.json",
                 "checkpoints/twingan-selfie2anime/model.safetensors",
                 "checkpoints/tagger/model.safetensors", "checkpoints/human-hair/model.safetensors",
                 "examples/astronaut.png", "docs/before_after.png"):
        assert name in files, name
    assert {f.split("/")[0] for f in files} == {"app.py", "requirements.txt", "README.md", "twingan",
                                                "checkpoints", "examples", "docs"}
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc") or "/." in f]
    sizes = [(ROOT / f).stat().st_size for f in files]
    assert max(sizes) < 10_000_000 and sum(sizes) < cli.SPACE_MAX_BYTES and len(files) <= cli.MAX_UPLOAD_FILES
    cli.check_upload(ROOT, [Path(f) for f in files], space=True)  # README front matter with sdk: gradio


def _touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_space_files_leave_out_data_runs_tests_and_caches(tmp_path):
    _touch(tmp_path, "app.py", "requirements.txt", "README.md", "twingan/model.py", "twingan/__pycache__/model.pyc",
           "twingan/model.pyc", "checkpoints/a/model.safetensors", "checkpoints/a/config.json",
           "checkpoints/a/discriminators/anime.safetensors", "checkpoints/.cache/huggingface/x.json",
           "checkpoints/a/.model.safetensors.partial", "examples/face.png", "data/selfies/1.png",
           "runs/cpu/checkpoint.pt", "tests/test_x.py", "train/loop.py", "docs/results.png", ".git/HEAD",
           "notes.txt", ".cache/x")
    assert [f.as_posix() for f in cli.space_files(tmp_path)] == [
        "app.py", "requirements.txt", "README.md", "twingan/model.py", "checkpoints/a/config.json",
        "checkpoints/a/model.safetensors", "examples/face.png", "docs/results.png"]


def test_space_upload_refuses_a_selection_over_the_size_limit(tmp_path):
    _touch(tmp_path, "app.py", "requirements.txt", "examples/face.png")
    (tmp_path / "README.md").write_text("---\nsdk: gradio\napp_file: app.py\n---\n# The app\n")
    cli.check_upload(tmp_path, cli.space_files(tmp_path), space=True)
    os.truncate(tmp_path / "examples" / "face.png", cli.SPACE_MAX_BYTES + 1)  # sparse: no disk used
    with pytest.raises(cli.CommandError, match="more than 500.0 MB: data or a run folder"):
        cli.check_upload(tmp_path, cli.space_files(tmp_path), space=True)
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# The app\n")
    with pytest.raises(cli.CommandError, match="the front matter has no sdk:"):
        cli.check_upload(tmp_path, cli.space_files(tmp_path), space=True)


def test_checkpoint_files_take_weights_from_sub_folders(tmp_path):
    _touch(tmp_path, "config.json", "model.safetensors", "discriminators/anime.safetensors",
           "discriminators/human.safetensors", "README.md", "training.json", "report.json", "checkpoint.pt",
           ".cache/huggingface/old.safetensors", "samples/1.png")
    assert [f.as_posix() for f in cli.checkpoint_files(tmp_path)] == [
        "config.json", "README.md", "training.json", "discriminators/anime.safetensors",
        "discriminators/human.safetensors", "model.safetensors"]
    (tmp_path / "training.json").unlink()
    assert "training.json" not in [f.as_posix() for f in cli.checkpoint_files(tmp_path)]


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    folder = tmp_path / "ckpt"
    _touch(folder, "config.json", "model.safetensors", "discriminators/anime.safetensors")
    (folder / "README.md").write_text("---\nlicense: mit\ntags: [gan]\n---\n\n# A model\n")
    return folder


def test_push_dry_run_lists_files_and_sizes(checkpoint, capsys):
    (checkpoint / "model.safetensors").write_bytes(b"\0" * 1500)
    assert cli.main(["push", str(checkpoint), "user/model", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("would upload 4 files (1.5 kB)")
    assert "1.5 kB  model.safetensors" in out and "discriminators/anime.safetensors" in out


@pytest.mark.parametrize("readme, message", [
    (None, "README.md is missing"),
    ("# A model\n\nNo front matter.\n", "README.md has no YAML front matter"),
    ("---\nlicense: [mit\n---\n# A model\n", "the front matter is not valid YAML"),
])
def test_push_refuses_a_model_card_without_front_matter(checkpoint, capsys, readme, message):
    if readme is None:
        (checkpoint / "README.md").unlink()
    else:
        (checkpoint / "README.md").write_text(readme)
    assert cli.main(["push", str(checkpoint), "user/model", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_push_refuses_a_folder_that_is_not_a_checkpoint(checkpoint, capsys):
    (checkpoint / "config.json").unlink()
    assert cli.main(["push", str(checkpoint), "user/model", "--dry-run"]) == 1
    assert "is not a checkpoint folder: config.json missing" in capsys.readouterr().err
    assert cli.main(["push", str(checkpoint), "not-a-repo-id", "--dry-run"]) == 1
    assert "REPO_ID must be user/name" in capsys.readouterr().err


@pytest.fixture
def no_network(monkeypatch):
    """Make any network use fail the test."""
    import socket

    import huggingface_hub

    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to use the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", refuse)


@pytest.mark.parametrize("target", [["CHECKPOINT", "user/model"], ["--space", "user/space"]])
def test_push_without_a_token_fails_at_once(checkpoint, no_network, monkeypatch, capsys, target):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    argv = ["push", *[str(checkpoint) if t == "CHECKPOINT" else t for t in target]]
    start = time.perf_counter()
    rc = cli.main(argv)
    assert time.perf_counter() - start < 1.0
    assert rc == 1
    assert capsys.readouterr().err == "twingan push: no Hugging Face token: log in with `hf auth login` or set HF_TOKEN\n"


def test_push_offline_or_unreachable_fails_at_once(checkpoint, no_network, monkeypatch, capsys):
    import huggingface_hub

    import twingan.checkpoint

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["push", str(checkpoint), "user/model"]) == 1
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(twingan.checkpoint, "_hub_reachable", lambda timeout: False)
    start = time.perf_counter()
    assert cli.main(["push", str(checkpoint), "user/model"]) == 1
    assert time.perf_counter() - start < 1.0
    assert "huggingface.co is not reachable" in capsys.readouterr().err


def test_push_space_uploads_exactly_the_selected_files(no_network, monkeypatch, capsys):
    import huggingface_hub

    import twingan.checkpoint

    calls = {}

    def create_repo(self, repo_id, **kwargs):
        calls["create"] = (repo_id, kwargs)
        return f"https://huggingface.co/spaces/{repo_id}"

    def upload_folder(self, **kwargs):
        calls["upload"] = kwargs

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(twingan.checkpoint, "_hub_reachable", lambda timeout: True)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    assert cli.main(["push", "--space", "user/space", "--private"]) == 0
    repo_id, create = calls["create"]
    assert repo_id == "user/space" and create["repo_type"] == "space" and create["space_sdk"] == "gradio"
    assert create["private"] is True and create["exist_ok"] is True
    upload = calls["upload"]
    assert Path(upload["folder_path"]) == ROOT and upload["repo_type"] == "space"
    assert upload["allow_patterns"] == [f.as_posix() for f in cli.space_files(ROOT)]
    assert "uploaded" in capsys.readouterr().out

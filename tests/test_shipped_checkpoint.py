"""The bundled translator: it loads, translates, and meets the quality gates of the README's results
table on 50 test selfies, measured by `train.evaluate` (independent feature net, tagger-eval, input
retrieval, fixed-pattern share)."""

import pytest
import torch

from conftest import ROOT, data_root
from twingan import load_model

CHECKPOINT = ROOT / "checkpoints" / "twingan-selfie2anime"

pytestmark = pytest.mark.skipif(not CHECKPOINT.is_dir(), reason=f"no bundled checkpoint at {CHECKPOINT}")


@pytest.fixture(scope="module")
def model():
    return load_model(CHECKPOINT)


def test_translates_a_face_sized_input_to_a_finite_image(model):
    res = model.config.resolution
    tags = torch.tensor([model.config.vocab.encode(hair="pink", eye="blue")])
    with torch.no_grad():
        out = model.translate(torch.rand(1, 3, res, res), tags=tags)
    assert out.shape == (1, 3, res, res)
    assert torch.isfinite(out).all()
    assert out.std() > 0.01  # not a flat image


@pytest.fixture(scope="module")
def metrics():
    """train.evaluate on the first 50 test selfies (50 testB + 250 anime_tags test faces), no two-sample test."""
    from train.evaluate import evaluate_checkpoint

    data = data_root()
    if not (data / "selfie2anime" / "testA").is_dir() or not (data / "anime_tags" / "tags.csv").is_file():
        pytest.skip(f"test selfies or anime test faces not found under {data} (set TWINGAN_DATA)")
    return evaluate_checkpoint(CHECKPOINT, data, limit=50, two_sample_steps=0)


def _gate(key: str, fails_now: str = ""):
    """A gate; `fails_now` names why the shipped checkpoint misses it (strict xfail: remove the mark once it passes)."""
    marks = [pytest.mark.xfail(strict=True, reason=f"the shipped checkpoint misses this gate: {fails_now}")] if fails_now else []
    return pytest.param(key, marks=marks, id=key)


@pytest.mark.parametrize("key", [
    _gate("fixed_pattern_share"),
    _gate("indep_fd_fraction"),
    _gate("hair_accuracy_confirmed"),
    _gate("eye_accuracy_confirmed"),
    _gate("retrieval_top1"),
])
def test_quality_gate_on_50_test_selfies(metrics, key):
    from train.evaluate import GATES, passes

    assert metrics["n_selfies"] == 50
    direction, threshold = GATES[key]
    assert passes(metrics, key), f"{key} = {metrics[key]:.3f}, gate {direction} {threshold}"


def test_the_judge_confirms_the_common_colours_and_not_the_rarest_eyes(metrics):
    """tagger-eval's held-out recall on all 1000 anime_tags test faces: it reads the common eye
    colours right but not orange (2 faces) or aqua (1 of 5), so those two do not count toward the gate."""
    assert {"blue", "brown", "red", "purple", "green", "yellow"} <= set(metrics["eye_confirmed"])
    assert not {"orange", "aqua"} & set(metrics["eye_confirmed"])
    assert sum(metrics["eye_judge_support_real"].values()) > 800  # every tagged test face, not the 250 of --limit 50

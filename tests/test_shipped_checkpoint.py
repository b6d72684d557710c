"""The bundled translator: it loads, translates, and keeps its hair-colour control (quality gate)."""

import pytest
import torch

from conftest import ROOT, data_root
from twingan import load_model
from twingan.checkpoint import load_pretrained
from twingan.tagger import Tagger

CHECKPOINT = ROOT / "checkpoints" / "twingan-selfie2anime"
HAIR_GATE = 0.80  # issue 6: hair colour control accuracy over the 12 colours, judged by tagger-eval

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


def test_hair_colour_gate_on_50_test_selfies(model):
    from train.data import decode_images, list_images

    folder = data_root() / "selfie2anime" / "testA"
    if not folder.is_dir():
        pytest.skip(f"test selfies not found at {folder} (set TWINGAN_DATA)")
    judge = load_pretrained(Tagger, ROOT / "checkpoints" / "tagger-eval")
    vocab = model.config.vocab
    images, _, _ = decode_images(folder, list_images(folder)[:50], model.config.resolution)
    selfies = images.float() / 255  # (50, 3, R, R)
    correct = 0
    with torch.no_grad():
        for i, colour in enumerate(vocab.hair):
            tags = torch.tensor([vocab.encode(hair=colour)] * len(selfies))
            probs = judge.tag_probs(model.translate(selfies, tags=tags))[:, vocab.hair_slice]
            correct += int((probs.argmax(1) == i).sum())
    accuracy = correct / (len(selfies) * len(vocab.hair))
    assert accuracy >= HAIR_GATE, f"hair colour control {accuracy:.1%} < {HAIR_GATE:.0%}"

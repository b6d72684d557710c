"""train.judge_check: the two checks of the eye-colour judges, on stand-ins whose answers are known."""

from __future__ import annotations

import pytest
import torch

from conftest import data_root
from train.judge_check import eye_reading_shares, format_report, main, painted_figure, painted_iris_readings
from train.losses import eye_prototypes
from twingan.config import TwinGANConfig

VOCAB = TwinGANConfig().vocab


class _GreyModel:
    """Every portrait is mid-grey, whatever is asked."""

    config = TwinGANConfig()

    def translate(self, x, source, target, tags):
        return torch.full_like(x, 0.5)


class _PixelJudge:
    """Reads the eye colour whose RGB some pixel of the image is closest to (a judge that looks at irises)."""

    vocab = VOCAB

    def tag_probs(self, images):
        rgb = eye_prototypes(self.vocab)  # (E, 3)
        d = (images[:, None] - rgb[None, :, :, None, None]).abs().mean(2).flatten(2).amin(-1)  # (N, E)
        probs = torch.zeros(len(images), self.vocab.dim)
        probs[:, self.vocab.eye_slice] = torch.softmax(-50 * d, -1)
        return probs


class _BrownJudge(_PixelJudge):
    """Reads brown eyes on everything (a judge with no eye for colour)."""

    def tag_probs(self, images):
        probs = torch.zeros(len(images), self.vocab.dim)
        probs[:, self.vocab.eye_slice.start + self.vocab.eye.index("brown")] = 1
        return probs


def test_eye_reading_shares_count_the_top_reading():
    images = torch.cat([torch.full((3, 3, 8, 8), 0.5), eye_prototypes(VOCAB)[VOCAB.eye.index("pink")].view(1, 3, 1, 1)
                        .expand(1, 3, 8, 8)])
    shares = eye_reading_shares(_PixelJudge(), images, VOCAB)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["pink"] == pytest.approx(0.25)


def test_a_painted_iris_is_read_by_a_judge_that_looks_at_the_eyes_only():
    n = 4
    selfies = torch.rand(n, 3, 32, 32)
    points = torch.tensor([[0.38, 0.35], [0.66, 0.36]]).expand(n, 2, 2)
    tags = torch.zeros(n, VOCAB.dim)
    readings = painted_iris_readings(_GreyModel(), [_PixelJudge(), _BrownJudge()], selfies, points, tags)
    for colour in VOCAB.eye:
        assert readings["painted"][colour][0] == 1.0  # the iris is what this judge reads
        assert readings["painted"][colour][1] == readings["plain"][colour][1]  # this one never looks
    assert sum(readings["plain"][c][0] for c in VOCAB.eye) <= 1.0  # grey is read as one colour at most
    report = format_report(["pixel", "brown"], [{c: 0.1 for c in VOCAB.eye}] * 2, 10, readings, n, 0.04, VOCAB)
    assert "| pixel | 10.0 -> 100.0 |" in report and "| brown | 10.0 -> 10.0 |" in report


def test_painted_figure_has_a_row_per_selfie_and_two_columns_per_colour(tmp_path):
    from PIL import Image

    from train.figures import CELL, LABEL

    n = 3
    points = torch.tensor([[0.38, 0.35], [0.66, 0.36]]).expand(n, 2, 2)
    path = painted_figure(_GreyModel(), _PixelJudge(), torch.rand(n, 3, 32, 32), points, torch.zeros(n, VOCAB.dim),
                          ["orange", "pink"], 0.04, tmp_path / "fig" / "judge.png")
    sheet = Image.open(path)
    assert sheet.size == (5 * CELL, LABEL + n * CELL)
    # The painted orange cell shows the orange iris at the left eye.
    x, y = int(2 * CELL + 0.38 * CELL), int(LABEL + 0.35 * CELL)
    r, g, b = sheet.getpixel((x, y))[:3]
    assert r > 200 and 100 < g < 180 and b < 80


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    assert main(["checkpoints/twingan-selfie2anime", "--data", str(tmp_path / "nowhere")]) == 2
    assert "not found" in capsys.readouterr().err


def test_shipped_judges_on_real_close_ups():
    data = data_root()
    if not (data / "selfie2anime" / "testB").is_dir():
        pytest.skip(f"the selfie2anime test faces are not under {data}")
    from train.judge_check import _load_close_ups
    from train.evaluate import EVAL_TAGGER
    from twingan.checkpoint import load_pretrained
    from twingan.tagger import Tagger

    judge = load_pretrained(Tagger, EVAL_TAGGER)
    close = _load_close_ups(data, 64)
    shares = eye_reading_shares(judge, close, judge.vocab)
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-4)
    # The judge reads the common colours on real close-ups; it reads orange almost never (the
    # README's and model card's reading of the eye gate rests on this).
    assert shares["blue"] > 0.1 and shares["brown"] > 0.1
    assert shares["orange"] < 0.01


def test_main_end_to_end_on_the_shipped_checkpoint(tmp_path, capsys):
    data = data_root()
    if not (data / "selfie2anime" / "trainA").is_dir() or not (data / "anime_tags").is_dir():
        pytest.skip(f"the selfie2anime train selfies or anime_tags are not under {data}")
    from PIL import Image

    from train.config import REPO_ROOT

    figure = tmp_path / "judge.png"
    args = [str(REPO_ROOT / "checkpoints" / "twingan-selfie2anime"), "--data", str(data), "--count", "4",
            "--threads", "1", "--figure", str(figure)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "real close-up anime faces" in out and "| tagger-eval |" in out and "| tagger-eval-residual |" in out
    assert Image.open(figure).size[1] > 2 * 96  # a caption row and one row per example photo

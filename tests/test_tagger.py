"""Tagger, tag data reading, the training CLI and the metrics; CPU, seconds."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import data_root
from train.augment import augment
from train.helpers import tagger as train_tagger
from train.tags_data import TagsDataError, read_celeba_hair, read_tags_csv
from twingan.checkpoint import load_pretrained, save_pretrained
from twingan.metrics import control_accuracy, frechet_distance, input_retrieval, kernel_inception_distance
from twingan.tagger import HumanHairClassifier, HumanHairConfig, Tagger, TaggerConfig
from twingan.vocab import DEFAULT_VOCAB, TAG_DIM

REPO = Path(__file__).resolve().parent.parent
DATA = data_root()
TINY = TaggerConfig(resolution=32, channels=(8, 16), feature_dim=16)
COLUMNS = ["file", "split", "hair_color", "eye_color", *DEFAULT_VOCAB.binary]


# --- vocabulary ---------------------------------------------------------------------------------

def test_vocab_round_trip():
    for hair in DEFAULT_VOCAB.hair:
        for eye in DEFAULT_VOCAB.eye:
            vec = DEFAULT_VOCAB.encode(hair, eye, {"smile": 1.0})
            out = DEFAULT_VOCAB.decode(vec)
            assert (out["hair"], out["eye"], out["binary"]["smile"]) == (hair, eye, 1.0)
    assert DEFAULT_VOCAB.decode(DEFAULT_VOCAB.encode())["hair"] is None
    with pytest.raises(ValueError, match="unknown hair colour 'teal'"):
        DEFAULT_VOCAB.encode("teal")


# --- model --------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoder", ["conv", "residual"])
def test_tagger_shapes_and_probabilities(encoder):
    model = Tagger(replace(TINY, encoder=encoder)).eval()
    images = torch.rand(3, 3, 50, 40)  # any size: resized internally
    out = model(images)
    v = model.vocab
    assert out["hair_logits"].shape == (3, len(v.hair))
    assert out["eye_logits"].shape == (3, len(v.eye))
    assert out["binary_logits"].shape == (3, len(v.binary))
    assert out["features"].shape == (3, TINY.feature_dim) == model.features(images).shape
    probs = model.tag_probs(images)
    assert probs.shape == (3, TAG_DIM)
    torch.testing.assert_close(probs[:, v.hair_slice].sum(1), torch.ones(3))
    torch.testing.assert_close(probs[:, v.eye_slice].sum(1), torch.ones(3))
    assert model.tag(images)[0]["hair"] in v.hair
    # The GAN backpropagates through the frozen tagger, also through the internal resize.
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    model.tag_probs(x)[:, 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 32, 32))


@pytest.mark.parametrize("encoder", ["conv", "residual"])
def test_save_load_round_trip_identical(tmp_path, encoder):
    model = Tagger(replace(TINY, encoder=encoder)).eval()
    save_pretrained(model, tmp_path / "t")
    loaded = load_pretrained(Tagger, tmp_path / "t")
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded.tag_probs(x), model.tag_probs(x), rtol=0, atol=0)
    assert loaded.config == model.config


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown tagger encoder 'vit'; choose one of: conv, residual"):
        Tagger(replace(TINY, encoder="vit"))


@pytest.mark.parametrize("favoured", ["black", "brown", "silver"])
def test_human_hair_predict_names(favoured):
    """predict() names the class whose logit is highest, and pairs each name with its own probability."""
    model = HumanHairClassifier(HumanHairConfig(resolution=32, channels=(8, 16), feature_dim=16)).eval()
    logits = torch.tensor([0.0, 1.0, 0.5, -1.0])
    logits[model.config.classes.index(favoured)] = 3.0
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(logits)
    preds = model.predict(torch.rand(2, 3, 40, 40))
    expected = dict(zip(model.config.classes, logits.softmax(-1).tolist()))
    assert [name for name, _ in preds] == [favoured, favoured]
    assert preds[1][1] == pytest.approx(expected)


def test_augment_keeps_hue():
    """Flips, crops and brightness move all channels together: a uniform colour keeps its hue."""
    red = torch.zeros(4, 3, 16, 16)
    red[:, 0] = 0.8
    out = augment(red, torch.Generator().manual_seed(0))
    assert out.shape == red.shape
    assert torch.all(out[:, 0] > out[:, 1]) and torch.allclose(out[:, 1], out[:, 2])


# --- training CLI on a tiny synthetic set -------------------------------------------------------

def make_dataset(root: Path, n_train: int = 32, n_test: int = 8, rows_override=None) -> Path:
    """Solid-colour 'faces' whose hair colour is the image colour, plus a tags.csv."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    palette = {"red": (220, 30, 30), "blue": (40, 60, 220), "green": (40, 170, 60), "blonde": (240, 210, 100)}
    rows = []
    for i in range(n_train + n_test):
        hair = list(palette)[i % len(palette)]
        eye = ("blue", "red")[i % 2]
        name = f"{i:04d}.jpg"
        img = Image.new("RGB", (40, 40), palette[hair])
        img.paste((0, 0, 0) if eye == "red" else (255, 255, 255), (10, 15, 30, 25))
        img.save(root / "images" / name)
        rows.append([name, "train" if i < n_train else "test", hair, eye] + [i % 2] * len(DEFAULT_VOCAB.binary))
    if rows_override:
        rows = rows_override(rows)
    with (root / "tags.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([COLUMNS, *rows])
    return root


def tiny_args(data: Path, out: Path, epochs: int = 6) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--epochs", str(epochs), "--resolution", "32",
            "--channels", "8", "16", "--batch-size", "8", "--lr", "1e-2", "--no-progress", "--threads", "1"]


def test_training_smoke_loss_goes_down(tmp_path):
    data = make_dataset(tmp_path / "data")
    report = train_tagger.main(tiny_args(data, tmp_path / "out"))
    assert report["train_loss"][-1] < report["train_loss"][0]
    for name in ("config.json", "model.safetensors", "report.json", "confusion.png", "README.md"):
        assert (tmp_path / "out" / name).is_file()
    model = load_pretrained(Tagger, tmp_path / "out")
    assert model.config.resolution == 32
    assert report["test"]["hair"]["n"] == 8 and report["skipped_images"] == 0


def test_cli_missing_csv(tmp_path):
    with pytest.raises(TagsDataError, match="tags CSV not found"):
        train_tagger.main(tiny_args(tmp_path / "nowhere", tmp_path / "out"))


def test_cli_unknown_colour(tmp_path):
    def bad(rows):
        rows[3][2] = "teal"
        return rows
    data = make_dataset(tmp_path / "data", rows_override=bad)
    with pytest.raises(TagsDataError, match=r"tags.csv:5: unknown hair colour 'teal'"):
        train_tagger.main(tiny_args(data, tmp_path / "out"))


def test_cli_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    (data / "images" / "0001.jpg").write_bytes(b"not a jpeg")
    (data / "images" / "0002.jpg").unlink()
    report = train_tagger.main(tiny_args(data, tmp_path / "out", epochs=1))
    assert report["skipped_images"] == 2
    assert "skipped 2 unreadable image(s)" in capsys.readouterr().err


def test_cli_all_images_unreadable(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=4, n_test=2)
    for f in (data / "images").iterdir():
        f.write_bytes(b"broken")
    with pytest.raises(TagsDataError, match="none of the 4 images .* could be read"):
        train_tagger.main(tiny_args(data, tmp_path / "out"))


def test_read_tags_csv_masks_empty_colours(tmp_path):
    def blank(rows):
        rows[0][2], rows[1][3] = "", ""
        return rows
    data = make_dataset(tmp_path / "data", rows_override=blank)
    rows = read_tags_csv(data / "tags.csv")
    vec, hair_known, eye_known = rows["0000.jpg"][:3]
    assert not hair_known and eye_known and sum(vec[DEFAULT_VOCAB.hair_slice]) == 0
    assert rows["0001.jpg"].hair_known and not rows["0001.jpg"].eye_known
    assert len(read_tags_csv(data / "tags.csv", split="test")) == 8


@pytest.mark.parametrize("task, folder", [("anime", "anime_tags"), ("human_hair", "celeba")])
def test_default_data_folder_follows_twingan_data(monkeypatch, tmp_path, task, folder):
    monkeypatch.setenv("TWINGAN_DATA", str(tmp_path / "elsewhere"))
    args = train_tagger.parse_args(["--task", task, "--out", str(tmp_path / "out")])
    assert args.data == tmp_path / "elsewhere" / folder


def test_tagger_data_is_decoded_like_the_gan_data(tmp_path):
    """One data path: the tagger trains on exactly the pixels and labels the GAN's loader gives it."""
    from train.data import load_tagged
    from train.tags_data import AnimeTagsDataset

    data = make_dataset(tmp_path / "data", n_train=6, n_test=2)
    (data / "images" / "0002.jpg").write_bytes(b"not a jpeg")
    tagger_set = AnimeTagsDataset(data, "train", 24)
    gan_set = load_tagged(data / "tags.csv", data / "images", 24, DEFAULT_VOCAB, "train")
    assert len(tagger_set) == len(gan_set) == 5 and len(tagger_set.skipped) == gan_set.skipped == 1
    assert torch.equal(tagger_set.images, gan_set.images)
    assert torch.equal(tagger_set.tags, gan_set.tags) and torch.equal(tagger_set.hair, gan_set.hair)
    assert tagger_set.hair.tolist() == [DEFAULT_VOCAB.hair_index(h) for h in ("red", "blue", "blonde", "red", "blue")]


# --- metrics ------------------------------------------------------------------------------------

def test_frechet_distance_self_zero_and_grows():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 16))
    assert frechet_distance(a, a) < 1e-6
    near = frechet_distance(a, rng.normal(size=(500, 16)))
    far = frechet_distance(a, rng.normal(loc=1.0, size=(500, 16)))
    wide = frechet_distance(a, 3 * rng.normal(size=(500, 16)))
    assert near < far and near < wide
    assert abs(far - 16) < 3  # mean shift of 1 in 16 dims adds ~16


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(3)
    a = rng.normal(size=(400, 8))
    b = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 0.3
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb - 2 * linalg.sqrtm(sa @ sb).real)
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_frechet_distance_near_singular_is_finite():
    """Fewer samples than dimensions: singular covariances must not give NaN or complex values."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(20, 64)), rng.normal(size=(20, 64))
    value = frechet_distance(torch.tensor(a, dtype=torch.float32), b)
    assert np.isfinite(value) and value > 0
    assert frechet_distance(a, a) < 1e-6


def test_kid_same_distribution_near_zero():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same, _ = kernel_inception_distance(a, b, subsets=5, subset_size=200)
    diff, _ = kernel_inception_distance(a, b + 1, subsets=5, subset_size=200)
    assert abs(same) < 0.1 * diff


def test_control_accuracy():
    requested = torch.tensor([0, 0, 2, 2])
    probs = torch.zeros(4, TAG_DIM)
    probs[torch.arange(4), torch.tensor([0, 1, 2, 2])] = 1  # one miss for colour 0
    out = control_accuracy(requested, probs)
    assert out["accuracy"] == 0.75
    assert out["per_class"] == {"blonde": 0.5, "black": 1.0}


# --- shared data and shipped checkpoints --------------------------------------------------------

def test_input_retrieval_tells_input_dependent_outputs_from_a_template():
    g = torch.Generator().manual_seed(0)
    inputs = torch.rand(40, 3, 32, 32, generator=g)
    # A recolouring keeps the grey layout: every output finds its own input.
    recoloured = (inputs * torch.tensor([0.5, 1.0, 0.8])[None, :, None, None] + 0.1).clamp(0, 1)
    kept = input_retrieval(inputs, recoloured)
    assert kept["top1"] == 1.0 and kept["median_rank"] == 1
    # One picture for everyone: nothing to retrieve and no spread.
    template = input_retrieval(inputs, inputs[:1].expand(40, -1, -1, -1))
    assert template["spread"] == pytest.approx(0.0, abs=1e-6)
    assert template["top1"] <= 0.05
    # Outputs of other inputs: right only by chance.
    shuffled = input_retrieval(inputs, inputs.roll(1, 0))
    assert shuffled["top1"] == 0.0 and shuffled["median_rank"] > 1
    with pytest.raises(ValueError, match="equal sets"):
        input_retrieval(inputs, inputs[:5])


needs_anime = pytest.mark.skipif(not (DATA / "anime_tags" / "tags.csv").is_file(),
                                 reason=f"shared data not found at {DATA} (set TWINGAN_DATA)")


@needs_anime
def test_real_tags_csv_reads():
    rows = read_tags_csv(DATA / "anime_tags" / "tags.csv", split="test")
    assert len(rows) == 1000
    assert sum(r.hair_known for r in rows.values()) > 900


@needs_anime
@pytest.mark.parametrize("name", ["tagger", "tagger-eval", "tagger-eval-residual"])
def test_shipped_tagger_reads_hair_colour(name):
    from train.tags_data import AnimeTagsDataset

    if not (REPO / "checkpoints" / name / "model.safetensors").is_file():
        pytest.skip(f"checkpoints/{name} not trained yet")
    model = load_pretrained(Tagger, REPO / "checkpoints" / name)
    test = AnimeTagsDataset(DATA / "anime_tags", "test", model.config.resolution, limit=200)
    report = train_tagger.evaluate_tagger(model, test)
    assert report["hair"]["top1"] > 0.8


@pytest.mark.skipif(not (DATA / "celeba" / "attributes.csv").is_file(),
                    reason=f"CelebA data not found at {DATA} (set TWINGAN_DATA)")
def test_celeba_hair_labels():
    labels = read_celeba_hair(DATA / "celeba" / "attributes.csv")
    assert 3000 < len(labels) < 10000 and set(labels.values()) == {0, 1, 2, 3}

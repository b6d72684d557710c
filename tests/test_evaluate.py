"""`python -m train.evaluation` on tiny generated test splits with a tiny model, judge and feature net;
the direction of each independent metric on real and synthetic cases."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import torch

from samples import write_smooth_images, write_tags_csv
from train.evaluation.__main__ import main
from train.evaluation.checkpoint import EVAL_TAGGER, FEATNET
from train.evaluation.model_outputs import _fd_triplet, colour_control
from twingan.checkpoint import load_pretrained, save_pretrained
from twingan.config import TwinGANConfig
from twingan.featnet import FeatureNet, FeatureNetConfig
from twingan.model import TwinGAN
from twingan.tagger import Tagger, TaggerConfig
from twingan.vocab import DEFAULT_VOCAB

DATA = Path(os.environ.get("TWINGAN_DATA") or Path(__file__).resolve().parent.parent.parent / "shared" / "data")


@pytest.fixture()
def setup(tmp_path) -> dict:
    data = tmp_path / "data"
    write_smooth_images(data / "selfie2anime" / "testA", 6, 16, seed=3)
    write_smooth_images(data / "selfie2anime" / "testB", 6, 16, seed=4)
    names = write_smooth_images(data / "anime_tags" / "images", 12, 16, seed=5)
    write_tags_csv(data / "anime_tags" / "tags.csv", names, "test", hair_known=lambda i: i % 3 != 0)
    torch.manual_seed(0)
    model = TwinGAN(TwinGANConfig(resolution=16, base_channels=32, max_channels=16, norm="instance", tag_embed_dim=8))
    judge = Tagger(TaggerConfig(resolution=16, channels=(8, 16), feature_dim=8))
    second = Tagger(TaggerConfig(resolution=16, channels=(8, 16), feature_dim=8, encoder="residual"))
    featnet = FeatureNet(FeatureNetConfig(resolution=16, channels=(8, 8), groups=4))
    return {"data": data, "model": save_pretrained(model, tmp_path / "model"),
            "judge": save_pretrained(judge.eval(), tmp_path / "judge"),
            "second": save_pretrained(second.eval(), tmp_path / "second"),
            "featnet": save_pretrained(featnet.eval(), tmp_path / "featnet"), "tmp": tmp_path}


def _args(setup: dict, *extra: str) -> list[str]:
    return [str(setup["model"]), "--data", str(setup["data"]), "--judge", str(setup["judge"]),
            "--featnet", str(setup["featnet"]), "--second-judge", str(setup["second"]), "--two-sample-steps", "3",
            "--app-two-sample-steps", "3", *extra]


def test_evaluate_writes_metrics_and_grid(setup, capsys):
    out = setup["tmp"] / "eval" / "metrics.json"
    assert main([*_args(setup), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["n_selfies"] == 6 and m["n_anime_reference"] == 18 - 6
    assert set(m["hair_per_colour"]) == set(DEFAULT_VOCAB.hair) and set(m["eye_per_colour"]) == set(DEFAULT_VOCAB.eye)
    # Every colour is requested for all 6 selfies, so the overall accuracy is the mean over colours.
    for group, suffix in itertools.product(("hair", "eye"), ("", "_second")):  # both judges read the same images
        per = m[f"{group}_per_colour{suffix}"].values()
        assert m[f"{group}_accuracy{suffix}"] == pytest.approx(sum(per) / len(per))
        # A mean of 6 values in [0, 1]: its standard error is at most that of three 0s and three 1s.
        assert 0 <= m[f"{group}_accuracy_stderr{suffix}"] <= (0.3 / 6) ** 0.5 + 1e-6
        assert all(v * 6 == pytest.approx(round(v * 6)) for v in per)  # k of 6 selfies
    for prefix in ("", "indep_"):
        fd, lo, hi = m[f"{prefix}fd"], m[f"{prefix}fd_floor"], m[f"{prefix}fd_ceiling"]
        expected = (fd - lo) / (hi - lo) if hi > lo else float("nan")  # no scale when the ceiling is not above
        assert m[f"{prefix}fd_fraction"] == pytest.approx(expected, nan_ok=True)
    assert m["two_sample_n_train"] == [3, 3] and m["two_sample_n_test"] == [3, 3] and m["two_sample_steps"] == 3
    assert m["two_sample_accuracy"] == pytest.approx((m["two_sample_accuracy_a"] + m["two_sample_accuracy_b"]) / 2)
    assert list(m["spread"]) == ["latent", "skip8", "skip16"]  # the tiny model reads skips at 8 and 16 px
    assert all(v["ratio"] == pytest.approx(v["human_std"] / v["anime_std"]) for v in m["spread"].values())
    assert m["fixed_pattern_share_selfies"] < 0.5 and m["recon_l1_human"] > 0  # 6 different images
    per_vector = m["retrieval_top1_per_vector"]  # the gated vector first, then 4 more drawn tag vectors
    assert len(per_vector) == 5 and per_vector[0] == m["retrieval_top1"]
    assert all(r * 6 == pytest.approx(round(r * 6)) for r in per_vector)  # k of 6 selfies
    assert out.with_suffix(".png").is_file()
    # The app's path: the 16 px test selfies are too small for the app (its message is kept), the two
    # example photos show one face each, and their crops and portraits are drawn beside the grid.
    assert m["app_selfies_n"] == 6 and m["app_selfies_detected"] == 0
    assert len(m["app_selfies_failed"]) == 6 and all("too small" in v for v in m["app_selfies_failed"].values())
    assert m["app_photos_faces_per_photo"] == {"astronaut.png": 1, "camera.png": 1} and m["app_photos_faces"] == 2
    assert m["app_two_sample_accuracy"] != m["app_two_sample_accuracy"] and "app_two_sample_n_test" not in m  # NaN: not run
    assert m["app_reference_n"] == 9 and m["app_sharpness_ratio_photos"] > 0  # 18 real anime faces, halved
    assert (out.parent / "metrics_photos.png").is_file()
    table = capsys.readouterr().out
    assert "two-sample test" in table and "trained against: tagger-eval FD" in table and "hair colour control" in table
    assert "sharpness ratio of the app's portraits of 2 faces in 2 real photos" in table
    assert "not run: only 0 portraits of test selfies" in table and "gate <= 80%: FAIL" in table
    assert "read by tagger-eval-residual" in table and m["second_judge"] == str(setup["second"])
    # Each judge on the 12 tagged real faces (testB's 6 are untagged): eye colour i % 10 of image i,
    # hair colour known for the 8 images with i % 3 != 0.
    for suffix in ("", "_second"):
        eye_n, hair_n = m[f"eye_judge_support_real{suffix}"], m[f"hair_judge_support_real{suffix}"]
        assert eye_n == {name: 2 if i < 2 else 1 for i, name in enumerate(DEFAULT_VOCAB.eye)}
        assert sum(hair_n.values()) == 8 and len(hair_n) == 8
        recall = m[f"eye_judge_recall_real{suffix}"]
        assert set(recall) == set(eye_n) and all(v * eye_n[k] == pytest.approx(round(v * eye_n[k])) for k, v in recall.items())
    assert "tagger-eval on real anime test faces, eye recall per colour" in table
    # 1 or 2 real faces per colour: too few for a judge to confirm any, so the gated readings are NaN (and fail).
    for group, suffix in itertools.product(("hair", "eye"), ("", "_second")):
        assert m[f"{group}_confirmed{suffix}"] == []
        assert m[f"{group}_accuracy_confirmed{suffix}"] != m[f"{group}_accuracy_confirmed{suffix}"]  # NaN
    assert "tagger-eval confirms 0 eye colours" in table


def test_judges_are_checked_on_every_tagged_face_whatever_the_limit(setup):
    from train.evaluation.data import load_test_sets

    full = load_test_sets(setup["data"], 16, DEFAULT_VOCAB)
    few = load_test_sets(setup["data"], 16, DEFAULT_VOCAB, limit=2)
    assert len(few["selfies"]) == 2 and len(few["anime"]) == 2 + 10  # 2 testB + 5x2 anime_tags faces
    assert torch.equal(few["tagged_anime"], full["tagged_anime"]) and len(full["tagged_anime"]) == 12
    assert torch.equal(few["tagged_tags"], full["tagged_tags"])


def test_confirmed_colours_need_enough_real_faces_read_right():
    from train.evaluation.model_outputs import CONFIRM_RECALL, CONFIRM_SUPPORT, confirmed_colours

    recall = {"blue": 0.9, "pink": CONFIRM_RECALL, "aqua": 0.2, "orange": 1.0, "black": 0.49}
    support = {"blue": 264, "pink": CONFIRM_SUPPORT, "aqua": 5, "orange": CONFIRM_SUPPORT - 1, "black": 15}
    assert confirmed_colours(recall, support) == ["blue", "pink"]  # aqua read too rarely, orange too few faces
    assert confirmed_colours(recall, {}) == []


def test_accuracy_over_counts_only_the_named_colours():
    from train.evaluation.model_outputs import accuracy_over

    names = ["blue", "pink", "orange"]
    hits = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)  # colours x 4 selfies
    assert accuracy_over(hits, names, names)[0] == pytest.approx(6 / 12)
    mean, stderr = accuracy_over(hits, names, ["blue", "pink"])
    assert mean == pytest.approx(0.75)
    assert stderr == pytest.approx((torch.tensor([1.0, 1.0, 0.5, 0.5]).std() / 2).item())
    assert accuracy_over(hits, names, ["blue"]) == (1.0, 0.0)
    nan_mean, nan_se = accuracy_over(hits, names, [])
    assert nan_mean != nan_mean and nan_se != nan_se


class _ColourEcho:
    """A stand-in model whose portrait carries the asked-for eye colour in channel 0 and the selfie's
    index in channel 1, and a reader that reads the colour right for the first `right` selfies only."""

    def __init__(self, right: int):
        self.config = TwinGANConfig()
        self.right = right

    def translate(self, x, source, target, tags):
        colour = tags[:, self.config.vocab.eye_slice].argmax(-1).float()
        return torch.stack([colour[:, None, None].expand(-1, 2, 2), x[:, 0]], 1)

    def tag_probs(self, portraits):
        vocab = self.config.vocab
        colour, selfie = portraits[:, 0, 0, 0].long(), portraits[:, 1, 0, 0].long()
        read = torch.where(selfie < self.right, colour, (colour + 1) % len(vocab.eye))
        probs = torch.zeros(len(portraits), vocab.dim)
        probs[torch.arange(len(portraits)), vocab.eye_slice.start + read] = 1
        return probs


def test_colour_control_standard_error_is_over_the_selfies():
    echo = _ColourEcho(right=3)
    selfies = torch.arange(8.0)[:, None, None, None].expand(-1, 1, 2, 2)  # selfie i holds i
    tags = torch.zeros(8, echo.config.vocab.dim)
    acc = colour_control(echo, selfies, tags, "eye", [echo])[0]
    # 3 of 8 selfies read right in every colour: accuracy 3/8, and the standard error of a 0/1 sample.
    per_selfie = torch.tensor([1.0] * 3 + [0.0] * 5)
    assert acc["accuracy"] == pytest.approx(3 / 8)
    assert acc["stderr"] == pytest.approx((per_selfie.std() / 8 ** 0.5).item())
    all_right = _ColourEcho(right=8)
    assert colour_control(all_right, selfies, tags, "eye", [all_right])[0]["stderr"] == 0


def test_quick_skips_the_two_sample_test(setup, capsys):
    out = setup["tmp"] / "quick.json"
    assert main([*_args(setup), "--quick", "--second-judge", "none", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert "two_sample_accuracy" not in m and "indep_fd" in m
    assert not any(k.startswith("app_two_sample") for k in m) and "app_sharpness_ratio_photos" in m
    assert "eye_accuracy" in m and "eye_accuracy_second" not in m and m["second_judge"] is None
    assert "two-sample test" not in capsys.readouterr().out


def test_reverse_is_measured_when_the_run_had_it_or_when_asked(setup, capsys):
    out = setup["tmp"] / "one-way.json"
    assert main([*_args(setup), "--quick", "--out", str(out)]) == 0
    assert not any(k.startswith("reverse_") for k in json.loads(out.read_text()))  # no training.json: one way
    (setup["model"] / "training.json").write_text(json.dumps({"config": {"reverse": True}}))
    capsys.readouterr()
    assert main([*_args(setup), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["reverse_n"] == 6 and m["reverse_two_sample_n_test"] == [3, 3] and 0 <= m["reverse_fixed_pattern_share"] <= 1
    assert m["reverse_retrieval_top1"] * 6 == pytest.approx(round(m["reverse_retrieval_top1"] * 6))  # k of 6
    assert m["reverse_two_sample_raw_accuracy"] == pytest.approx(
        (m["reverse_two_sample_raw_accuracy_a"] + m["reverse_two_sample_raw_accuracy_b"]) / 2)
    table = capsys.readouterr().out
    assert "anime -> human: two-sample test" in table and "anime -> human: input retrieval" in table
    (setup["model"] / "training.json").unlink()
    assert main([*_args(setup), "--quick", "--reverse", "--out", str(out)]) == 0
    assert "reverse_retrieval_top1" in json.loads(out.read_text())


def test_evaluate_refuses_the_training_tagger(setup, capsys):
    judge = str(EVAL_TAGGER.parent / "tagger")
    if not (Path(judge) / "model.safetensors").is_file():
        pytest.skip("checkpoints/tagger is not there")
    assert main([*_args(setup), "--judge", judge]) == 2
    assert "cannot judge its own generator" in capsys.readouterr().err


def test_evaluate_missing_checkpoint_is_a_clear_error(setup, capsys):
    assert main([str(setup["tmp"] / "nope"), *_args(setup)[1:]]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not (DATA / "selfie2anime" / "testA").is_dir(), reason=f"real data not found at {DATA}")
def test_floor_is_below_ceiling_on_real_data(tmp_path):
    """With the real evaluation tagger, real anime is closer to real anime than raw selfies are."""
    if not (EVAL_TAGGER / "model.safetensors").is_file() or not (FEATNET / "model.safetensors").is_file():
        pytest.skip("checkpoints/tagger-eval or checkpoints/featnet-eval is not there")
    model = save_pretrained(TwinGAN(TwinGANConfig(resolution=16, base_channels=32, max_channels=16)), tmp_path / "m")
    out = tmp_path / "e.json"
    assert main([str(model), "--data", str(DATA), "--limit", "20", "--quick", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["fd_floor"] < m["fd_ceiling"] and m["indep_fd_floor"] < m["indep_fd_ceiling"]


# --- the direction of each independent metric ---------------------------------------------------

def _real_sets(n: int) -> dict:
    """n test selfies and 3n real anime test faces (anime_tags), 64 px, floats in [0, 1]."""
    from train.data import decode_images, list_images
    from train.tags_data import read_tags_csv

    if not (DATA / "selfie2anime" / "testA").is_dir() or not (DATA / "anime_tags" / "tags.csv").is_file():
        pytest.skip(f"real data not found at {DATA}")
    folder = DATA / "selfie2anime" / "testA"
    selfies = decode_images(folder, list_images(folder)[:n], 64)[0]
    files = sorted(read_tags_csv(DATA / "anime_tags" / "tags.csv", split="test"))[: 3 * n]
    anime = decode_images(DATA / "anime_tags" / "images", files, 64)[0]
    return {"selfies": selfies.float() / 255, "anime": anime.float() / 255}


def test_a_fixed_grid_raises_the_fixed_pattern_share():
    from twingan.metrics import fixed_pattern_share

    anime = _real_sets(100)["anime"][:100]
    grid = torch.zeros(64, 64)
    grid[::8] = grid[:, ::8] = 0.15  # faint lines every 8 px, the same in every image
    real, gridded = fixed_pattern_share(anime), fixed_pattern_share((anime + grid).clamp(0, 1))
    assert real < 0.08 < gridded, (real, gridded)
    shifted = torch.stack([(a + grid.roll((i, 3 * i), (0, 1))).clamp(0, 1) for i, a in enumerate(anime)])
    assert fixed_pattern_share(shifted) < 0.08  # the same lines at a different place per image are no fixed pattern


def test_real_anime_scores_near_the_independent_fd_floor():
    if not (FEATNET / "model.safetensors").is_file():
        pytest.skip("checkpoints/featnet-eval is not there")
    sets = _real_sets(100)
    featnet = load_pretrained(FeatureNet, FEATNET)
    anime = sets["anime"]
    # Other real anime faces in the place of the translations: as close as the floor.
    m = _fd_triplet(featnet.features, anime[:100], anime[100:200], sets["selfies"], anime[200:])
    assert abs(m["fd_fraction"]) < 0.15, m
    assert m["fd_ceiling"] > 3 * m["fd_floor"], m
    # Blurring the anime faces moves them towards the ceiling.
    blurred = torch.nn.functional.avg_pool2d(anime[:100], 5, 1, 2, count_include_pad=False)
    assert _fd_triplet(featnet.features, blurred, anime[100:200], sets["selfies"], anime[200:])["fd_fraction"] > 0.1


def test_two_sample_test_tells_selfies_from_anime_and_not_a_set_from_itself():
    from twingan.metrics import classifier_two_sample_test

    sets = _real_sets(100)
    apart = classifier_two_sample_test(sets["selfies"], sets["anime"][:100], steps=60)
    assert apart["accuracy"] > 0.85, apart
    anime = sets["anime"][:200]
    same = classifier_two_sample_test(anime[:100], anime[100:], steps=60)
    assert 0.35 < same["accuracy"] < 0.65, same
    assert apart["n_train"] == (50, 50) and apart["n_test"] == (50, 50)


def test_two_sample_test_is_seeded_and_leaves_the_global_rng_alone():
    from twingan.metrics import classifier_two_sample_test

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(8, 3, 16, 16, generator=g), torch.rand(8, 3, 16, 16, generator=g) * 0.5
    torch.manual_seed(123)
    first = classifier_two_sample_test(a, b, steps=5, seed=1)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert classifier_two_sample_test(a, b, steps=5, seed=1) == first
    assert torch.equal(torch.rand(1), after)


def test_only_the_evaluation_reads_the_independent_feature_net():
    """No loss, data filter or app code may use featnet-eval, or its FD stops being independent: only
    the evaluation and the feature net's own trainer import `twingan.featnet` (lazy imports included)."""
    from test_imports import ROOT, import_graph, imported_modules

    graph = import_graph()
    graph.update({path.stem: imported_modules(path.stem, path, set(graph)) for path in ROOT.glob("*.py")})  # app.py
    users = {name for name, imports in graph.items() if "twingan.featnet" in imports}
    assert "train.evaluation.checkpoint" in users  # the check sees the import at all
    allowed = {"train.helpers.featnet"}
    assert not {u for u in users if u not in allowed and not u.startswith("train.evaluation.")}, \
        f"{sorted(users)} use the independent feature net"


def test_feature_net_shapes_and_contrastive_loss():
    from twingan.featnet import contrastive_loss

    net = FeatureNet(FeatureNetConfig(resolution=32, channels=(8, 16), groups=4, projection_dim=6)).eval()
    x = torch.rand(3, 3, 40, 40)  # resized to 32 px inside
    assert net.features(x).shape == (3, 16) and net(x).shape == (3, 6)
    assert torch.allclose(net(x).norm(dim=1), torch.ones(3))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net.features(torch.rand(3, 32, 32))
    g = torch.Generator().manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    matched, hit = contrastive_loss(z, z)
    unmatched, _ = contrastive_loss(z, torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1))
    assert hit.all() and hit.shape == (16,) and matched < unmatched


# --- what the user sees: the app's portraits ------------------------------------------------------

def _textures(n: int, seed: int, size: int = 128) -> torch.Tensor:
    """n stand-in faces (n, 3, size, size): coarse random shapes with fine grain, one distribution."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.nn.functional.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=size, mode="bicubic")
    return (coarse + 0.15 * torch.rand(n, 3, size, size, generator=g)).clamp(0, 1)


def test_sharpness_ratio_is_one_for_one_distribution_and_lower_for_a_blurred_copy():
    from train.evaluation.app_outputs import sharpness_with_stderr
    from train.helpers.hair_report import small_face
    from twingan.metrics import sharpness_ratio

    a, b = _textures(20, seed=0), _textures(20, seed=1)
    assert sharpness_ratio(a, b) == pytest.approx(1, abs=0.05)
    at_64, at_32 = sharpness_ratio(small_face(a, 64), b), sharpness_ratio(small_face(a, 32), b)
    assert at_32 < at_64 < 0.5, (at_64, at_32)
    ratio, stderr = sharpness_with_stderr(a, b)
    assert ratio == pytest.approx(sharpness_ratio(a, b)) and 0 < stderr < 0.05
    one = sharpness_with_stderr(a[:1], b)
    assert one[0] != one[0] and one[1] != one[1]  # NaN for a single image


def _checkered(images: torch.Tensor, amplitude: float = 0.08) -> torch.Tensor:
    """The images with a 1 px checkerboard on them: seen at 128 px, averaged away at 64 px."""
    size = images.shape[-1]
    board = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 * 2 - 1.0
    return (images + amplitude * board).clamp(0, 1)


def test_two_sample_test_at_128_px_sees_what_64_px_cannot():
    from twingan.metrics import classifier_two_sample_test

    a, b = _textures(40, seed=0), _textures(40, seed=1)
    same = classifier_two_sample_test(a, b, steps=30, batch=16, resolution=128)
    apart = classifier_two_sample_test(a, _checkered(b), steps=30, batch=16, resolution=128)
    blind = classifier_two_sample_test(a, _checkered(b), steps=30, batch=16, resolution=64)
    assert 0.3 < same["accuracy"] < 0.7, same
    assert apart["accuracy"] > 0.9, apart
    assert blind["accuracy"] < 0.7, blind
    assert apart["resolution"] == 128 and apart["n_test"] == (20, 20) and apart["steps"] == 30


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    """The app's pipeline with a tiny random 32 px TwinGAN and no helpers (the real face detector)."""
    from twingan.pipeline import TranslationPipeline

    torch.manual_seed(0)
    folder = save_pretrained(TwinGAN(TwinGANConfig(resolution=32, base_channels=64, max_channels=32)),
                             tmp_path_factory.mktemp("app") / "twingan")
    return TranslationPipeline.load(folder, device="cpu", tagger=None, hair_classifier=None)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Three photos: one face (astronaut), two faces (the astronaut's face beside its mirror image), none."""
    from PIL import Image

    from samples import ASTRONAUT

    folder = tmp_path_factory.mktemp("photos")
    face = Image.open(ASTRONAUT).convert("RGB").crop((120, 20, 330, 230))
    two = Image.new("RGB", (460, 230), "white")
    two.paste(face, (10, 10))
    two.paste(face.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (240, 10))
    two.save(folder / "b_two.png")
    Image.open(ASTRONAUT).save(folder / "a_one.png")
    Image.new("RGB", (128, 128), "grey").save(folder / "c_none.png")
    return sorted(folder.glob("*.png"))


def test_app_portraits_are_one_per_face_the_app_finds(tiny_pipeline, photos):
    from train.evaluation.app_outputs import app_portraits

    every = app_portraits(tiny_pipeline, photos, all_faces=True)
    assert every["anime"].shape == (3, 3, 128, 128) and every["photo"].tolist() == [0, 1, 1]
    assert list(every["failed"]) == [2] and "No face" in every["failed"][2]
    assert all(f.anime.size == (256, 256) for f in every["faces"])  # the display size the app shows
    # The largest face only: what the test selfies are measured on.
    largest = app_portraits(tiny_pipeline, photos, all_faces=False)
    assert largest["photo"].tolist() == [0, 1] and largest["anime"].shape == (2, 3, 128, 128)
    expected = tiny_pipeline.translate(photos[1]).faces[0].anime.resize((128, 128))
    from torchvision.transforms.functional import to_tensor

    assert (largest["anime"][1] - to_tensor(expected)).abs().mean() < 0.03  # the app's own output, resized


def test_evaluate_app_counts_faces_and_calibrates_on_stand_ins(tiny_pipeline, photos, tmp_path):
    from train.evaluation.app_outputs import evaluate_app, photos_figure
    from train.evaluation.gates import GATES, _app_rows, passes

    anime = _textures(24, seed=2)
    m, shown = evaluate_app(tiny_pipeline, photos, photos[:2], anime, two_sample_steps=3)
    assert m["app_selfies_n"] == 3 and m["app_selfies_detected"] == 2 and list(m["app_selfies_failed"]) == ["c_none.png"]
    assert m["app_photos_faces_per_photo"] == {"a_one.png": 1, "b_two.png": 2} and m["app_photos_faces"] == 3
    assert m["app_reference_n"] == 12
    assert m["sharpness_ratio_anime_halves"] == pytest.approx(1, abs=0.05)
    assert m["sharpness_ratio_anime_32px"] < m["sharpness_ratio_anime_64px"] < 0.5
    assert m["app_two_sample_skipped"] == "only 2 portraits of test selfies" and not passes(m, "app_two_sample_accuracy")
    assert "app_two_sample_accuracy" in GATES and "eye_accuracy_confirmed" not in GATES  # eyes are reported only
    # Five copies of each photo: enough portraits for the three two-sample tests, each with as many per side.
    # With colour pairs to ask for, a fourth test scores the portraits asked for them.
    # With the reference's data sets named, a fifth tells the first two apart (as many per side as the portraits).
    m, _ = evaluate_app(tiny_pipeline, photos[:2] * 5, [], anime, two_sample_steps=3,
                        anime_colours=[("red", "blue"), ("blonde", "green")] * 5, anime_sets={"one": 14, "two": 10})
    for prefix in ("app_two_sample", "app_two_sample_real", "app_two_sample_real_64px", "app_two_sample_real_64px_upscaler",
                   "app_two_sample_anime_colours", "app_two_sample_anime_sets"):
        assert m[f"{prefix}_n_train"] == (5, 5) and m[f"{prefix}_n_test"] == (5, 5), prefix
        assert m[f"{prefix}_steps"] == 3 and m[f"{prefix}_resolution"] == 128 and 0 < m[f"{prefix}_stderr"] < 0.5
    assert m["app_two_sample_anime_sets"] == ["one", "two"]
    assert "real anime of one data set vs another (one vs two, 5 + 5 held out)" in "\n".join(_app_rows(m))
    assert "real anime taken to 64 px and back up through the anime upscaler" in "\n".join(_app_rows(m))
    assert m["app_photos_faces"] == 0 and m["app_sharpness_ratio_photos"] != m["app_sharpness_ratio_photos"]
    figure = photos_figure(shown["faces"], tmp_path / "eval_photos.png")
    from PIL import Image

    assert Image.open(figure).size == (6 * 256 + 7 * 4, 256 + 2 * 4)  # 3 crops and 3 portraits at display size


def test_through_upscaler_shows_real_anime_as_the_app_shows_portraits(tiny_pipeline, photos):
    """Real anime at 64 px brought up by the app's upscaler: sharper than the bicubic calibration, the
    size the portraits are measured at; without an upscaler the calibration is not run."""
    from train.evaluation.app_outputs import evaluate_app, through_upscaler
    from train.helpers.hair_report import small_face
    from twingan.metrics import high_band_magnitude
    from twingan.pipeline import TranslationPipeline

    # Drawn stand-ins: flat colour areas with hard edges, which the upscaler restores and bicubic blurs.
    flat = torch.rand(6, 3, 6, 6, generator=torch.Generator().manual_seed(3))
    anime = torch.nn.functional.interpolate(flat, size=128, mode="nearest")
    shown = through_upscaler(tiny_pipeline, anime, 64)
    assert shown.shape == (6, 3, 128, 128) and 0 <= shown.min() and shown.max() <= 1
    assert high_band_magnitude(shown, 128).mean() > 1.4 * high_band_magnitude(small_face(anime, 64), 128).mean()
    plain = TranslationPipeline.load(tiny_pipeline.checkpoint, device="cpu", tagger=None, hair_classifier=None, upscaler=None)
    m, _ = evaluate_app(plain, photos[:2] * 5, [], _textures(24, seed=2), two_sample_steps=3)
    assert "app_two_sample_real_64px_accuracy" in m and "app_two_sample_real_64px_upscaler_accuracy" not in m


def test_split_sets_takes_each_data_set_apart_and_refuses_sizes_that_do_not_add_up():
    from train.evaluation.app_outputs import split_sets

    anime = torch.arange(7.0)[:, None, None, None].expand(7, 3, 2, 2)
    sets = split_sets(anime, {"a": 3, "b": 4}, seed=1)
    assert sorted(sets["a"][:, 0, 0, 0].tolist()) == [0, 1, 2] and sorted(sets["b"][:, 0, 0, 0].tolist()) == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="do not add up to the 7 faces"):
        split_sets(anime, {"a": 3, "b": 3})


def test_the_gated_two_sample_test_is_the_mean_of_its_seeded_runs(tiny_pipeline, photos):
    """Each run is the one-seed test at seed 0, 1, 2 on the same portraits; the gate reads their mean."""
    from train.evaluation.app_outputs import app_portraits, evaluate_app
    from train.evaluation.gates import _app_rows
    from twingan.metrics import classifier_two_sample_test

    anime = _textures(24, seed=2)
    m, _ = evaluate_app(tiny_pipeline, photos[:2] * 5, [], anime, two_sample_steps=3, calibrate=False,
                        two_sample_seeds=3, anime_sets={"one": 14, "two": 10})
    assert "app_two_sample_anime_sets_accuracy" not in m  # a calibration: not run without them
    runs = m["app_two_sample_seed_accuracies"]
    assert len(runs) == 3 and m["app_two_sample_accuracy"] == pytest.approx(sum(runs) / 3)
    one, _ = evaluate_app(tiny_pipeline, photos[:2] * 5, [], anime, two_sample_steps=3, calibrate=False)
    assert one["app_two_sample_accuracy"] == runs[0] and "app_two_sample_seed_accuracies" not in one
    portraits = app_portraits(tiny_pipeline, photos[:2] * 5, all_faces=False)["anime"]
    reference = anime[torch.randperm(24, generator=torch.Generator().manual_seed(0))[:12]][:10]
    again = classifier_two_sample_test(portraits, reference, steps=3, seed=2, resolution=128)
    assert again["accuracy"] == pytest.approx(runs[2])
    row = next(line for line in _app_rows(m) if line.startswith("| two-sample test"))
    assert "mean of 3 runs with their own seeds" in row
    # The real anime data sets against each other run as often as the gated test, when calibrating.
    m, _ = evaluate_app(tiny_pipeline, photos[:2] * 5, [], anime, two_sample_steps=3, two_sample_seeds=2,
                        anime_sets={"one": 14, "two": 10})
    assert len(m["app_two_sample_anime_sets_seed_accuracies"]) == 2
    assert "mean of 2 runs with their own seeds" in next(line for line in _app_rows(m) if "one vs two" in line)


def test_help_documents_the_app_metrics(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "--photos" in text and "sharpness ratio" in text and "two-sample test at 128 px" in text


def test_two_sample_probes_each_keep_one_kind_of_evidence():
    from train.evaluation.probe import PROBES, probe_transform, probe_two_sample
    from twingan.metrics import high_band_magnitude

    x = _textures(6, seed=3)
    assert torch.equal(probe_transform("as shown", x), x)
    grey = probe_transform("greyscale", x)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    shuffled = probe_transform("shuffled pixels", x)  # each image keeps its colours, not their places
    assert torch.equal(shuffled.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    assert not torch.equal(shuffled, x)
    assert torch.equal(probe_transform("shuffled pixels", x[:2]), shuffled[:2])  # one order for every image
    small = probe_transform("16 px", x)
    assert small.shape == x.shape and high_band_magnitude(small).mean() < 0.5 * high_band_magnitude(x).mean()
    with pytest.raises(ValueError, match="unknown probe 'colour'"):
        probe_transform("colour", x)
    results = probe_two_sample(_textures(10, seed=4), _textures(12, seed=5), steps=3)
    assert list(results) == list(PROBES)
    assert all(r["n_train"] == (5, 5) and r["resolution"] == 128 and 0 <= r["accuracy"] <= 1 for r in results.values())


def test_redraws_are_the_models_anime_drawings_shown_as_its_portraits(tiny_pipeline):
    from train.evaluation.probe import anime_redraws, probe_two_sample
    from twingan.layers import resize_square

    anime, vocab, model = _textures(3, seed=6), tiny_pipeline.vocab, tiny_pipeline.model
    tags = torch.tensor([vocab.encode(hair="pink", eye="blue")] * 3).float()
    tags[2] = float("nan")  # an untagged face: no colours asked

    def shown(images, asked):  # the portraits' display path: model, upscaler to 256 px, back to 128 px
        raw = model.translate(resize_square(images, 32), "anime", "anime", asked)
        return resize_square(tiny_pipeline.super_resolve(raw), 128).clamp(0, 1)

    drawn = anime_redraws(tiny_pipeline, anime, tags, chunk=2)
    assert drawn.shape == (3, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(drawn[:2], shown(anime[:2], tags[:2]), atol=1e-5)
        assert torch.allclose(drawn[2:], shown(anime[2:], torch.zeros(1, vocab.dim)), atol=1e-5)
    r = probe_two_sample(_textures(10, seed=4), _textures(12, seed=5), ["as shown"], steps=3, seeds=2)["as shown"]
    assert len(r["seed_accuracies"]) == 2 and r["accuracy"] == pytest.approx(sum(r["seed_accuracies"]) / 2)


def test_probe_command_says_what_is_missing(tmp_path, capsys):
    from train.evaluation.probe import main

    assert main([str(tmp_path / "none")]) == 2
    assert "error:" in capsys.readouterr().err

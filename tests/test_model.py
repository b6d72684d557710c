"""The TwinGAN model: shapes, growing, shared weights, skips and the tag conditioning."""

import pytest
import torch

from twingan import Discriminator, TwinGAN, TwinGANConfig
from twingan.vocab import DEFAULT_VOCAB

SMALL = dict(base_channels=64, max_channels=32)


def make_model(resolution=32, **overrides) -> TwinGAN:
    torch.manual_seed(0)
    return TwinGAN(TwinGANConfig(resolution=resolution, **{**SMALL, **overrides})).eval()


@pytest.mark.parametrize("resolution", [64, 128, 256, 512])
def test_generator_builds_and_translates_at_each_resolution(resolution):
    model = make_model(resolution, base_channels=32, max_channels=8)
    x = torch.rand(2, 3, resolution, resolution)
    with torch.no_grad():
        out = model.translate(x)
        alone = model.translate(x[1:])
    assert out.shape == (2, 3, resolution, resolution)
    assert not torch.allclose(out[0], out[1])  # each output depends on its own input
    torch.testing.assert_close(alone, out[1:], atol=2e-3, rtol=0)  # and, in eval mode, on nothing else


def test_original_configuration_matches_the_reference_sizes():
    config = TwinGANConfig(resolution=256)
    model, disc = TwinGAN(config), Discriminator(config)
    count = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    assert [config.channels(r) for r in config.resolutions] == [256, 256, 256, 128, 64, 32, 16]
    assert count(model.encoder) == pytest.approx(2.95, abs=0.05)
    assert count(disc) == pytest.approx(4.59, abs=0.05)
    # The generator is the original's 5.70M plus the tag-conditioning layers.
    assert 5.70 < count(model.generator) < 6.1


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_shapes_during_fade_in(alpha):
    model = make_model(64)
    disc = Discriminator(model.config)
    for res in (8, 16, 32):
        model.set_stage(res, alpha)
        x = torch.rand(3, 3, res, res)
        assert model(x).shape == (3, 3, res, res)
        score, tags = disc(x, alpha)
        assert score.shape == (3,) and tags.shape == (3, DEFAULT_VOCAB.dim)


def test_wrong_input_size_and_unknown_domain_are_clear_errors():
    model = make_model(32)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model.translate(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="unknown domain 'cat'"):
        model.translate(torch.rand(1, 3, 32, 32), target="cat")


def test_target_domain_switches_output_with_all_conv_weights_shared():
    model = make_model(32, norm="instance")
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        model.generator.blocks["32"][1].norm.bias[1].normal_()  # anime shift differs from human
        assert not torch.allclose(model.translate(x, "human", "anime"), model.translate(x, "human", "human"))

    def touched(target):
        model.zero_grad()
        model(x, "human", target).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None and p.grad.any()}

    to_anime, to_human = touched("anime"), touched("human")
    convs = lambda grads: {n for n in grads if ".norm." not in n}  # noqa: E731
    assert convs(to_anime) == convs(to_human)  # the same conv weights serve both targets
    assert len(convs(to_anime)) > 10
    # Generator norms: only the target domain's row of scale/shift gets gradient.
    g = "generator.blocks.32.0.norm.weight"
    assert to_anime[g][1].any() and not to_anime[g][0].any()
    assert to_human[g][0].any() and not to_human[g][1].any()


def test_domains_come_from_the_config():
    model = make_model(32, domains=("human", "cat"))
    assert model.translate(torch.rand(1, 3, 32, 32), "human", "cat").shape == (1, 3, 32, 32)


def test_unet_skips_are_used():
    model = make_model(32)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        latent, skips = model.encode(x, "human")
        base = model.decode(latent, skips, "anime")
        for r in (8, 16, 32):
            poked = dict(skips)
            poked[r] = skips[r] + torch.randn_like(skips[r])
            assert not torch.allclose(model.decode(latent, poked, "anime"), base), r


def test_skip_resolutions_limit_the_skips():
    model = make_model(32, skip_resolutions=(8,))
    latent, skips = model.encode(torch.rand(1, 3, 32, 32), "human")
    with torch.no_grad():
        base = model.decode(latent, skips, "anime")
        poked = {**skips, 32: skips[32] + 1.0}
        assert torch.equal(model.decode(latent, poked, "anime"), base)


def test_tags_change_the_output_and_zero_tags_equal_no_tags():
    model = make_model(32)
    x = torch.rand(2, 3, 32, 32)
    pink = torch.tensor([DEFAULT_VOCAB.encode(hair="pink", eye="blue")] * 2)
    green = torch.tensor([DEFAULT_VOCAB.encode(hair="green", eye="red")] * 2)
    with torch.no_grad():
        plain = model.translate(x)
        assert not torch.allclose(model.translate(x, tags=pink), model.translate(x, tags=green))
        assert torch.equal(model.translate(x, tags=torch.zeros_like(pink)), plain)


def test_tag_gains_scale_their_group_before_the_embedding():
    gained = make_model(32, hair_gain=0.5, eye_gain=1.5)
    plain = make_model(32)  # the same seed: the same weights
    assert torch.equal(gained.state_dict()["generator.tag_embed.weight"], plain.state_dict()["generator.tag_embed.weight"])
    v = plain.config.vocab
    tags = torch.tensor([v.encode(hair="pink", eye="aqua", binary={"blush": 1})] * 2)
    scaled = tags.clone()
    scaled[:, v.hair_slice] *= 0.5
    scaled[:, v.eye_slice] *= 1.5  # binary tags keep their value
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(gained.translate(x, tags=tags), plain.translate(x, tags=scaled), atol=1e-6)
        assert not torch.allclose(gained.translate(x, tags=tags), plain.translate(x, tags=tags), atol=1e-4)
    with pytest.raises(ValueError, match="eye_gain must be > 0"):
        TwinGANConfig(eye_gain=0)


def test_wrong_tag_length_is_a_clear_error():
    model = make_model(32)
    with pytest.raises(ValueError, match="vocabulary has 33"):
        model.translate(torch.rand(1, 3, 32, 32), tags=torch.zeros(1, 5))


def test_unconditioned_config_has_no_tag_layers():
    model = make_model(32, tag_embed_dim=0)
    assert not any("cond" in n or "tag" in n for n, _ in model.named_parameters())
    assert Discriminator(model.config).tag_head is None


def test_batch_norm_keeps_running_statistics_per_domain():
    model = make_model(32).train()
    model(torch.rand(4, 3, 32, 32) * 0.1, "human", "anime")
    stats = model.encoder.blocks["32"][0].norm.running_mean
    assert stats[0].abs().sum() > 0  # the encoder ran in the human domain ...
    assert torch.equal(stats[1], torch.zeros_like(stats[1]))  # ... and left anime's statistics alone


def test_gradients_reach_encoder_and_generator():
    model = make_model(32).train()
    model(torch.rand(2, 3, 32, 32)).mean().backward()
    assert model.encoder.from_rgb["32"].weight.grad.abs().sum() > 0
    assert model.generator.to_rgb["32"].weight.grad.abs().sum() > 0


def test_luma_matches_pil_greyscale_and_keeps_the_dtype():
    import numpy as np
    from PIL import Image

    from twingan.layers import luma

    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float64)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].double()
    y = luma(x)
    assert y.shape == (1, 1, 8, 8) and y.dtype == torch.float64
    np.testing.assert_allclose(y[0, 0].numpy(), expected, atol=0.51)  # PIL rounds to integers

"""The eye-colour loss: where the eyes are (detector landmarks), discs through the augmentation, the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ASTRONAUT
from train import losses
from train.augment import augment
from train.eyes import cached_eyes, eye_masks, locate_eyes
from twingan.faces import FaceCropper
from twingan.vocab import DEFAULT_VOCAB


def disc_images(n=2, size=32, colour=(0.5, 0.5, 0.5)):
    """Grey images and two eye discs each, at the mean trainA eye positions."""
    images = torch.tensor(colour).view(1, 3, 1, 1).expand(n, 3, size, size).clone()
    points = torch.tensor([[[0.38, 0.35], [0.66, 0.36]]]).expand(n, 2, 2)
    return images, eye_masks(points, size)


def test_eye_masks_are_discs_at_the_points():
    masks = eye_masks(torch.tensor([[[0.25, 0.5], [0.75, 0.5]]]), 64, radius=0.1)
    assert masks.shape == (1, 2, 64, 64)
    assert masks[0, 0, 32, 16] == 1 and masks[0, 1, 32, 48] == 1  # the centres
    assert masks[0, 0, 32, 48] == 0 and masks[0, 1, 32, 16] == 0  # each disc holds one eye
    assert masks[0, 0].sum() == pytest.approx(3.1416 * 6.4 ** 2, rel=0.1)  # pi r^2 pixels


def test_eye_colour_loss_wants_a_few_pixels_of_the_colour_in_each_eye():
    images, masks = disc_images()
    orange = losses.eye_prototypes(DEFAULT_VOCAB)[DEFAULT_VOCAB.eye.index("orange")].expand(2, 3)
    grey = losses.eye_colour(images, masks, orange)
    assert grey == pytest.approx((orange[0] - 0.5).abs().mean().item(), abs=1e-6)

    # The colour outside the discs does not count.
    outside = images.clone()
    outside[..., 28:, :] = orange[0].view(3, 1, 1)
    assert losses.eye_colour(outside, masks, orange) == pytest.approx(grey.item(), abs=1e-6)

    # A quarter of one disc in the colour: that eye is done, the other is not.
    one = images.clone()
    inside = masks[0, 0].bool().nonzero()
    picked = inside[: len(inside) // 4]
    one[:, :, picked[:, 0], picked[:, 1]] = orange[0].view(3, 1)
    assert losses.eye_colour(one, masks, orange) == pytest.approx(grey.item() / 2, abs=1e-6)

    # A disc cut away by a crop leaves the other eye's pixels.
    cut = masks.clone()
    cut[:, 1] = 0
    assert losses.eye_colour(one, cut, orange) == pytest.approx(0.0, abs=1e-6)

    # No disc at all (every one cropped away, or no row asked for an eye colour): no loss, no error.
    assert losses.eye_colour(images, torch.zeros_like(masks), orange) == 0
    assert losses.eye_colour(images[:0], masks[:0], orange[:0]) == 0


def test_eye_prototypes_cover_the_vocabulary_in_its_order():
    rgb = losses.eye_prototypes(DEFAULT_VOCAB)
    assert rgb.shape == (len(DEFAULT_VOCAB.eye), 3)
    black, pink = DEFAULT_VOCAB.eye.index("black"), DEFAULT_VOCAB.eye.index("pink")
    assert rgb[black].max() < 0.2 and rgb[pink, 0] > rgb[pink, 1]


def test_augment_moves_the_discs_with_the_image_and_leaves_their_brightness():
    # The image is a copy of the first disc, so after the augmentation it must still be one.
    _, masks = disc_images(n=16)
    images = masks[:, :1].expand(-1, 3, -1, -1) * 0.5 + 0.25
    out = augment(torch.cat([images, masks], 1), torch.Generator().manual_seed(0))
    moved_image, moved_disc = out[:, 0], out[:, 3]
    offset = moved_image - 0.5 * moved_disc  # 0.25 + the image's brightness offset, the same everywhere
    assert (offset.flatten(1).std(1) < 1e-5).all()
    assert (offset.flatten(1).mean(1) - 0.25).abs().max() > 0.01  # brightness did change the images
    far = moved_disc[:, 30:, :]  # no disc reaches the bottom rows, and no brightness was added there
    assert far.abs().max() == 0
    flipped = moved_disc[:, :, :16].sum((1, 2)) < moved_disc[:, :, 16:].sum((1, 2))  # left eye now on the right
    assert 0 < int(flipped.sum()) < 16


def test_locate_eyes_on_a_real_face(tmp_path):
    crop = FaceCropper(resolution=64)(Image.open(ASTRONAUT))[0].image
    image = torch.from_numpy(np.array(crop)).permute(2, 0, 1)
    images = torch.stack([image, image.flip(-1)])
    points, missed = locate_eyes(images, progress=False)
    assert missed == 0
    (lx, ly), (rx, ry) = points[0].tolist()
    assert 0.2 < lx < 0.5 < rx < 0.8 and 0.2 < ly < 0.55 and abs(ly - ry) < 0.1  # the trainA framing
    mirrored = sorted((1 - points[1, :, 0]).tolist())
    assert mirrored == pytest.approx(sorted(points[0, :, 0].tolist()), abs=0.03)  # found on the flipped face too

    path = tmp_path / "eyes.pt"
    assert torch.equal(cached_eyes(images, path), points)
    torch.save({**torch.load(path), "points": points + 1}, path)  # the cache is what is read back ...
    assert torch.equal(cached_eyes(images, path), points + 1)
    assert torch.equal(cached_eyes(images[:1], path), points[:1])  # ... for the same images only


def test_locate_eyes_refuses_images_without_faces():
    with pytest.raises(ValueError, match="no face"):
        locate_eyes(torch.full((2, 3, 32, 32), 128, dtype=torch.uint8), progress=False)

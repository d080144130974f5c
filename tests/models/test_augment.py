"""Tests of models.augment (torchvision v2)."""

from __future__ import annotations

import torch

from models.augment import AugmentConfig, Augmenter


def test_geometry_moves_image_and_mask_together() -> None:
    """With colour off, an image equal to its mask stays equal to it after flips,
    right-angle rotations and the affine (nearest-neighbour for the mask)."""
    cfg = AugmentConfig(
        brightness=0, contrast=0, gamma_p=0, noise_p=0, affine_p=0, flip_p=0.5, rot90_p=1.0
    )
    aug = Augmenter(cfg)
    torch.manual_seed(0)
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[3:9, 20:30] = 1
    for _ in range(10):
        img, m = aug(mask.float().unsqueeze(0), mask)
        assert img.shape == (1, 32, 32) and m.shape == (32, 32)
        assert torch.equal(img[0], m.float())


def test_colour_and_affine_keep_ranges_and_labels() -> None:
    """Full augmentation keeps pixels in 0..1, mask values a subset of the input's, and is
    reproducible with a seed."""
    aug = Augmenter(AugmentConfig(affine_p=1.0, noise_p=1.0, gamma_p=1.0))
    mask = torch.zeros(24, 40, dtype=torch.long)
    mask[5:10, 5:15] = 2
    image = torch.rand(1, 24, 40)
    torch.manual_seed(1)
    a = aug(image, mask)
    torch.manual_seed(1)
    b = aug(image, mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert float(a[0].min()) >= 0.0 and float(a[0].max()) <= 1.0
    assert set(a[1].unique().tolist()) <= {0, 2}

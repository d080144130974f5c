"""Tests of models.losses against hand-computed values."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from config.errors import ModelError
from models.losses import bce_loss, ce_dice_loss, dice_loss, get_loss, soft_dice_loss, wbd_loss


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_bce_by_hand() -> None:
    """logits (0, ln 3) vs targets (1, 0): sigmoid = (0.5, 0.75);
    bce = (-ln 0.5 - ln 0.25) / 2 = 1.5 ln 2."""
    loss = bce_loss(_t([0.0, math.log(3.0)]), _t([1.0, 0.0]))
    assert float(loss) == pytest.approx(1.5 * math.log(2.0), rel=1e-6)


def test_dice_squared_denominator_by_hand() -> None:
    """p = (.5, .5, 1, 0), g = (1, 0, 1, 0): sum pg = 1.5, sum p^2 = 1.5, sum g^2 = 2;
    with eps = 1: 1 - (3 + 1) / (3.5 + 1) = 1/9."""
    loss = soft_dice_loss(_t([0.5, 0.5, 1.0, 0.0]), _t([1.0, 0.0, 1.0, 0.0]))
    assert float(loss) == pytest.approx(1.0 / 9.0, rel=1e-6)


def test_dice_on_logits_and_wbd_by_hand() -> None:
    """Zero logits -> p = 0.5 everywhere; g = (1, 0, 1, 0): dice = 1 - (2 + 1)/(1 + 2 + 1)
    = 0.25; bce = ln 2; wbd = 0.05 ln 2 + 0.95 * 0.25."""
    logits, target = _t([0.0] * 4), _t([1.0, 0.0, 1.0, 0.0])
    assert float(dice_loss(logits, target)) == pytest.approx(0.25, rel=1e-6)
    assert float(wbd_loss(logits, target)) == pytest.approx(
        0.05 * math.log(2.0) + 0.95 * 0.25, rel=1e-6
    )


def test_multiclass_ce_plus_per_class_dice_by_hand() -> None:
    """Two classes (background + one), zero logits, two pixels with classes (1, 0):
    ce = ln 2; class-1 dice: p = (.5, .5), g = (1, 0): 1 - (1 + 1)/(0.5 + 1 + 1) = 0.2."""
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    assert float(ce_dice_loss(logits, target)) == pytest.approx(math.log(2.0) + 0.2, rel=1e-6)


def test_dice_averages_channels_and_registry() -> None:
    """Per-channel dice is averaged over channels; unknown names are a ModelError."""
    p = torch.tensor([1.0, 0.0, 0.5, 0.5]).view(1, 2, 1, 2)
    g = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 2, 1, 2)
    # channel 0: perfect -> 0; channel 1: 1 - (1 + 1)/(0.5 + 1 + 1) = 0.2
    assert float(soft_dice_loss(p, g)) == pytest.approx(0.1, rel=1e-6)
    assert get_loss("wbd") is wbd_loss
    with pytest.raises(ModelError, match="valid"):
        get_loss("focal")


def test_padding_counts_for_nothing() -> None:
    """With a valid mask, what the network says on padded pixels does not change any loss."""
    from models.losses import get_loss

    torch.manual_seed(0)
    target = (torch.rand(2, 1, 8, 8) > 0.7).float()
    valid = torch.zeros(2, 1, 8, 8)
    valid[..., :, :5] = 1
    a = torch.randn(2, 1, 8, 8)
    b = a.clone()
    b[..., :, 5:] = 50.0  # wild outputs where there is only padding
    for name in ("bce", "dice", "wbd"):
        fn = get_loss(name)
        assert torch.allclose(fn(a, target, valid), fn(b, target, valid)), name


def test_image_head_loss_and_labels() -> None:
    """Image labels name the classes present in the valid pixels; compute_loss adds the head's
    binary cross-entropy, weighted, to the segmentation loss."""
    from models.build import ModelSpec
    from models.losses import IGNORE, compute_loss, image_labels

    mask = torch.zeros(2, 4, 4, dtype=torch.long)
    mask[0, 0, 0] = 2
    mask[1, 3, 3] = IGNORE
    assert image_labels(mask, 2).tolist() == [[0.0, 1.0], [0.0, 0.0]]
    assert image_labels(mask, 1).tolist() == [[1.0], [0.0]]
    spec = ModelSpec.model_validate({"architecture": "unet", "encoder": "tu-efficientnet_lite0",
                                     "classes": ["background", "a", "b"], "head": "sigmoid",
                                     "image_head": True})
    seg = torch.zeros(2, 2, 4, 4)
    img = torch.tensor([[0.0, 5.0], [-5.0, -5.0]])
    base = compute_loss(seg, mask, spec, "wbd", 1.0)
    with_head = compute_loss((seg, img), mask, spec, "wbd", 1.0, image_weight=2.0)
    assert float(with_head) > float(base)
    wrong = compute_loss((seg, -img), mask, spec, "wbd", 1.0, image_weight=2.0)
    assert float(wrong) > float(with_head)


def test_wbd_present_leaves_absent_channels_to_the_bce() -> None:
    """wbd_present: the dice averages only the channels with target pixels in the batch; a
    batch where no channel has one gives the BCE term alone; with every channel present it
    equals wbd."""
    from models.losses import WBD_BCE_WEIGHT, bce_loss, get_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 2, 4, 4)
    target = torch.zeros(2, 2, 4, 4)
    target[0, 0, 1:3, 1:3] = 1.0  # channel 0 present, channel 1 absent
    p = torch.sigmoid(logits)
    inter = (p[:, 0] * target[:, 0]).sum()
    dice0 = 1 - (2 * inter + 1) / ((p[:, 0] ** 2).sum() + target[:, 0].sum() + 1)
    expected = WBD_BCE_WEIGHT * bce_loss(logits, target) + 0.95 * dice0
    assert torch.allclose(get_loss("wbd_present")(logits, target, None), expected, atol=1e-6)
    empty = torch.zeros_like(target)
    assert torch.allclose(get_loss("wbd_present")(logits, empty, None),
                          WBD_BCE_WEIGHT * bce_loss(logits, empty), atol=1e-6)
    full = target.clone()
    full[1, 1, 0, 0] = 1.0
    assert torch.allclose(get_loss("wbd_present")(logits, full, None),
                          get_loss("wbd")(logits, full, None), atol=1e-6)


def test_every_configurable_loss_is_implemented_and_offered_by_the_cli() -> None:
    """The config's loss names, the registry's and `station train --loss` choices are the same
    (the flag once lacked wbd_present, so the new loss was reachable only through --set)."""
    from config.train import LOSS_NAMES
    from models.losses import LOSSES
    from station.commands.train import register

    assert set(LOSS_NAMES) == set(LOSSES)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["train", "--loss", "wbd_present"])
    assert args.loss == "wbd_present"

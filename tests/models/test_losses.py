"""Tests of models.losses against hand-computed values."""

from __future__ import annotations

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

"""Segmentation losses of the seed paper, plus a multi-class form.

Shapes: ``logits`` (N, C, H, W). For the sigmoid losses (``bce``, ``dice``, ``wbd``) the
target is (N, C, H, W) in {0, 1} (one channel per defect class, or one channel for binary).
For ``ce_dice`` the logits have background as channel 0 (K + 1 channels, softmax) and the
target is the class-index map (N, H, W).

Dice (paper eq. 3, squared denominators), per channel over the whole batch::

    dice_loss = 1 - (2 * sum(p * g) + eps) / (sum(p ** 2) + sum(g ** 2) + eps)

averaged over channels. ``wbd = 0.05 * bce + 0.95 * dice``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from config.errors import ModelError

LossFn = Callable[[Tensor, Tensor], Tensor]
LOSSES: tuple[str, ...] = ("bce", "dice", "wbd", "ce_dice")
#: the paper's weights of the weighted loss
WBD_BCE_WEIGHT = 0.05
WBD_DICE_WEIGHT = 0.95
EPS = 1.0


def bce_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy on logits, mean over every element."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float())


def soft_dice_loss(probs: Tensor, target: Tensor, eps: float = EPS) -> Tensor:
    """Squared-denominator dice loss of probabilities, per channel over the batch, mean."""
    p, g = probs.float(), target.float()
    dims = (0, 2, 3)
    inter = (p * g).sum(dims)
    denom = (p * p).sum(dims) + (g * g).sum(dims)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Paper eq. 3 on sigmoid probabilities."""
    return soft_dice_loss(torch.sigmoid(logits.float()), target)


def wbd_loss(logits: Tensor, target: Tensor) -> Tensor:
    """The paper's weighted loss: 0.05 bce + 0.95 dice."""
    return WBD_BCE_WEIGHT * bce_loss(logits, target) + WBD_DICE_WEIGHT * dice_loss(logits, target)


def ce_dice_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Multi-class: cross-entropy (softmax, channel 0 = background) + mean per-class dice of
    the defect classes (channels 1..K)."""
    index = target.long()
    if index.dim() == 4:
        index = index[:, 0]
    ce = F.cross_entropy(logits.float(), index)
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(index, logits.shape[1]).permute(0, 3, 1, 2).float()
    return ce + soft_dice_loss(probs[:, 1:], onehot[:, 1:])


def get_loss(name: str) -> LossFn:
    """A loss by name (one of :data:`LOSSES`)."""
    table: dict[str, LossFn] = {
        "bce": bce_loss,
        "dice": dice_loss,
        "wbd": wbd_loss,
        "ce_dice": ce_dice_loss,
    }
    if name not in table:
        raise ModelError(f"loss {name!r}: unknown; valid: {', '.join(LOSSES)}")
    return table[name]


def is_softmax_loss(name: str) -> bool:
    """True for losses whose logits carry a background channel (softmax)."""
    return name == "ce_dice"

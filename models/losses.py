"""Segmentation losses of the seed paper, plus a multi-class form.

Shapes: ``logits`` (N, C, H, W). For the sigmoid losses (``bce``, ``dice``, ``wbd``) the
target is (N, C, H, W) in {0, 1} (one channel per defect class, or one channel for binary).
For ``ce_dice`` the logits have background as channel 0 (K + 1 channels, softmax) and the
target is the class-index map (N, H, W).

Dice (paper eq. 3, squared denominators), per channel over the whole batch::

    dice_loss = 1 - (2 * sum(p * g) + eps) / (sum(p ** 2) + sum(g ** 2) + eps)

averaged over channels. ``wbd = 0.05 * bce + 0.95 * dice``. ``wbd_present`` is ``wbd`` with
the dice averaged only over the channels that have a target pixel in the batch: a batch
without a class then pushes that channel down by the BCE alone, not by a dice of an empty
target, which drives it to saturation (where its gradient vanishes; docs/results.md, the dead
Blowhole channel).

Every loss takes an optional ``valid`` mask ``(N, 1, H, W)`` (1 = a real pixel, 0 = padding
that a whole-image batch added): padded pixels count for nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from config.errors import ModelError
from models.build import ModelSpec
from models.runtime import split_outputs

LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
LOSSES: tuple[str, ...] = ("bce", "dice", "wbd", "wbd_present", "ce_dice")
#: the paper's weights of the weighted loss
WBD_BCE_WEIGHT = 0.05
WBD_DICE_WEIGHT = 0.95
EPS = 1.0


def bce_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Binary cross-entropy on logits, mean over every (valid) element."""
    if valid is None:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    w = valid.float().expand_as(logits)
    per = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (per * w).sum() / w.sum().clamp(min=1.0)


def soft_dice_loss(
    probs: Tensor, target: Tensor, eps: float = EPS, valid: Tensor | None = None,
    present_only: bool = False,
) -> Tensor:
    """Squared-denominator dice loss of probabilities, per channel over the batch, mean
    (``present_only``: over the channels with a target pixel in the batch; 0 if none)."""
    p, g = probs.float(), target.float()
    if valid is not None:
        p, g = p * valid.float(), g * valid.float()
    dims = (0, 2, 3)
    inter = (p * g).sum(dims)
    denom = (p * p).sum(dims) + (g * g).sum(dims)
    per = 1 - (2 * inter + eps) / (denom + eps)
    if present_only:
        present = g.sum(dims) > 0
        return per[present].sum() / present.sum().clamp(min=1)
    return per.mean()


def dice_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Paper eq. 3 on sigmoid probabilities."""
    return soft_dice_loss(torch.sigmoid(logits.float()), target, valid=valid)


def wbd_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """The paper's weighted loss: 0.05 bce + 0.95 dice."""
    return (WBD_BCE_WEIGHT * bce_loss(logits, target, valid)
            + WBD_DICE_WEIGHT * dice_loss(logits, target, valid))


def wbd_present_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """``wbd`` with the dice over the channels present in the batch only."""
    dice = soft_dice_loss(torch.sigmoid(logits.float()), target, valid=valid, present_only=True)
    return WBD_BCE_WEIGHT * bce_loss(logits, target, valid) + WBD_DICE_WEIGHT * dice


def ce_dice_loss(logits: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Multi-class: cross-entropy (softmax, channel 0 = background) + mean per-class dice of
    the defect classes (channels 1..K)."""
    index = target.long()
    if index.dim() == 4:
        index = index[:, 0]
    if valid is None:
        ce = F.cross_entropy(logits.float(), index)
    else:
        v = valid[:, 0].float()
        per = F.cross_entropy(logits.float(), index, reduction="none")
        ce = (per * v).sum() / v.sum().clamp(min=1.0)
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(index, logits.shape[1]).permute(0, 3, 1, 2).float()
    return ce + soft_dice_loss(probs[:, 1:], onehot[:, 1:], valid=valid)


def get_loss(name: str) -> LossFn:
    """A loss by name (one of :data:`LOSSES`)."""
    table: dict[str, LossFn] = {
        "bce": bce_loss,
        "dice": dice_loss,
        "wbd": wbd_loss,
        "wbd_present": wbd_present_loss,
        "ce_dice": ce_dice_loss,
    }
    if name not in table:
        raise ModelError(f"loss {name!r}: unknown; valid: {', '.join(LOSSES)}")
    return table[name]


#: Mask value of padding that a whole-image batch added (left out of every loss).
IGNORE = 255


def make_target(mask: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """Class-index masks (N, H, W) (padding already 0) -> the loss target of the head."""
    k = len(spec.defect_classes)
    mask = mask.long().clamp(max=k) if k > 1 else (mask > 0).long()
    if spec.head == "softmax":
        return mask
    return F.one_hot(mask, k + 1)[..., 1:].permute(0, 3, 1, 2).float()


def image_labels(mask: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per image, which defect classes its (valid) pixels hold: ``(N, K)`` float 0/1.

    A binary model (one class) is told whether any defect is present."""
    m = torch.where(mask == IGNORE, torch.zeros_like(mask), mask).long()
    if n_classes == 1:
        return (m > 0).flatten(1).any(dim=1, keepdim=True).float()
    present = F.one_hot(m.clamp(max=n_classes).flatten(1), n_classes + 1).amax(dim=1)
    return present[:, 1:].float()


def compute_loss(
    out: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    mask: torch.Tensor,
    spec: ModelSpec,
    loss_name: str,
    any_weight: float,
    image_weight: float = 1.0,
) -> torch.Tensor:
    """The run's loss: segmentation (valid pixels only), plus (sigmoid, several classes) the
    loss on the any-defect map, plus the image head's binary cross-entropy."""
    seg, img = split_outputs(out)
    valid = (mask != IGNORE).unsqueeze(1)
    clean = torch.where(mask == IGNORE, torch.zeros_like(mask), mask)
    fn = get_loss(loss_name)
    seg = seg.float()
    loss = fn(seg, make_target(clean, spec), valid)
    if spec.head == "sigmoid" and seg.shape[1] > 1 and any_weight > 0:
        any_logit = seg.max(dim=1, keepdim=True).values
        loss = loss + any_weight * fn(any_logit, (clean > 0).float().unsqueeze(1), valid)
    if img is not None and image_weight > 0:
        loss = loss + image_weight * bce_loss(img.float(),
                                              image_labels(mask, len(spec.defect_classes)))
    return loss


def is_softmax_loss(name: str) -> bool:
    """True for losses whose logits carry a background channel (softmax)."""
    return name == "ce_dice"

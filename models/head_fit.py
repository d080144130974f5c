"""The image head fitted again on whole images at their native resolution.

Why: the image head (:class:`models.build.MaxImageHead`) scores every position of the
deepest encoder features and takes the maximum. Training sees 256 px crops (64 positions);
the station sees whole parts (a 400 x 600 px magnetic tile has about 250 positions, a tiled
20 MP frame thousands). A maximum over more positions of a defect-free part is higher, so the
head trained on crops scores whole defect-free parts too high, and the operating point's
threshold, set on them, lets small defects through.

How: the trained encoder is frozen. Each training image runs whole, padded to the size
divisor as the station pads it, plain and (``flips``) mirrored left-right and top-bottom,
and its deepest features are kept (float16, on the CPU). The head's 1 x 1 convolution, started
from its trained weights, is then fitted on them with the same maximum and the same binary
cross-entropy as in training. Every defect-free image takes part whole, so its hardest
position is what the head learns to keep low (hard negatives, without a mining loop).

Cost: one encoder pass per image and flip, then seconds of fitting. Measured on the shipped
model: 599 images x 3 in 35 s on 2 CPU cores; validation recall at <= 2 % false rejects went
from 84.7 % to 94.9 % (docs/results.md, "The image head fitted on whole images").

Used by ``station train`` after the best weights are chosen (``head_refit_steps``) and by
``station model refit-head``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from config.errors import ModelError
from models.build import MaxImageHead
from models.data import Dataset
from models.runtime import grey_batch, pad_to_divisor

U8 = npt.NDArray[np.uint8]
#: Flip variants of one image: none, left-right, top-bottom (the station's test-time flips).
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,))
#: Largest feature cache :func:`image_features_of` builds before it refuses [bytes].
MAX_CACHE_BYTES = 4 << 30


@dataclass(frozen=True)
class HeadFitSettings:
    """How the head is fitted (defaults: the recipe measured in docs/results.md)."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.2
    flips: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ModelError(f"head fit {name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ModelError(f"head fit lr must be > 0, got {self.lr}")
        if not 0 <= self.dropout < 1:
            raise ModelError(f"head fit dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class HeadFitReport:
    """What the fit did: for provenance and the log."""

    images: int
    defective: int
    variants: int
    steps: int
    loss_first: float
    loss_last: float
    feature_mb: float
    seconds: float

    def as_dict(self) -> dict[str, float | int]:
        """JSON-ready figures."""
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


def image_head_of(model: nn.Module) -> MaxImageHead:
    """The network's image head; :class:`ModelError` when it has none of the fitted kind."""
    head = getattr(model, "classification_head", None)
    if not isinstance(head, MaxImageHead) or not hasattr(model, "encoder"):
        raise ModelError(
            "the model has no image head (model.image_head: false); the head fit needs one: "
            "train with image_head: true"
        )
    return head


@torch.no_grad()
def image_features(
    model: nn.Module, image: U8, mean: Sequence[float], std: Sequence[float],
    in_channels: int, device: torch.device | str = "cpu", flips: bool = True,
) -> list[torch.Tensor]:
    """The deepest encoder features ``(C, h, w)`` float16 on the CPU of one whole grey image,
    padded to the size divisor as the station pads it: plain, then (``flips``) mirrored
    left-right and top-bottom (mirrored before padding, as :func:`models.runtime.flip_mean`
    mirrors the frame)."""
    x = grey_batch([image], mean, std, in_channels, device)
    encoder = getattr(model, "encoder")  # noqa: B009
    out = []
    for dims in FLIPS if flips else FLIPS[:1]:  # mirrored, then padded, as the station does
        padded, _ = pad_to_divisor(torch.flip(x, dims) if dims else x)
        out.append(encoder(padded)[-1][0].to("cpu", torch.float16))
    return out


def image_targets(ds: Dataset, indices: Sequence[int], classes: Sequence[str]) -> torch.Tensor:
    """Per image, its defect class as a one-hot row ``(N, K)`` (all zero: defect-free).

    The class is the sample's label (the folder), as the image head is trained on; a label
    that is not one of ``classes`` is refused."""
    rows = torch.zeros(len(indices), len(classes))
    for r, i in enumerate(indices):
        label = ds.samples[i].label
        if not label:
            continue
        if len(classes) == 1:
            rows[r, 0] = 1.0
        elif label in classes:
            rows[r, list(classes).index(label)] = 1.0
        else:
            raise ModelError(
                f"image {ds.samples[i].name}: class {label!r} is not one of the model's "
                f"classes {list(classes)}; fit the head on the classes it was trained on"
            )
    return rows


def fit_head(
    head: MaxImageHead,
    features: Sequence[Sequence[torch.Tensor]],
    targets: torch.Tensor,
    settings: HeadFitSettings,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[float, float]:
    """Fit ``head``'s 1 x 1 convolution in place on cached ``features`` (per image, its flip
    variants) against ``targets`` ``(N, K)``: the maximum over positions, binary
    cross-entropy, AdamW. Each step draws ``batch_size`` images and one variant of each.
    Every draw (images, variants, dropout) comes from a generator seeded with
    ``settings.seed``: the same features give the same head.
    Returns the mean loss of the first and of the last 10 % of steps."""
    if len(features) != len(targets) or not len(features):
        raise ModelError(
            f"head fit needs one target row per image, got {len(features)} images and "
            f"{len(targets)} rows"
        )
    gen = torch.Generator().manual_seed(settings.seed)
    conv = head.conv
    weight = conv.weight.detach().float().cpu()[:, :, 0, 0].clone().requires_grad_()
    bias = (conv.bias.detach().float().cpu().clone() if conv.bias is not None
            else torch.zeros(weight.shape[0])).requires_grad_()
    opt = torch.optim.AdamW([weight, bias], lr=settings.lr, weight_decay=settings.weight_decay)
    losses: list[float] = []
    for step in range(settings.steps):
        picks = torch.randint(len(features), (settings.batch_size,), generator=gen).tolist()
        variants = torch.randint(1 << 30, (settings.batch_size,), generator=gen).tolist()
        total = torch.zeros(())
        for j, v in zip(picks, variants, strict=True):
            feats = features[j][v % len(features[j])].float()
            if settings.dropout:  # channel dropout, drawn from the fit's own generator
                keep = torch.rand(feats.shape[0], generator=gen) >= settings.dropout
                feats = feats * (keep.float() / (1 - settings.dropout))[:, None, None]
            logits = (torch.einsum("kc,chw->khw", weight, feats)
                      + bias[:, None, None]).amax(dim=(1, 2))
            total = total + F.binary_cross_entropy_with_logits(logits, targets[j])
        loss = total / settings.batch_size
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, losses[-1])
    with torch.no_grad():
        conv.weight.copy_(weight.detach()[:, :, None, None].to(conv.weight))
        if conv.bias is not None:
            conv.bias.copy_(bias.detach().to(conv.bias))
    tenth = max(1, len(losses) // 10)
    return float(np.mean(losses[:tenth])), float(np.mean(losses[-tenth:]))


def refit_image_head(
    model: nn.Module,
    ds: Dataset,
    indices: Sequence[int],
    classes: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    in_channels: int,
    settings: HeadFitSettings | None = None,
    device: torch.device | str = "cpu",
    progress: Callable[[str, int, int], None] | None = None,
) -> HeadFitReport:
    """Fit ``model``'s image head again on the whole images ``indices`` of ``ds`` (in place;
    the rest of the network is unchanged). ``progress(stage, done, total)`` is called per
    image ("features") and per step ("fit"). Raises :class:`ModelError` for a model without
    an image head, no images, or a feature cache over :data:`MAX_CACHE_BYTES`."""
    s = settings or HeadFitSettings()
    head = image_head_of(model)
    if not indices:
        raise ModelError("head fit needs at least one image; the split named none")
    t0 = time.monotonic()
    was_training = model.training
    model.eval()
    features: list[list[torch.Tensor]] = []
    size = 0
    try:
        for n, i in enumerate(indices):
            image, _ = ds.load(i)
            feats = image_features(model, image, mean, std, in_channels, device, s.flips)
            size += sum(f.numel() * f.element_size() for f in feats)
            if size > MAX_CACHE_BYTES:
                raise ModelError(
                    f"head fit: the features of {n + 1} of {len(indices)} images already take "
                    f"{size / 2**20:.0f} MiB (limit {MAX_CACHE_BYTES >> 20} MiB); fit on fewer "
                    "or smaller images, or without flips"
                )
            features.append(feats)
            if progress is not None:
                progress("features", n + 1, len(indices))
    finally:
        model.train(was_training)
    targets = image_targets(ds, indices, classes)
    first, last = fit_head(
        head, features, targets, s,
        None if progress is None else (lambda k, _loss: progress("fit", k, s.steps)),
    )
    return HeadFitReport(
        images=len(indices), defective=int((targets.sum(dim=1) > 0).sum()),
        variants=len(FLIPS) if s.flips else 1, steps=s.steps, loss_first=first,
        loss_last=last, feature_mb=size / 2**20, seconds=time.monotonic() - t0,
    )

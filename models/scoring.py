"""How a trained model's outputs are seen when its operating point is chosen and when it is
evaluated: the :class:`Scorer` protocol, the whole-image :class:`RuntimeScorer`, and the choice
of pixel thresholds and part-level rule on a validation split (:func:`choose_operating_point`).

``station`` provides a scorer that runs the booth's own ``pipeline.Inspector`` (tiles,
blending, thresholds), so a model is qualified by the code that runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
import numpy.typing as npt
import torch

from models.checkpoint import Checkpoint
from models.data import Dataset
from models.metrics import Scores
from models.operating_point import ImageRecord, OperatingPoint, choose
from models.runtime import class_map, predict_image

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
#: Pixel thresholds the operating-point search tries (binary pixel F1 decides).
PIXEL_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


class Scorer(Protocol):
    """How the operating point sees a model's outputs on one image.

    ``flips``: whether the outputs are averaged over horizontal and vertical flips (the
    operating point chosen on them records it, and the station then flips as well).
    """

    flips: bool

    def probabilities(self, image: U8) -> tuple[F32, float | None]:
        """Per-defect-class probabilities ``(K, H, W)`` and the image head's part score."""
        ...

    def largest_regions(self, probs: F32, thresholds: dict[str, float]) -> dict[str, int]:
        """Per defect class, the area of its largest region at ``thresholds`` [px]."""
        ...


def largest_regions(
    probs: F32, classes: Sequence[str], thresholds: dict[str, float]
) -> dict[str, int]:
    """Per class: the largest 8-connected region of pixels whose winning class (among those
    reaching their threshold) is that class [px]."""
    labels = class_map(probs, [thresholds[c] for c in classes])
    out: dict[str, int] = {}
    for k, c in enumerate(classes):
        m = (labels == k + 1).astype(np.uint8)
        if not m.any():
            out[c] = 0
            continue
        n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        out[c] = int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0
    return out


class RuntimeScorer:
    """Whole images through :func:`models.runtime.predict_image`."""

    def __init__(self, ckpt: Checkpoint, device: torch.device | str = "cpu",
                 flips: bool = False) -> None:
        self.ckpt, self.device, self.flips = ckpt, device, flips
        self.classes = ckpt.meta.spec.defect_classes
        ckpt.model.to(device).eval()

    def probabilities(self, image: U8) -> tuple[F32, float | None]:
        """See :class:`Scorer`."""
        meta = self.ckpt.meta
        probs, logits = predict_image(self.ckpt.model, meta.spec.head, meta.normalisation.mean,
                                      meta.normalisation.std, meta.spec.in_channels, image,
                                      self.device, flips=self.flips)
        return probs, None if logits is None else float(logits.max())

    def largest_regions(self, probs: F32, thresholds: dict[str, float]) -> dict[str, int]:
        """See :class:`Scorer`."""
        return largest_regions(probs, self.classes, thresholds)


class ChoiceSettings(Protocol):
    """What the choice needs to know (a :class:`config.train.TrainConfig` has it, or a
    :class:`Choice`)."""

    @property
    def max_false_reject(self) -> float: ...
    @property
    def op_rule(self) -> str: ...
    @property
    def min_area_px(self) -> int: ...


@dataclass(frozen=True)
class Choice:
    """:class:`ChoiceSettings` outside a training run (``station model operating-point``)."""

    max_false_reject: float = 0.02
    op_rule: str = "auto"
    min_area_px: int = 1


def choose_operating_point(
    scorer: Scorer, ds: Dataset, indices: Sequence[int], classes: list[str],
    cfg: ChoiceSettings, chosen_on: str,
) -> tuple[OperatingPoint, dict[str, float]]:
    """Pixel thresholds (best binary pixel F1 on validation) and the part-level operating
    point (:func:`models.operating_point.choose`) from the scorer's outputs."""
    bins = 100
    pos = np.zeros(bins, np.int64)
    neg = np.zeros(bins, np.int64)
    maps: list[tuple[npt.NDArray[np.float16], float | None, str]] = []
    for i in indices:
        image, mask = ds.load(i)
        probs, head = scorer.probabilities(image)
        any_prob = probs.max(axis=0)
        b = np.clip((any_prob * bins).astype(np.int64), 0, bins - 1)
        pos += np.bincount(b[mask > 0], minlength=bins)
        neg += np.bincount(b[mask == 0], minlength=bins)
        maps.append((probs.astype(np.float16), head, ds.samples[i].label))
    tp_c, fp_c = np.cumsum(pos[::-1])[::-1], np.cumsum(neg[::-1])[::-1]
    best_t, best_f1 = 0.5, -1.0
    for t in PIXEL_THRESHOLDS:
        kb = round(t * bins)
        f1 = Scores(int(tp_c[kb]), int(fp_c[kb]), int(pos.sum() - tp_c[kb])).f1
        if f1 > best_f1:
            best_t, best_f1 = t, f1
    thresholds = {c: best_t for c in classes}
    records = [
        ImageRecord(scorer.largest_regions(p.astype(np.float32), thresholds), head, label)
        for p, head, label in maps
    ]
    op = choose(records, classes, thresholds, target=cfg.max_false_reject, rule=cfg.op_rule,
                smallest_area=cfg.min_area_px, chosen_on=chosen_on,
                flips=bool(getattr(scorer, "flips", False)))
    return op, {"pixel_threshold": best_t, "pixel_f1_at_threshold": best_f1}

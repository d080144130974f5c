"""The operating point: how a model's outputs become a part-level decision.

It is chosen on a validation split when a model is trained (:func:`choose`), stored in the
checkpoint beside the weights (``CheckpointMeta.operating_point``), shown by
``station model info`` and used by the station unless the config's rules override it.

A part (one image) is *flagged* (FAIL) by the rule:

- ``segmentation``: some defect of class ``c`` (a connected region of pixels whose winning
  class is ``c`` with probability >= ``pixel_thresholds[c]``) covers >= ``min_area_px[c]``;
- ``image_head``: the image head's part score (its largest class logit) >= ``head_threshold``;
- ``either``: one or the other.

The choice (:func:`choose`) works on :class:`ImageRecord` s, one per validation image: the
largest region per class at the chosen pixel thresholds and the head's score. It maximises the
share of defective images flagged subject to a false-reject rate <= the target, and among
equals takes the fewest false rejects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

Rule = Literal["segmentation", "image_head", "either"]
RULES: tuple[str, ...] = ("segmentation", "image_head", "either")
#: Minimum areas the search tries [px].
AREA_GRID: tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768,
                              1024, 2048, 4096)


class OperatingPoint(BaseModel):
    """Thresholds and the part-level rule of a model, and where they were chosen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: Rule = Field(description="Part-level rule: segmentation, image_head or either [-]")
    pixel_thresholds: dict[str, float] = Field(
        description="Per defect class: probability a pixel needs to be of that class [0..1]"
    )
    min_area_px: dict[str, int] = Field(
        description="Per defect class: smallest region that fails a part [px]"
    )
    head_threshold: float | None = Field(
        None, description="Image-head part score (largest class logit) that fails a part [logit]"
    )
    false_reject_target: float = Field(
        0.02, ge=0, le=1, description="Largest validation false-reject rate allowed [-]"
    )
    flips: bool = Field(
        False,
        description="Whether the network's outputs were averaged over horizontal and vertical "
        "flips (three passes) when the point was chosen; the station then does the same [-]",
    )
    chosen_on: str = Field("", description="The split it was chosen on, in words [-]")
    figures: dict[str, float] = Field(
        default_factory=dict,
        description="What it gave where it was chosen: defect_recall, false_reject_rate, ... [-]",
    )

    @model_validator(mode="after")
    def _consistent(self) -> OperatingPoint:
        if set(self.pixel_thresholds) != set(self.min_area_px):
            raise ValueError(
                f"pixel_thresholds ({sorted(self.pixel_thresholds)}) and min_area_px "
                f"({sorted(self.min_area_px)}) must name the same classes"
            )
        bad = {k: v for k, v in self.pixel_thresholds.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"pixel_thresholds must be within [0, 1], got {bad}")
        small = {k: v for k, v in self.min_area_px.items() if v < 1}
        if small:
            raise ValueError(f"min_area_px must be >= 1 px, got {small}")
        if self.rule != "segmentation" and self.head_threshold is None:
            raise ValueError(f"rule {self.rule!r} uses the image head: head_threshold is needed")
        return self

    @property
    def uses_head(self) -> bool:
        """Whether the rule consults the image head."""
        return self.rule in ("image_head", "either")

    @property
    def uses_segmentation(self) -> bool:
        """Whether the rule consults the segmentation regions."""
        return self.rule in ("segmentation", "either")

    @property
    def op_id(self) -> str:
        """``op-`` + 8 hex digits of the decision-relevant fields (stable across writes)."""
        doc = self.model_dump(include={"rule", "pixel_thresholds", "min_area_px",
                                       "head_threshold"})
        if self.flips:  # (points without flips keep the ids they always had)
            doc["flips"] = True
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
        return f"op-{digest[:8]}"

    def describe(self) -> str:
        """One line for logs and ``station model info``."""
        parts = [f"{self.op_id}: rule {self.rule}"]
        if self.uses_segmentation:
            classes = ", ".join(
                f"{c} >= {self.min_area_px[c]} px at p >= {self.pixel_thresholds[c]:.2f}"
                for c in sorted(self.pixel_thresholds)
            )
            parts.append(f"regions: {classes}")
        if self.uses_head:
            parts.append(f"image head: score >= {self.head_threshold:.3f}")
        if self.flips:
            parts.append("outputs averaged over flips")
        if self.chosen_on:
            parts.append(f"chosen on {self.chosen_on} for <= {self.false_reject_target:.1%} "
                         "false rejects")
        return "; ".join(parts)


def legacy(
    thresholds: dict[str, float], provenance_op: dict[str, float] | None, classes: Sequence[str]
) -> OperatingPoint:
    """The operating point of a format-1 checkpoint (an image threshold and one minimum area
    in its provenance), as a segmentation rule."""
    op = provenance_op or {}
    t = float(op.get("image_threshold", min([thresholds.get(c, 0.5) for c in classes])))
    area = max(1, int(op.get("min_area_px", 16)))
    return OperatingPoint(
        rule="segmentation",
        pixel_thresholds={c: max(float(thresholds.get(c, 0.5)), t) for c in classes},
        min_area_px={c: area for c in classes},
        chosen_on="format-1 checkpoint (image threshold and minimum area of its provenance)",
    )


@dataclass(frozen=True)
class ImageRecord:
    """What the choice needs of one validation image.

    ``areas``: per defect class, the largest region of that class at the candidate pixel
    thresholds [px] (0 when none); ``head``: the image head's part score (None without one);
    ``label``: the image's true defect class (``""`` for defect-free).
    """

    areas: dict[str, int]
    head: float | None
    label: str


@dataclass(frozen=True)
class _Candidate:
    rule: Rule
    areas: dict[str, int]
    head: float | None
    recall: float
    frr: float


def _flags(records: Sequence[ImageRecord], areas: dict[str, int]) -> np.ndarray:
    return np.asarray([any(r.areas.get(c, 0) >= a for c, a in areas.items()) for r in records])


def threshold_at_budget(negatives: np.ndarray, budget: int) -> float | None:
    """Lowest threshold (a value >=, ties counted) that at most ``budget`` of the
    ``negatives`` (defect-free images' scores) reach; None when there are none."""
    neg = np.sort(negatives)[::-1]
    if len(neg) == 0:
        return None
    if budget >= len(neg):
        return float(neg[-1])
    # above the (budget + 1)-th highest negative: at most `budget` negatives reach it
    return float(np.nextafter(float(neg[budget]), np.inf))


def _head_threshold(scores: np.ndarray, free: np.ndarray, already: np.ndarray,
                    budget: int) -> float:
    """Lowest threshold on ``scores`` that adds at most ``budget`` false rejects to the
    defect-free images not ``already`` flagged (ties counted: a threshold is a value >=)."""
    t = threshold_at_budget(scores[free & ~already], budget)
    if t is None:
        return float(np.min(scores)) if len(scores) else 0.0
    return t


def choose(
    records: Sequence[ImageRecord],
    classes: Sequence[str],
    pixel_thresholds: dict[str, float],
    *,
    target: float = 0.02,
    rule: str = "auto",
    smallest_area: int = 1,
    chosen_on: str = "",
    flips: bool = False,
) -> OperatingPoint:
    """The operating point with the most defective validation images flagged at a false-reject
    rate <= ``target`` (fewest false rejects among equals; when nothing meets the target, the
    fewest false rejects). ``rule`` = ``auto`` tries every rule the records allow."""
    if not records:
        raise ValueError("choosing an operating point needs at least one validation image")
    free = np.asarray([not r.label for r in records])
    defective = ~free
    n_free = int(free.sum())
    budget = int(np.floor(target * n_free + 1e-9))
    has_head = all(r.head is not None for r in records)
    rules: list[Rule] = (
        (["segmentation", "image_head", "either"] if has_head else ["segmentation"])
        if rule == "auto" else [rule]  # type: ignore[list-item]
    )
    if not has_head and any(r != "segmentation" for r in rules):
        raise ValueError(f"rule {rule!r} needs an image head, which this model does not have")
    grid = [a for a in AREA_GRID if a >= smallest_area] or [smallest_area]
    scores = np.asarray([r.head if r.head is not None else 0.0 for r in records], np.float64)

    def rate(flags: np.ndarray, mask: np.ndarray) -> float:
        return float(flags[mask].mean()) if mask.any() else 0.0

    def seg_areas() -> dict[str, int]:
        """Per-class minimum areas by coordinate ascent from the best common area."""
        best: tuple[float, float, dict[str, int]] | None = None
        for a in grid:
            areas = {c: a for c in classes}
            f = _flags(records, areas)
            key = (rate(f, defective) if rate(f, free) <= target else -1.0, -rate(f, free))
            if best is None or key > best[:2]:
                best = (*key, areas)
        assert best is not None
        areas = dict(best[2])
        for _ in range(3):
            changed = False
            for c in classes:
                for a in grid:
                    trial = {**areas, c: a}
                    f = _flags(records, trial)
                    g = _flags(records, areas)
                    ok_t, ok_g = rate(f, free) <= target, rate(g, free) <= target
                    kt = (rate(f, defective) if ok_t else -1.0, -rate(f, free))
                    kg = (rate(g, defective) if ok_g else -1.0, -rate(g, free))
                    if kt > kg:
                        areas, changed = trial, True
            if not changed:
                break
        return areas

    candidates: list[_Candidate] = []
    for r in rules:
        if r == "segmentation":
            areas = seg_areas()
            f = _flags(records, areas)
            candidates.append(_Candidate(r, areas, None, rate(f, defective), rate(f, free)))
        elif r == "image_head":
            h = _head_threshold(scores, free, np.zeros(len(records), bool), budget)
            f = scores >= h
            candidates.append(_Candidate(r, {c: grid[-1] for c in classes}, h,
                                         rate(f, defective), rate(f, free)))
        else:
            for a in grid:
                areas = {c: a for c in classes}
                seg = _flags(records, areas)
                used = int((seg & free).sum())
                if used > budget:
                    continue
                h = _head_threshold(scores, free, seg, budget - used)
                f = seg | (scores >= h)
                candidates.append(_Candidate(r, areas, h, rate(f, defective), rate(f, free)))
    feasible = [c for c in candidates if c.frr <= target + 1e-12]
    if feasible:
        best = max(feasible, key=lambda c: (c.recall, -c.frr, c.rule == "segmentation"))
    else:
        best = min(candidates, key=lambda c: (c.frr, -c.recall))
    return OperatingPoint(
        rule=best.rule,
        pixel_thresholds={c: float(pixel_thresholds[c]) for c in classes},
        min_area_px=dict(best.areas),
        head_threshold=best.head,
        false_reject_target=target,
        flips=flips,
        chosen_on=chosen_on,
        figures={
            "defect_recall": best.recall,
            "false_reject_rate": best.frr,
            "target_met": 1.0 if best.frr <= target + 1e-12 else 0.0,
            "images": float(len(records)),
            "defective": float(defective.sum()),
        },
    )


def flagged(op: OperatingPoint, record: ImageRecord) -> bool:
    """Whether ``op`` flags the image of ``record``."""
    seg = op.uses_segmentation and any(
        record.areas.get(c, 0) >= a for c, a in op.min_area_px.items()
    )
    head = (op.uses_head and record.head is not None and op.head_threshold is not None
            and record.head >= op.head_threshold)
    return bool(seg or head)

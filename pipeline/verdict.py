"""Defects -> PASS / FAIL with human-readable reasons, per the config's rules.

A defect *fails* its class rule (``rules.classes[name]``, else ``rules.default``) when its max
score reaches ``min_score`` and its area reaches ``min_area_mm2`` (or ``min_area_px`` when the
camera has no scale). A class fails a camera when more than ``max_count`` of its defects
fail there.

Regions of interest (:class:`Region`, a polygon and/or a mask image per camera) are rasterised
here and applied by :mod:`pipeline.postprocess` before the defects are found, so pixels outside
them are background and defects there never exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from config.errors import ConfigError, PipelineError
from config.rules import ClassRule, RegionOfInterest, RulesConfig
from models.operating_point import OperatingPoint
from pipeline.types import CameraResult, Defect, Verdict

#: At most this many failing defects are spelt out per class and camera.
MAX_REASONS_PER_CLASS = 5


def _num(v: float) -> str:
    if v >= 100:
        return f"{v:.0f}"
    if v >= 1 or v == 0:
        return f"{v:.1f}"
    return f"{v:.2g}"


def rule_for(rules: RulesConfig, class_name: str) -> ClassRule:
    """The rule for ``class_name``: its own, else the default."""
    return rules.classes.get(class_name, rules.default)


def fails(defect: Defect, rule: ClassRule, pixels: bool = False) -> bool:
    """Whether one defect fails its class rule (score and size both reach the limits).

    Sizes compare in mm² when the defect has a scale, unless ``pixels`` (then in px)."""
    if defect.max_score < rule.min_score:
        return False
    if defect.area_mm2 is not None and not pixels:
        return defect.area_mm2 >= rule.min_area_mm2
    return defect.area_px >= rule.min_area_px


def describe(defect: Defect, rule: ClassRule, pixels: bool = False) -> str:
    """``Crack 3.2 mm2 >= 1.0 mm2 at (1204, 877) on cam0 (score 0.91)``."""
    cx, cy = round(defect.centroid[0]), round(defect.centroid[1])
    if pixels:
        size = f"{defect.area_px} px >= {rule.min_area_px} px"
    elif defect.area_mm2 is not None:
        size = f"{_num(defect.area_mm2)} mm2 >= {_num(rule.min_area_mm2)} mm2"
    else:
        size = f"{defect.area_px} px >= {rule.min_area_px} px (no scale)"
    return (
        f"{defect.class_name} {size} at ({cx}, {cy}) on {defect.camera} "
        f"(score {defect.max_score:.2f})"
    )


def capped_reasons(cameras: Sequence[CameraResult]) -> list[str]:
    """One reason per camera with more defect regions than ``pipeline.max_regions``."""
    return [
        f"{cam.regions_found} defect regions on {cam.camera}, more than pipeline.max_regions "
        f"allows; only the {len(cam.defects)} largest were examined and are reported (a noisy "
        "or textured frame: check the part, the lighting and the model)"
        for cam in cameras if cam.capped
    ]


def judge(
    cameras: Sequence[CameraResult], rules: RulesConfig, pixels: bool = False
) -> tuple[Verdict, list[str]]:
    """PASS, or FAIL with one reason per failing defect (and per exceeded count).

    ``pixels``: compare sizes in px even where a scale is known (a model's operating point
    is in the pixels of its training images). A camera with more defect regions than
    ``pipeline.max_regions`` (``capped``) is a FAIL whatever its listed defects are: only its
    largest regions were examined."""
    reasons: list[str] = []
    for cam in cameras:
        reasons.extend(capped_reasons([cam]))
        by_class: dict[str, list[Defect]] = {}
        for d in cam.defects:
            if fails(d, rule_for(rules, d.class_name), pixels):
                by_class.setdefault(d.class_name, []).append(d)
        for name in sorted(by_class):
            failing = by_class[name]
            rule = rule_for(rules, name)
            if len(failing) <= rule.max_count:
                continue
            if rule.max_count > 0:
                reasons.append(
                    f"{len(failing)} {name} defects on {cam.camera} > max_count {rule.max_count}"
                )
            reasons.extend(describe(d, rule, pixels) for d in failing[:MAX_REASONS_PER_CLASS])
            if len(failing) > MAX_REASONS_PER_CLASS:
                reasons.append(
                    f"... and {len(failing) - MAX_REASONS_PER_CLASS} more {name} on {cam.camera}"
                )
    return (Verdict.FAIL if reasons else Verdict.PASS), reasons


def operating_point_rules(op: OperatingPoint, regions: RulesConfig | None = None) -> RulesConfig:
    """The class rules of a model's operating point (sizes in px; regions kept from
    ``regions``)."""
    classes = {
        c: ClassRule.model_validate({"min_area_px": op.min_area_px[c],
                                     "min_score": op.pixel_thresholds[c]})
        for c in op.pixel_thresholds
    }
    return RulesConfig.model_validate({
        "classes": classes,
        "regions": dict(regions.regions) if regions is not None else {},
    })


def judge_operating_point(
    cameras: Sequence[CameraResult], op: OperatingPoint, rules: RulesConfig
) -> tuple[Verdict, list[str]]:
    """PASS / FAIL by a model's operating point: its region rule (``rules`` from
    :func:`operating_point_rules`), its image-head rule, or either, as the point says."""
    reasons: list[str] = []
    if op.uses_segmentation:
        _, reasons = judge(cameras, rules, pixels=True)
    else:  # a capped camera is never a PASS, whatever decides
        reasons = capped_reasons(cameras)
    if op.uses_head and op.head_threshold is not None:
        for cam in cameras:
            if cam.part_score is not None and cam.part_score >= op.head_threshold:
                reasons.append(
                    f"part score {cam.part_score:.2f} >= {op.head_threshold:.2f} on "
                    f"{cam.camera} (image head; most likely {cam.part_class})"
                )
    return (Verdict.FAIL if reasons else Verdict.PASS), reasons

@dataclass(frozen=True)
class Region:
    """One camera's region: polygon vertices (x, y) in full-frame px, and/or a mask image."""

    polygon: tuple[tuple[float, float], ...] | None = None
    mask: npt.NDArray[np.uint8] | None = None

    def rasterise(self, height: int, width: int) -> npt.NDArray[np.bool_]:
        """Boolean ``(height, width)``: True where inspected (polygon AND mask, if both)."""
        keep = np.ones((height, width), dtype=bool)
        if self.mask is not None:
            mh, mw = self.mask.shape
            if (mh, mw) != (height, width):
                if abs(mh / mw - height / width) > 0.01:
                    raise PipelineError(
                        f"region mask of {mw} x {mh} px does not fit a {width} x {height} frame "
                        "(aspect ratios differ)"
                    )
                resized = cv2.resize(self.mask, (width, height), interpolation=cv2.INTER_NEAREST)
                keep &= resized > 0
            else:
                keep &= self.mask > 0
        if self.polygon is not None:
            poly = np.zeros((height, width), dtype=np.uint8)
            pts = np.round(np.asarray(self.polygon, dtype=np.float64)).astype(np.int32)
            cv2.fillPoly(poly, [pts.reshape(-1, 1, 2)], 1)
            keep &= poly > 0
        return keep


def load_region(cfg: RegionOfInterest, mask_path: str | None) -> Region:
    """A :class:`Region` from its config; ``mask_path`` is the resolved mask file, if any."""
    mask = None
    if mask_path is not None:
        img = cv2.imread(mask_path, cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise ConfigError(f"rules.regions: mask image {mask_path} cannot be read")
        mask = np.asarray(img, dtype=np.uint8)
    polygon = None
    if cfg.polygon is not None:
        if len(cfg.polygon) < 3:
            raise ConfigError(
                f"rules.regions: a polygon needs at least 3 vertices, got {len(cfg.polygon)}"
            )
        polygon = tuple((float(x), float(y)) for x, y in cfg.polygon)
    return Region(polygon=polygon, mask=mask)

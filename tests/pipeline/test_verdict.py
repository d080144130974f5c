"""Verdict rules and their reasons; regions of interest."""

from __future__ import annotations

import numpy as np
import pytest

from config.errors import PipelineError
from config.rules import RulesConfig
from pipeline.types import CameraResult, Defect, Verdict
from pipeline.verdict import MAX_REASONS_PER_CLASS, Region, judge


def _defect(cls: str = "Crack", mm2: float | None = 3.2, px: int = 320, score: float = 0.91,
            at: tuple[float, float] = (1204.2, 876.7), camera: str = "cam0") -> Defect:
    return Defect(camera=camera, class_name=cls, class_index=3, area_px=px, area_mm2=mm2,
                  box=(1190, 860, 30, 30), centroid=at, mean_score=score, max_score=score)


def _cams(*defects: Defect) -> list[CameraResult]:
    return [CameraResult("cam0", 5472, 3648, list(defects), np.zeros((4, 4), np.uint8))]


def _rules(**data: object) -> RulesConfig:
    return RulesConfig.model_validate(data)


def test_reason_reads_like_the_issue() -> None:
    """A failing crack is explained with class, area, limit, position and camera."""
    rules = _rules(classes={"Crack": {"min_area_mm2": 1.0, "min_score": 0.5}})
    verdict, reasons = judge(_cams(_defect()), rules)
    assert verdict is Verdict.FAIL
    assert reasons == ["Crack 3.2 mm2 >= 1.0 mm2 at (1204, 877) on cam0 (score 0.91)"]


def test_small_or_unsure_defects_pass() -> None:
    """Defects under the area limit or the score limit are tolerated."""
    rules = _rules(classes={"Crack": {"min_area_mm2": 5.0, "min_score": 0.5}})
    assert judge(_cams(_defect(mm2=3.2)), rules) == (Verdict.PASS, [])
    rules = _rules(classes={"Crack": {"min_area_mm2": 1.0, "min_score": 0.95}})
    assert judge(_cams(_defect(score=0.91)), rules) == (Verdict.PASS, [])
    assert judge([], rules) == (Verdict.PASS, [])


def test_pixels_rule_without_scale() -> None:
    """Without mm² the rule's min_area_px decides, and the reason says there was no scale."""
    rules = _rules(default={"min_area_px": 100})
    verdict, reasons = judge(_cams(_defect(mm2=None, px=320)), rules)
    assert verdict is Verdict.FAIL
    assert reasons[0].startswith("Crack 320 px >= 100 px (no scale)")
    assert judge(_cams(_defect(mm2=None, px=99)), rules)[0] is Verdict.PASS


def test_default_rule_for_unlisted_classes() -> None:
    """Classes without their own rule follow rules.default."""
    rules = _rules(default={"min_area_mm2": 10.0}, classes={"Blowhole": {"min_area_mm2": 0.1}})
    assert judge(_cams(_defect("Crack", mm2=3.0)), rules)[0] is Verdict.PASS
    assert judge(_cams(_defect("Blowhole", mm2=3.0)), rules)[0] is Verdict.FAIL


def test_max_count() -> None:
    """max_count failing defects still pass; one more fails with a count reason first."""
    rules = _rules(classes={"Crack": {"min_area_mm2": 1.0, "max_count": 2}})
    two = [_defect(at=(i, i)) for i in range(2)]
    assert judge(_cams(*two), rules)[0] is Verdict.PASS
    verdict, reasons = judge(_cams(*two, _defect(at=(9, 9))), rules)
    assert verdict is Verdict.FAIL
    assert reasons[0] == "3 Crack defects on cam0 > max_count 2"
    assert len(reasons) == 4


def test_reasons_are_bounded() -> None:
    """Many failing defects are summarised, not listed one by one."""
    rules = _rules(classes={"Crack": {"min_area_mm2": 1.0}})
    verdict, reasons = judge(_cams(*[_defect() for _ in range(40)]), rules)
    assert verdict is Verdict.FAIL
    assert len(reasons) == MAX_REASONS_PER_CLASS + 1
    assert reasons[-1] == f"... and {40 - MAX_REASONS_PER_CLASS} more Crack on cam0"


def test_region_polygon_and_mask() -> None:
    """Polygons and masks rasterise to the frame; both given means both must hold; a mask of
    another aspect ratio is refused."""
    poly = Region(polygon=((2.0, 2.0), (7.0, 2.0), (7.0, 5.0), (2.0, 5.0)))
    keep = poly.rasterise(8, 10)
    assert keep.sum() == 6 * 4 and keep[2, 2] and not keep[1, 2]
    mask = np.zeros((4, 5), np.uint8)
    mask[:, :2] = 255
    both = Region(polygon=poly.polygon, mask=mask).rasterise(8, 10)
    assert both.sum() == 2 * 4  # columns 2..3 of the polygon are in the mask's left 4 columns
    with pytest.raises(PipelineError, match="aspect"):
        Region(mask=mask).rasterise(8, 8)


def test_capped_camera_is_never_a_pass() -> None:
    """A camera with more regions than max_regions fails even when no listed defect does, and
    the reason says how many there were and how many are reported."""
    cams = _cams(_defect(mm2=0.1))
    cams[0].regions_found, cams[0].capped = 5000, True
    verdict, reasons = judge(cams, _rules())
    assert verdict is Verdict.FAIL
    assert reasons[0].startswith("5000 defect regions on cam0, more than pipeline.max_regions "
                                 "allows; only the 1 largest")


def test_capped_camera_fails_under_an_operating_point_too() -> None:
    """Whatever decides (a model's operating point on its image head alone), a capped camera
    is not a PASS."""
    from models.operating_point import OperatingPoint
    from pipeline.verdict import judge_operating_point

    op = OperatingPoint.model_validate({
        "rule": "image_head", "pixel_thresholds": {"Crack": 0.5},
        "min_area_px": {"Crack": 100}, "head_threshold": 5.0})
    cams = _cams(_defect(mm2=0.1))
    cams[0].part_score = 1.0
    assert judge_operating_point(cams, op, _rules()) == (Verdict.PASS, [])
    cams[0].regions_found, cams[0].capped = 900, True
    verdict, reasons = judge_operating_point(cams, op, _rules())
    assert verdict is Verdict.FAIL and reasons[0].startswith("900 defect regions on cam0")

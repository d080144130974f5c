"""Tests of ``station trigger``'s terminal output (format_verdict); the command against a
running station is tested end to end in tests/e2e."""

from __future__ import annotations

from typing import Any

from station.commands.trigger import MAX_DEFECTS, MAX_REASONS, format_verdict


def _header(**camera: Any) -> dict[str, Any]:
    return {
        "verdict": "FAIL", "inspection_id": "i-1", "part_id": "P-7", "duration_ms": 81.6,
        "model": {"model_id": "unet@abc", "trained": True, "operating_point": "op-1"},
        "calibration_id": None, "reasons": ["part score 5.54 >= -1.06 on cam0 (image head)"],
        "cameras": [{"camera": "cam0", "defects": [], **camera}],
    }


def test_a_verdict_in_a_few_lines_with_the_image_heads_box() -> None:
    """Verdict, ids, duration, model and decision, reasons, defects per camera, and where
    the image head found a defect when its rule failed the camera."""
    text = format_verdict(_header(part_score=5.54, part_class="Blowhole",
                                  part_box=[155, 87, 58, 128]))
    lines = text.splitlines()
    assert lines[0] == "FAIL  inspection i-1  part P-7  82 ms"
    assert "model unet@abc (trained)  decided by op-1  calibration none" in lines[1]
    assert lines[2] == "  - part score 5.54 >= -1.06 on cam0 (image head)"
    assert lines[3] == "  cam0: 0 defect(s)"
    assert lines[4] == "    image head: Blowhole (part score 5.54) in x 155..213, y 87..215"


def test_long_lists_are_cut_and_say_where_the_rest_is() -> None:
    """More reasons than MAX_REASONS: the rest is counted and --json named; at most
    MAX_DEFECTS defects per camera; no head line without a box."""
    d = {"class_name": "Crack", "area_px": 40, "area_mm2": None, "max_score": 0.9,
         "centroid": [1.0, 2.0]}
    h = _header(defects=[d] * (MAX_DEFECTS + 3), part_box=None)
    h["reasons"] = [f"r{i}" for i in range(MAX_REASONS + 2)]
    text = format_verdict(h)
    assert "... 2 more reason(s) (--json for all)" in text
    assert text.count("Crack") == MAX_DEFECTS and "image head" not in text

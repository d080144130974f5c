"""station.calibration.summary: the table at the end of a calibration run."""

from __future__ import annotations

import pytest

from station.calibration.steps import StepResult
from station.calibration.summary import short, summary_table


def test_summary_table_lines_up() -> None:
    """One row per camera and step, columns aligned, the key number last."""
    table = summary_table([
        StepResult("exposure", "cam0", "PASS", "", {"exposure_us": 1234.0, "mean": 0.45}),
        StepResult("scale", "camera-long", "FAIL", "scale: nothing"),
    ])
    lines = table.splitlines()
    assert lines[0].split() == ["camera", "step", "result", "measured"]
    assert lines[2].split()[:4] == ["cam0", "exposure", "PASS", "1234"]
    assert lines[3].index("FAIL") == lines[2].index("PASS")


@pytest.mark.parametrize(
    ("result", "cell"),
    [
        (StepResult("exposure", "c", "PASS", "", {"exposure_us": 800.4, "gain_db": 6.0,
                                                   "mean": 0.4512}), "800 µs, 6.0 dB, mean 0.451"),
        (StepResult("focus", "c", "FAIL", "", {"best": 12.34, "threshold": 50}),
         "best 12.3 (min 50)"),
        (StepResult("dark", "c", "PASS", "", {"mean": 0.01234}), "mean 0.0123"),
        (StepResult("flat", "c", "PASS", "", {"uniformity": 0.8}), "uniformity 0.800"),
        (StepResult("scale", "c", "PASS", "", {"mm_per_px": 0.142857}), "0.14286 mm/px"),
        (StepResult("lights", "c", "PASS", "", {"rise_top": 0.2, "rise_side": 0.15}),
         "top +0.200, side +0.150"),
        (StepResult("scale", "c", "SKIP", "scale: camera c is a replay camera serving recorded "
                    "image files"), "camera c is a replay camera serving recorded im…"),
        (StepResult("flat", "c", "FAIL", "flat: too dark"), "too dark"),
    ],
)
def test_each_step_shows_its_key_number_else_the_reason(result: StepResult, cell: str) -> None:
    """The one number worth a cell per step; a skip or a failure without it shows the reason
    without its step prefix, cut to 48 characters."""
    assert short(result) == cell
    assert len(short(result)) <= 48 or result.status == "PASS"

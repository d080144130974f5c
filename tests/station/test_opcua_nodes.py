"""station.opcua.nodes: the values written for a verdict header and a status message."""

from __future__ import annotations

from datetime import UTC, datetime

from station.opcua import nodes


def test_verdict_values() -> None:
    """Defects counted per class (sorted), codes, times, and a header without fields."""
    values = nodes.verdict_values({
        "inspection_id": "I", "part_id": None, "verdict": "ERROR", "reasons": ["cameras: x"],
        "started_at": "2026-11-30T10:00:00.000+00:00", "finished_at": "bad", "duration_ms": 3,
        "cameras": [{"defects": [{"class_name": "b"}, {"class_name": "a"}]},
                    {"defects": [{"class_name": "b"}]}],
        "model": None, "calibration_id": None,
    }, 7)
    p = nodes.LAST_VERDICT
    assert values[f"{p}.VerdictCode"] == 3 and values[f"{p}.PartId"] == ""
    assert values[f"{p}.DefectClasses"] == ["a", "b"] and values[f"{p}.DefectCounts"] == [1, 2]
    assert values[f"{p}.StartedAt"] == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert values[f"{p}.FinishedAt"] is None
    assert list(values)[-1] == f"{p}.Sequence" and values[f"{p}.Sequence"] == 7
    assert set(values) <= {v.node_id for v in nodes.VARIABLES}
    assert nodes.verdict_values({}, 1)[f"{p}.Verdict"] == ""


def test_status_values() -> None:
    """Health from cameras and lights; no calibration is -1 days; counters and yield."""
    values = nodes.status_values({"state": "ready", "cameras": [], "lights": {"backend": "none"},
                                  "counts": {"PASS": 0}})
    assert values[f"{nodes.HEALTH}.CamerasConnected"] is False
    assert values[f"{nodes.HEALTH}.LightsConnected"] is True
    assert values[f"{nodes.HEALTH}.CalibrationAgeDays"] == -1.0
    assert values[f"{nodes.COUNTERS}.Yield"] == 0.0
    assert set(values) <= {v.node_id for v in nodes.VARIABLES}

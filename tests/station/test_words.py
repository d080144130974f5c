"""Tests of station.words: the status in the words station status and the HMI share."""

from __future__ import annotations

from station.words import status_lines


def test_status_lines_name_every_part_and_problem() -> None:
    """State, model (trained or not), each camera, lights, calibration with its age, counts
    and every problem get a line."""
    st = {
        "station": "booth-3", "state": "degraded", "pid": 42, "uptime_s": 61.4,
        "model": {"model_id": "m1", "trained": False, "device": "cuda:0"},
        "cameras": [{"name": "cam0", "backend": "genicam", "connected": True, "detail": "ok"},
                    {"name": "cam1", "backend": "genicam", "connected": False,
                     "detail": "timeout"}],
        "lights": {"backend": "serial", "connected": False},
        "calibration": {"calibration_id": "cal-7", "age_days": 12.25},
        "counts": {"PASS": 10, "FAIL": 2, "ERROR": 1}, "queue": {"waiting": 1, "depth": 2},
        "problems": ["camera cam1 not connected: timeout"],
    }
    assert status_lines(st) == [
        "booth-3: DEGRADED  (pid 42, up 61 s)",
        "  model   m1  UNTRAINED: verdicts mean nothing  on cuda:0",
        "  camera  cam0     genicam  connected  ok",
        "  camera  cam1     genicam  NOT CONNECTED  timeout",
        "  lights  serial  not connected",
        "  calib   cal-7  (12.25 days old)",
        "  counts  PASS 10  FAIL 2  ERROR 1   queue 1/2",
        "  ! camera cam1 not connected: timeout",
    ]
    st["calibration"] = {"calibration_id": None, "age_days": None}
    assert "  calib   none" in status_lines(st)
    st["model"] = {**st["model"], "flips": True}
    assert status_lines(st)[1].endswith("on cuda:0, test-time flips (3 passes a frame)")


def test_the_plant_s_broker_gets_a_line_when_publishing() -> None:
    """With mqtt on, status has an outbox: one line with the broker, whether connected, the
    backlog against its bound, the oldest's age and what was delivered."""
    st = {
        "station": "b", "state": "degraded", "pid": 1, "uptime_s": 1.0,
        "model": {"model_id": "m", "trained": True, "device": "cpu"}, "cameras": [],
        "lights": {"backend": "none", "connected": False},
        "calibration": {"calibration_id": None}, "counts": {"PASS": 0, "FAIL": 0, "ERROR": 0},
        "queue": {"waiting": 0, "depth": 2}, "problems": [],
        "outbox": {"broker": "mqtts://plant:8883", "connected": False, "backlog": 37,
                   "max_backlog": 100000, "oldest_age_s": 41.4, "delivered": 12},
    }
    assert ("  plant   mqtts://plant:8883  NOT CONNECTED  backlog 37/100000 (oldest 41 s)  "
            "delivered 12") in status_lines(st)


def test_parts_in_the_two_stages_are_counted() -> None:
    """With overlap, the queue line also says how many parts are in the stages."""
    st = {
        "station": "s", "state": "busy", "pid": 1, "uptime_s": 1.0,
        "model": {"model_id": "m", "trained": True, "device": "cpu"},
        "cameras": [], "lights": {"backend": "none"}, "calibration": {},
        "counts": {"PASS": 0, "FAIL": 0, "ERROR": 0},
        "queue": {"waiting": 1, "depth": 2, "in_flight": 2, "between_stages": 1},
        "problems": [],
    }
    assert any(line.endswith("queue 1/2, 2 in the stages (1 between them)")
               for line in status_lines(st))

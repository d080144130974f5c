"""Tests of station.hmi.views: what each page shows, from verdicts, status and the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from config.hmi import ShiftConfig
from config.rules import ClassRule, RulesConfig
from station.hmi import views
from station.hmi.clock import Clock, shift_by_key
from station.hmi.records import Row
from station.hmi.state import Disagreement
from tests.station.hmi.conftest import T0, defect, header

CLOCK = Clock("Europe/Berlin")
RULES = RulesConfig(default=ClassRule(min_area_mm2=10.0, min_score=0.9))


def photo(h: dict[str, Any], camera: str) -> tuple[str | None, str]:
    return f"/image/{h['inspection_id']}/{camera}", "photo"


def nothing(h: dict[str, Any], camera: str) -> tuple[str | None, str]:
    return None, "none"


def test_a_fail_with_its_defects_numbered_failing_first() -> None:
    """The view carries verdict, part, local time, cycle, ids and reasons; each camera's
    defects are numbered, the one over its rule first, with outline, colour and label."""
    small = defect("cam0", "Blowhole", 1, area_mm2=2.0, score=0.95, x=10, y=10)
    big = defect("cam0", "Crack", 2, area_mm2=12.0, score=0.99, x=100, y=50, size=30)
    h = header(1, "FAIL", T0, defects=[small, big], duration_ms=812.4)
    vm = views.inspection_view(h, CLOCK, RULES, photo)
    assert (vm["verdict"], vm["verdict_class"], vm["part_id"]) == ("FAIL", "fail", "P-0001")
    assert vm["time"] == "2026-11-22 06:30:00" and vm["cycle"] == "812 ms"
    assert vm["reasons"] == h["reasons"] and vm["calibration"] == "cal-1"
    assert vm["model"] == "unet@abc" and vm["model_note"] == ""
    cam0 = vm["cameras"][0]
    assert cam0["image"] == f"/image/{h['inspection_id']}/cam0" and cam0["width"] == 320
    assert [d["class_name"] for d in cam0["defects"]] == ["Crack", "Blowhole"]
    first = cam0["defects"][0]
    assert first["failing"] and first["label"] == "1 Crack 0.99" and first["area"] == "12.0 mm²"
    assert first["points"] == "100,50 130,50 130,80 100,80"
    assert first["colour"] == views.css_colour(2) == "#ffc800"  # the overlays' BGR (0,200,255)
    assert cam0["summary"] == "2 defects, 1 over its rule"
    assert vm["cameras"][1]["defects"] == []


def test_the_image_heads_find_is_marked_when_its_rule_failed_the_camera() -> None:
    """A camera the image head failed without a drawn region gets a numbered, failing mark at
    the head's box (class named, '(image head)'), and its summary says so; a malformed or
    absent part_box adds nothing (no mark at a wrong place)."""
    h = header(9, "FAIL", T0)
    cam = h["cameras"][0]
    cam.update(part_score=5.54, part_class="Blowhole", part_box=[155, 87, 58, 128])
    view = views.inspection_view(h, CLOCK, RULES, photo)["cameras"][0]
    (mark,) = view["defects"]
    assert mark["class_name"] == "Blowhole (image head)" and mark["failing"]
    assert mark["points"] == "155,87 213,87 213,215 155,215" and mark["box"] == [155, 87, 58, 128]
    assert mark["label"] == "1 Blowhole (head) 5.54" and mark["area"] == "58 x 128 px box"
    assert view["summary"] == "0 defects; the image head failed it: Blowhole, marked 1"
    for bad in (None, [1, 2, 3], []):
        cam["part_box"] = bad
        assert views.inspection_view(h, CLOCK, RULES, photo)["cameras"][0]["defects"] == []


def test_a_pass_explains_itself_and_an_untrained_model_is_named() -> None:
    """A PASS has a reason too; an untrained model is said to mean nothing."""
    h = header(2, "PASS", defects=[defect(area_mm2=1.0)])
    h["model"]["trained"] = False
    vm = views.inspection_view(h, CLOCK, RULES, photo)
    assert vm["reasons"] == ["no defect reaches its rule (1 below it)"]
    assert vm["model_note"].startswith("UNTRAINED")
    assert vm["operating_point"] == {"id": "config-rules", "text": views.config_rules_text(RULES)}


def test_an_error_without_frames_says_why_there_is_no_picture() -> None:
    """ERROR before acquisition: no image, a note that no frame was grabbed."""
    vm = views.inspection_view(header(3, "ERROR"), CLOCK, RULES, nothing)
    assert vm["cameras"][0]["image"] is None
    assert vm["cameras"][0]["image_note"] == "no frame from this camera in this inspection"
    h = header(4, "PASS")
    assert "storage.preview_px" in views.inspection_view(h, CLOCK, RULES, nothing)[
        "cameras"][0]["image_note"]


def test_garbage_in_a_defect_is_an_error_not_a_wrong_picture() -> None:
    """A defect without its fields cannot be drawn: KeyError, never a silent blank."""
    h = header(5, "FAIL", defects=[defect()])
    del h["cameras"][0]["defects"][0]["box"]
    with pytest.raises(KeyError):
        views.inspection_view(h, CLOCK, RULES, photo)


def test_the_operating_point_is_the_one_that_decided() -> None:
    """The id comes from the verdict; the words from the station's status when it describes
    that decision, else the config's rules (config-rules), else a pointer."""
    h = header(5, "PASS")
    assert views.operating_point(h, None, RULES)["id"] == "config-rules"
    assert "default: >= 10.0 mm², score >= 0.9" in views.operating_point(h, None, RULES)["text"]
    h["model"]["operating_point"] = "op-1234abcd"
    status = {"operating_point": "op-1234abcd", "decision": "model operating point op-1234abcd"}
    assert views.operating_point(h, status, RULES) == {
        "id": "op-1234abcd", "text": "model operating point op-1234abcd"}
    other = {"operating_point": "op-ffff", "decision": "something else"}
    assert "station model info" in views.operating_point(h, other, RULES)["text"]


def test_defects_named_by_the_reasons_are_over_their_rule() -> None:
    """Under a model's operating point (px rules the HMI does not know), a defect is over its
    rule when a reason (pipeline.verdict.describe) names it; the others are not."""
    from pipeline.verdict import describe

    big = defect("cam0", "Crack", 2, area_mm2=0.5, score=0.7, x=100, y=50, size=30)
    small = defect("cam0", "Crack", 2, area_mm2=0.1, score=0.99, x=10, y=10)
    d = views._defect(big)
    reason = describe(d, ClassRule(min_area_px=16), pixels=True)
    h = header(6, "FAIL", defects=[big, small], reasons=[reason])
    h["model"]["operating_point"] = "op-1234abcd"
    cam0 = views.inspection_view(h, CLOCK, RULES, photo)["cameras"][0]
    assert [(x["class_name"], x["failing"]) for x in cam0["defects"]] == [
        ("Crack", True), ("Crack", False)]
    assert cam0["defects"][0]["box"] == [100, 50, 30, 30]
    assert views.cited([reason]) == {("cam0", 115, 65)}


def test_status_in_the_words_of_station_status() -> None:
    """The lines are station status's; no status, or a stale one, is said plainly."""
    status = {
        "station": "s", "state": "degraded", "pid": 7, "uptime_s": 12.0,
        "model": {"model_id": "m", "trained": True, "device": "cpu"},
        "cameras": [{"name": "cam0", "backend": "replay", "connected": False, "detail": "x"}],
        "lights": {"backend": "simulator", "connected": True},
        "calibration": {"calibration_id": "c1", "age_days": 3.5},
        "counts": {"PASS": 1, "FAIL": 2, "ERROR": 3}, "queue": {"waiting": 0, "depth": 2},
        "problems": ["camera cam0 not connected: x"],
    }
    vm = views.status_view(status, 1.0, 15.0)
    assert vm["state"] == "DEGRADED" and vm["state_class"] == "warn"
    assert "  camera  cam0     replay   NOT CONNECTED  x" in vm["lines"]
    assert "  calib   c1  (3.5 days old)" in vm["lines"]
    assert vm["problems"] == ["camera cam0 not connected: x"]
    stale = views.status_view(status, 40.0, 15.0)
    assert stale["state"] == "NOT REPORTING" and "40 s" in stale["problems"][0]
    assert views.status_view(None, None, 15.0)["state"] == "NO STATUS"


def test_alarm_until_acknowledged() -> None:
    """An unacknowledged ERROR is an alarm naming part, time and reason; none when count 0."""
    err = header(6, "ERROR", T0)
    alarm = views.alarm_view(err, 3, CLOCK)
    assert alarm is not None and alarm["count"] == 3
    assert alarm["text"].startswith("ERROR at 2026-11-22 06:30:00, part P-0006: cameras:")
    assert "2 more unacknowledged" in alarm["text"]
    assert views.alarm_view(err, 0, CLOCK) is None and views.alarm_view(None, 2, CLOCK) is None


def test_events_are_lines_and_faults_stand_out() -> None:
    """camera_lost is an error line with its details."""
    e = views.event_view({"kind": "camera_lost", "time": "2026-11-22T05:30:00+00:00",
                          "data": {"camera": "cam1", "reason": "gone"}}, CLOCK)
    assert e == {"time": "2026-11-22 06:30:00", "kind": "camera_lost",
                 "detail": "camera cam1, reason gone", "level": "error"}


def test_shift_view_hours_totals_yield_classes_cycle_times() -> None:
    """Minute counts land in local hours of the shift; yield is PASS over all; FAILs count
    once per class over its rule; the charts are there."""
    shifts = [ShiftConfig(name="early", start="06:00"), ShiftConfig(name="late", start="14:00")]
    window = shift_by_key(shifts, CLOCK, "2026-11-22.early")
    minutes = [("2026-11-22T05:30", "PASS", 6), ("2026-11-22T05:59", "FAIL", 1),
               ("2026-11-22T06:00", "PASS", 2), ("2026-11-22T06:01", "ERROR", 1),
               ("2026-11-22T04:59", "PASS", 50)]  # before the shift: not counted
    failed = [([defect(name="Crack", area_mm2=20.0), defect(name="Blowhole", area_mm2=1.0)],
               ["Crack 20 mm2 >= 10 mm2"], "config-rules")]
    now = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)
    vm = views.shift_view(window, minutes, [300.0, 500.0, 700.0], failed, CLOCK, RULES, now)
    assert vm["totals"] == {"PASS": 8, "FAIL": 1, "ERROR": 1} and vm["yield"] == "80.0 %"
    assert [h["label"] for h in vm["hours"]][:3] == ["06:00", "07:00", "08:00"]
    assert len(vm["hours"]) == 8 and vm["running"]
    assert (vm["hours"][0]["PASS"], vm["hours"][0]["FAIL"]) == (6, 1)
    assert (vm["hours"][1]["PASS"], vm["hours"][1]["ERROR"]) == (2, 1)
    assert vm["classes"] == [("Crack", 1)]  # Blowhole was below its rule
    assert vm["cycle_median"] == "500 ms" and vm["cycle_p95"] == "700 ms"
    assert "<svg" in vm["chart_hours"] and "<svg" in vm["chart_cycle"]


def test_shift_rows_and_failed_classes_fallbacks() -> None:
    """Each shift gets its counts; a FAIL whose defects all pass today's rules counts every
    class it has; one without defects is named so; the image head's class counts."""
    shifts = [ShiftConfig(name="a", start="00:00"), ShiftConfig(name="b", start="12:00")]
    clock = Clock("UTC")
    w = shift_by_key(shifts, clock, "2026-11-22.b")
    older = shift_by_key(shifts, clock, "2026-11-22.a")
    rows = views.shift_rows([w, older], [("2026-11-22T13:00", "FAIL", 2),
                                         ("2026-11-22T01:00", "PASS", 3)])
    assert [(r["key"], r["FAIL"], r["PASS"], r["yield"]) for r in rows] == [
        ("2026-11-22.b", 2, 0, "0.0 %"), ("2026-11-22.a", 0, 3, "100.0 %")]
    head = "part score 3.10 >= 2.00 on cam0 (image head; most likely Blowhole)"
    assert views.failed_classes([([defect(area_mm2=1.0)], [], "config-rules"),
                                 ([], [], "config-rules"), ([], [head], "op-1")], RULES) == {
        "Crack": 1, "(no defect listed)": 1, "Blowhole": 1}
    assert views.yield_text({}) == "-"


def test_search_form_parsing_and_its_errors() -> None:
    """Local times become UTC bounds; a bad verdict, time or overlong part id says what."""
    f = views.parse_filters({"part": " A-1 ", "verdict": "fail", "since": "2026-11-22T06:30",
                             "until": ""}, CLOCK)
    assert (f.part, f.verdict, f.since, f.until) == (
        "A-1", "FAIL", "2026-11-22T05:30:00.000+00:00", None)
    with pytest.raises(ValueError, match="choose PASS, FAIL or ERROR"):
        views.parse_filters({"verdict": "MAYBE"}, CLOCK)
    with pytest.raises(ValueError, match="since 'yesterday': not a local time"):
        views.parse_filters({"since": "yesterday"}, CLOCK)
    with pytest.raises(ValueError, match="at most 128"):
        views.parse_filters({"part": "x" * 129}, CLOCK)


def test_history_rows_csv_and_paging() -> None:
    """Rows show local time, short reasons and the operator's mark; CSV cells that look
    like formulas are defused; pages round up."""
    row = Row("id1", "=cmd|' /C calc'!A0", "2026-11-22T05:30:00.000+00:00", "FAIL", 812.0, 2,
              ["x" * 100], "m", None)
    mark = Disagreement("id1", "t", None, "FAIL", "good", "dust", [])
    out = views.history_rows([row], {"id1": mark}, CLOCK)[0]
    assert out["time"] == "2026-11-22 06:30:00" and out["reasons"].endswith("...")
    assert len(out["reasons"]) == 90 and out["disagrees"] == "operator says good: dust"
    line = views.csv_row(row, mark, CLOCK)
    assert len(line) == len(views.CSV_COLUMNS)
    assert line[1] == "'=cmd|' /C calc'!A0" and line[-2:] == ["good", "dust"]
    assert views.csv_cell(None) == "" and views.csv_cell("-5") == "'-5"
    assert views.Page(1, 50, 0).pages == 1 and views.Page(1, 50, 101).pages == 3
    assert views.bucket_counts([], [(T0, T0 + timedelta(hours=1))]) == [
        {"PASS": 0, "FAIL": 0, "ERROR": 0}]

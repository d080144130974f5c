"""Tests of station.hmi.clock: local times and shift windows, daylight saving included."""

from __future__ import annotations

from datetime import UTC, date, datetime
from itertools import pairwise

import pytest

from config.hmi import ShiftConfig
from station.hmi.clock import (
    Clock,
    iso_utc,
    parse_iso,
    previous_shifts,
    shift_at,
    shift_by_key,
)

SHIFTS = [ShiftConfig(name="early", start="06:00"), ShiftConfig(name="late", start="14:00"),
          ShiftConfig(name="night", start="22:00")]
BERLIN = Clock("Europe/Berlin")


def test_iso_utc_matches_the_store_and_round_trips() -> None:
    """Times are written as the store writes them, so strings compare in time order."""
    when = datetime(2026, 11, 22, 10, 0, 1, 123456, tzinfo=UTC)
    assert iso_utc(when) == "2026-11-22T10:00:01.123+00:00"
    assert parse_iso(iso_utc(when)) == when.replace(microsecond=123000)
    assert parse_iso("2026-11-22T10:00:00") == datetime(2026, 11, 22, 10, tzinfo=UTC)


def test_show_in_the_line_time_zone() -> None:
    """A stored UTC time is shown in local time; rubbish is shown as it is."""
    assert BERLIN.show("2026-11-22T10:00:01.000+00:00") == "2026-11-22 11:00:01"
    assert BERLIN.show("2026-07-01T10:00:00+00:00", seconds=False) == "2026-07-01 12:00"
    assert BERLIN.show(None) == "-" and BERLIN.show("yesterday") == "yesterday"


def test_the_running_shift_and_the_night_over_midnight() -> None:
    """At 07:10 the early shift runs (06:00-14:00 local); at 01:00 the night shift of the
    day before (22:00-06:00)."""
    w = shift_at(SHIFTS, BERLIN, datetime(2026, 11, 22, 6, 10, tzinfo=UTC))
    assert (w.name, w.day, w.key) == ("early", date(2026, 11, 22), "2026-11-22.early")
    assert (w.start, w.end) == (datetime(2026, 11, 22, 5, tzinfo=UTC),
                                datetime(2026, 11, 22, 13, tzinfo=UTC))
    night = shift_at(SHIFTS, BERLIN, datetime(2026, 11, 22, 0, 0, tzinfo=UTC))
    assert night.label == "night 2026-11-21"
    assert night.start == datetime(2026, 11, 21, 21, tzinfo=UTC)
    assert night.end == datetime(2026, 11, 22, 5, tzinfo=UTC)


def test_a_night_shift_across_the_switch_to_summer_time_is_7_hours() -> None:
    """Europe/Berlin skips 02:00-03:00 on 2026-03-29: that night shift lasts 7 h."""
    night = shift_by_key(SHIFTS, BERLIN, "2026-03-28.night")
    assert (night.end - night.start).total_seconds() == 7 * 3600


def test_shift_by_key_refuses_unknown_names_and_dates() -> None:
    """A bad key says what is wrong and lists the shifts."""
    with pytest.raises(ValueError, match="no shift named 'lunch'; the shifts are early, late"):
        shift_by_key(SHIFTS, BERLIN, "2026-11-22.lunch")
    with pytest.raises(ValueError, match="not a date"):
        shift_by_key(SHIFTS, BERLIN, "22.11.2026.early")


def test_previous_shifts_are_contiguous() -> None:
    """Each listed shift ends where the next newer one starts."""
    w = shift_by_key(SHIFTS, BERLIN, "2026-11-22.late")
    listed = previous_shifts(SHIFTS, BERLIN, w, 5)
    assert [s.key for s in listed] == ["2026-11-22.late", "2026-11-22.early",
                                       "2026-11-21.night", "2026-11-21.late",
                                       "2026-11-21.early"]
    assert all(a.start == b.end for a, b in pairwise(listed))


def test_one_shift_a_day_and_the_machine_zone() -> None:
    """A single shift runs 24 h; without a zone the machine's is used."""
    one = [ShiftConfig(name="day", start="00:00")]
    w = shift_at(one, Clock("UTC"), datetime(2026, 11, 22, 12, tzinfo=UTC))
    assert (w.end - w.start).total_seconds() == 86400
    assert Clock(None).name.startswith("local time")

"""Tests of station.hmi.records: read-only queries against a store that Store wrote."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from config.errors import StoreError
from station.hmi.records import Filters, Records
from station.store import DB_NAME
from tests.station.hmi.conftest import T0, defect, header, iso, record


@pytest.fixture
def filled(store: Any) -> Records:
    """Five inspections a minute apart: PASS, FAIL (Crack), ERROR, PASS of part X-1, FAIL."""
    hs = [
        header(1, "PASS", T0),
        header(2, "FAIL", T0 + timedelta(minutes=1), defects=[defect()]),
        header(3, "ERROR", T0 + timedelta(minutes=2)),
        header(4, "PASS", T0 + timedelta(minutes=3), part="X-1_%"),
        header(5, "FAIL", T0 + timedelta(minutes=4),
               defects=[defect("cam1", "Blowhole", 1, 3.0, 0.6)], duration_ms=900.0),
    ]
    for h in hs:
        record(store, h)
    return Records(store.data_dir)


def test_search_newest_first_with_every_filter(filled: Records) -> None:
    """Part id (a substring, % and _ literal), verdict and time bounds narrow the search."""
    rows, total = filled.search(Filters(), 10)
    assert total == 5 and [r.part_id for r in rows][:2] == ["P-0005", "X-1_%"]
    assert filled.search(Filters(part="1_%"), 10)[1] == 1
    assert filled.search(Filters(part="P-000"), 10)[1] == 4
    assert filled.search(Filters(part="_"), 10)[1] == 1  # literal, not a wildcard
    assert [r.verdict for r in filled.search(Filters(verdict="FAIL"), 10)[0]] == ["FAIL", "FAIL"]
    since, until = iso(T0 + timedelta(minutes=1)), iso(T0 + timedelta(minutes=3))
    rows, total = filled.search(Filters(since=since, until=until), 10)
    assert total == 2 and {r.verdict for r in rows} == {"FAIL", "ERROR"}


def test_paging(filled: Records) -> None:
    """Pages of 2: the third has the oldest row; total stays 5."""
    rows, total = filled.search(Filters(), 2, offset=4)
    assert total == 5 and [r.part_id for r in rows] == ["P-0001"]


def test_one_inspection_and_the_latest(filled: Records) -> None:
    """header() gives the published header and the map paths; latest() the newest one."""
    found = filled.header("20261122T000002000-ab02")
    assert found is not None
    h, maps = found
    assert h["verdict"] == "FAIL" and set(maps) == {"cam0", "cam1"}
    assert filled.map_file(maps["cam0"]) is not None
    assert filled.header("nope") is None
    latest = filled.latest()
    assert latest is not None and latest["part_id"] == "P-0005"


def test_errors_after_an_acknowledgement(filled: Records) -> None:
    """The newest ERROR and how many since a time; none after it."""
    err, n = filled.errors_after(None)
    assert n == 1 and err is not None and err["part_id"] == "P-0003"
    assert filled.errors_after(err["finished_at"]) == (None, 0)


def test_shift_figures(filled: Records) -> None:
    """Per-minute counts, cycle times of complete inspections, defects of FAILs."""
    since, until = iso(T0), iso(T0 + timedelta(hours=1))
    minutes = filled.minute_counts(since, until)
    assert sum(n for _, _, n in minutes) == 5
    assert ("2026-11-22T05:31", "FAIL", 1) in minutes
    assert sorted(filled.durations(since, until)) == [400.0, 400.0, 400.0, 900.0]
    failed = filled.failed_defects(since, until)
    assert sorted(d[0]["class_name"] for d, _, _ in failed) == ["Blowhole", "Crack"]
    assert {op for _, _, op in failed} == {"config-rules"}
    assert any(r for _, r, _ in failed)


def test_preview_files_and_paths_outside_the_store(filled: Records) -> None:
    """A kept preview is found; a path that leaves maps/ is refused, whatever it names."""
    h, _ = filled.header("20261122T000001000-ab01") or ({}, {})
    assert filled.preview_file(h["inspection_id"], h["started_at"], "cam0") is not None
    assert filled.preview_file(h["inspection_id"], h["started_at"], "cam9") is None
    assert filled.preview_file("../../x", h["started_at"], "cam0") is None
    assert filled.map_file("../inspections.sqlite3") is None
    assert filled.map_file(None) is None


def test_the_store_is_opened_read_only(filled: Records) -> None:
    """No query may write: the connection refuses an INSERT."""
    db = filled._connect()
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.execute("DELETE FROM inspections")
    finally:
        db.close()


def test_missing_and_foreign_stores_are_clear_errors(tmp_path: Path, filled: Records) -> None:
    """No store yet, or a store of another schema version, is a StoreError saying what to do."""
    with pytest.raises(StoreError, match="--data-dir"):
        Records(tmp_path / "elsewhere").search(Filters(), 10)
    db = sqlite3.connect(filled.data_dir / DB_NAME)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        filled.latest()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / DB_NAME).write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot read the store"):
        Records(garbage).latest()

"""Tests of station.store: a real SQLite file in a temporary directory."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from config.errors import StoreError
from station.store import DB_NAME, Store


def header(i: int, verdict: str = "PASS", defects: int = 0) -> dict[str, Any]:
    return {
        "inspection_id": f"id{i:03d}", "part_id": f"P{i}",
        "started_at": f"2026-11-22T10:00:{i:02d}.000+00:00",
        "finished_at": f"2026-11-22T10:00:{i:02d}.500+00:00", "duration_ms": 500.0,
        "verdict": verdict, "reasons": [] if verdict == "PASS" else ["why"],
        "model": {"model_id": "m1", "trained": False}, "calibration_id": None,
        "timings_ms": {"acquire": 1.0},
        "cameras": [{"camera": "cam0", "defects": [{"class_name": "Crack"}] * defects}],
    }


def test_rows_round_trip_newest_first(tmp_path: Path) -> None:
    """Recorded inspections come back newest first, filtered by verdict."""
    store = Store(tmp_path)
    store.record(header(1), {})
    store.record(header(2, "FAIL", 2), {"cam0": "maps/x.png"})
    store.record(header(3, "ERROR"), {})
    rows = store.history(10)
    assert [r.id for r in rows] == ["id003", "id002", "id001"]
    fail = store.history(10, "FAIL")
    assert len(fail) == 1 and len(fail[0].defects) == 2 and fail[0].maps == {"cam0": "maps/x.png"}
    assert fail[0].model_trained is False and fail[0].reasons == ["why"]
    assert store.counts() == {"PASS": 1, "FAIL": 1, "ERROR": 1}
    store.close()


def test_database_is_wal(tmp_path: Path) -> None:
    """The store runs in WAL mode so readers never block the daemon."""
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_maps_are_files_and_disk_use_is_bounded(tmp_path: Path) -> None:
    """Map PNGs land under maps/DATE/; beyond max_disk_mb the oldest are deleted."""
    store = Store(tmp_path, max_disk_mb=0.01)  # ~10 KiB
    paths = [store.write_map(f"id{i}", "2026-11-22T10", "cam0", b"x" * 4096) for i in range(5)]
    store.record(header(1), {"cam0": paths[-1]})
    left = sorted((tmp_path / "maps" / "2026-11-22").glob("*.png"))
    assert 1 <= len(left) <= 2
    assert (tmp_path / paths[-1]).exists()
    store.close()


def test_duplicate_id_is_a_store_error(tmp_path: Path) -> None:
    """Recording the same inspection twice raises StoreError naming it."""
    store = Store(tmp_path)
    store.record(header(1), {})
    with pytest.raises(StoreError, match="id001"):
        store.record(header(1), {})
    store.close()


def test_unwritable_data_dir(tmp_path: Path) -> None:
    """A data directory that is a file gives a clear StoreError."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="writable --data-dir"):
        Store(blocker / "sub")


def test_counts_survive_a_reopen(tmp_path: Path) -> None:
    """Counts are read once at open and kept current by record(), across restarts."""
    store = Store(tmp_path)
    store.record(header(1, "FAIL"), {})
    store.close()
    store = Store(tmp_path)
    assert store.counts() == {"PASS": 0, "FAIL": 1, "ERROR": 0}
    store.record(header(2), {})
    assert store.counts() == {"PASS": 1, "FAIL": 1, "ERROR": 0}
    store.close()


def test_previews_sit_beside_the_maps_under_the_same_budget(tmp_path: Path) -> None:
    """A frame preview JPEG is written where preview_path says; maps and previews share
    storage.max_disk_mb, so old previews are pruned with old maps."""
    from station.store import preview_path

    store = Store(tmp_path, max_disk_mb=0.01)  # ~10 KiB
    started = "2026-11-22T10:00:00.000+00:00"
    rel = store.write_map("id1", started, "cam0", b"j" * 4096, ".jpg")
    os.utime(tmp_path / rel, (1e9, 1e9))  # the oldest file, whatever the clock's resolution
    assert rel == preview_path("id1", started, "cam0") and (tmp_path / rel).read_bytes()[:1] == b"j"
    for i in range(2, 6):
        store.write_map(f"id{i}", started, "cam0", b"p" * 4096)
    store.record(header(1), {})
    assert not (tmp_path / rel).exists()  # the oldest file, a preview, went first
    store.close()


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o077])
def test_files_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """The data dir and its folders are 0750, the database, its WAL and the maps 0640."""
    old = os.umask(umask)
    try:
        root = tmp_path / "new" / "data"
        store = Store(root)
        rel = store.write_map("id1", "2026-11-22T10", "cam0", b"png")
        store.record(header(1), {"cam0": rel})
        modes = {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode)
                 for p in [root.parent, root, root / "maps", (root / rel).parent, root / rel,
                           root / DB_NAME, root / f"{DB_NAME}-wal"]}
        store.close()
    finally:
        os.umask(old)
    assert modes == {
        "new": 0o750, "new/data": 0o750, "new/data/maps": 0o750,
        "new/data/maps/2026-11-22": 0o750, f"new/data/{rel}": 0o640,
        f"new/data/{DB_NAME}": 0o640, f"new/data/{DB_NAME}-wal": 0o640,
    }


def test_world_writable_data_dir_is_refused_with_the_fix(tmp_path: Path) -> None:
    """An existing data dir anyone may write to is refused; the message gives the chmod."""
    root = tmp_path / "data"
    root.mkdir()
    root.chmod(0o777)
    with pytest.raises(StoreError, match=r"writable by every user \(mode 0777\).*chmod 750"):
        Store(root)
    assert not (root / DB_NAME).exists()
    root.chmod(0o750)
    Store(root).close()


def test_accepted_triggers_until_recorded(tmp_path: Path) -> None:
    """accept() marks a trigger; record() of its verdict removes the mark in one transaction;
    marks left by a crash survive a reopen and are listed oldest first."""
    store = Store(tmp_path)
    store.accept("id002", "P2", "2026-11-22T10:00:02.000+00:00")
    store.accept("id001", None, "2026-11-22T10:00:01.000+00:00")
    store.accept("id003", "P3", "2026-11-22T10:00:03.000+00:00")
    store.record(header(3), {})
    store.close()  # as if killed: the marks are committed
    store = Store(tmp_path)
    assert store.unfinished() == [
        ("id001", None, "2026-11-22T10:00:01.000+00:00"),
        ("id002", "P2", "2026-11-22T10:00:02.000+00:00"),
    ]
    with pytest.raises(StoreError, match="id001"):
        store.accept("id001", None, "2026-11-22T10:00:01.000+00:00")
    store.record(header(1, "ERROR"), {})
    store.record(header(2, "ERROR"), {})
    assert store.unfinished() == []
    store.close()


def test_the_outbox_queues_each_verdict_with_its_record_and_forgets_delivered_ones(
        tmp_path: Path) -> None:
    """With outbox=True every recorded verdict is queued in the same transaction, read back in
    order with its header, counted, and removed once delivered; the count survives a reopen and
    a sequence number is never used twice, even after the rows are gone. Without it nothing is
    queued."""
    store = Store(tmp_path, outbox=True)
    for i in range(1, 6):
        store.record(header(i), {"cam0": f"maps/{i}.png"} if i == 2 else {})
    assert store.backlog() == 5
    queued = store.outbox_after(0, 3)
    assert [q.seq for q in queued] == [1, 2, 3]
    assert queued[1].inspection_id == "id002" and queued[1].maps == {"cam0": "maps/2.png"}
    assert queued[0].header["part_id"] == "P1" and queued[0].queued_at.endswith("00:01.500+00:00")
    assert [q.seq for q in store.outbox_after(3, 10)] == [4, 5]
    store.outbox_delivered([1, 2, 5])
    count, oldest = store.outbox_backlog()
    assert count == 2 and oldest == "2026-11-22T10:00:03.500+00:00"
    store.close()
    store = Store(tmp_path, outbox=True)
    assert store.backlog() == 2
    store.outbox_delivered([3, 4])
    store.record(header(6), {})
    assert [q.seq for q in store.outbox_after(0, 10)] == [6]  # 1..5 never come back
    assert store.outbox_backlog() == (1, "2026-11-22T10:00:06.500+00:00")
    store.close()
    plain = Store(tmp_path / "plain")
    plain.record(header(1), {})
    assert plain.backlog() == 0 and plain.outbox_after(0, 10) == []
    assert plain.outbox_backlog() == (0, None)
    plain.close()

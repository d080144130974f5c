"""The HMI's own records: acknowledgements of ERRORs and "operator disagrees" marks.

One small SQLite file, ``<hmi.state_dir>/hmi.sqlite3``, written by the HMI alone (the daemon's
store is never written by the HMI).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from config.errors import StoreError

STATE_DB = "hmi.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS acks (
    at TEXT NOT NULL,
    upto TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS disagreements (
    inspection_id TEXT PRIMARY KEY,
    at TEXT NOT NULL,
    part_id TEXT,
    station_verdict TEXT NOT NULL,
    operator_says TEXT NOT NULL,
    note TEXT NOT NULL,
    exported TEXT NOT NULL
);
"""

#: A note longer than this is refused (it is a remark, not a report).
MAX_NOTE = 2000


@dataclass(frozen=True)
class Disagreement:
    """An operator's mark on one inspection."""

    inspection_id: str
    at: str
    part_id: str | None
    station_verdict: str
    operator_says: str  # "good" (the station failed it) or "defective" (it passed it)
    note: str
    exported: list[str]  # files written for training, relative to the export folder


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_note(note: str) -> str:
    """The note, stripped; ``ValueError`` naming the rule when it is too long."""
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise ValueError(f"note of {len(note)} characters: at most {MAX_NOTE}; shorten it")
    return note


class HmiState:
    """Acknowledgements and disagreements, in ``state_dir``. Thread-safe."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / STATE_DB
        self._lock = threading.Lock()
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            self._db.executescript(_SCHEMA)
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"hmi.state_dir {str(state_dir)!r}: cannot open {STATE_DB} ({exc}); give a "
                "writable directory with --set hmi.state_dir=DIR"
            ) from exc

    def acknowledge(self, upto: str, note: str = "") -> str:
        """Acknowledge every ERROR finished up to ``upto`` (ISO UTC); returns the time."""
        at = _now()
        with self._lock:
            self._db.execute("INSERT INTO acks VALUES (?, ?, ?)", (at, upto, check_note(note)))
            self._db.commit()
        return at

    def acknowledged_upto(self) -> str | None:
        """Up to when ERRORs are acknowledged (ISO UTC), or None when never."""
        with self._lock:
            row = self._db.execute("SELECT MAX(upto) FROM acks").fetchone()
        return None if row is None else row[0]

    def disagree(self, d: Disagreement) -> None:
        """Record (or replace) an operator's mark on one inspection."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO disagreements VALUES (?, ?, ?, ?, ?, ?, ?)",
                (d.inspection_id, d.at, d.part_id, d.station_verdict, d.operator_says,
                 check_note(d.note), json.dumps(d.exported)),
            )
            self._db.commit()

    def disagreements(self, ids: list[str]) -> dict[str, Disagreement]:
        """The marks on these inspections, by id."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM disagreements WHERE inspection_id IN ({marks})", ids
            ).fetchall()
        return {
            r[0]: Disagreement(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows
        }

    def all_disagreements(self) -> dict[str, Disagreement]:
        """Every mark, by id (they are few: one per part an operator looked at)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM disagreements").fetchall()
        return {
            r[0]: Disagreement(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows
        }

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

"""Read-only queries of the daemon's store, for the HMI.

The HMI never writes the daemon's database: every query opens it read-only
(``mode=ro``), so a query cannot take a write lock. The rows' columns are those of
``station.store`` (``tests/station/hmi/test_records.py`` runs these queries against a store
that ``station.store.Store`` wrote, so a schema change there shows up here).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.errors import StoreError
from station.store import DB_NAME, STORE_SCHEMA_VERSION, preview_path

VERDICTS = ("PASS", "FAIL", "ERROR")


@dataclass(frozen=True)
class Filters:
    """What History searches for; ``since``/``until`` are ISO UTC bounds ``[since, until)``."""

    part: str | None = None
    verdict: str | None = None
    since: str | None = None
    until: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its arguments."""
        clauses: list[str] = []
        args: list[Any] = []
        if self.part:
            escaped = self.part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("part_id LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")
        if self.verdict:
            clauses.append("verdict = ?")
            args.append(self.verdict)
        if self.since:
            clauses.append("started_at >= ?")
            args.append(self.since)
        if self.until:
            clauses.append("started_at < ?")
            args.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args


@dataclass(frozen=True)
class Row:
    """One inspection as History lists it."""

    id: str
    part_id: str | None
    started_at: str
    verdict: str
    duration_ms: float
    n_defects: int
    reasons: list[str]
    model_id: str | None
    calibration_id: str | None


_ROW_COLUMNS = (
    "id, part_id, started_at, verdict, duration_ms, n_defects, reasons, model_id, calibration_id"
)


def _row(r: tuple[Any, ...]) -> Row:
    return Row(r[0], r[1], r[2], r[3], float(r[4]), int(r[5]), json.loads(r[6]), r[7], r[8])


class Records:
    """The daemon's store under ``data_dir``, read-only."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME

    def exists(self) -> bool:
        """Whether the daemon has created its store yet."""
        return self.path.is_file()

    def _connect(self) -> sqlite3.Connection:
        if not self.exists():
            raise StoreError(
                f"no store at {self.path}: has `station run` recorded anything with this data "
                "directory? Give the daemon's one with --data-dir"
            )
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the store {self.path}: {exc}") from exc
        if version is None or int(version[0]) != STORE_SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"the store {self.path} has schema version {version and version[0]}; this HMI "
                f"reads version {STORE_SCHEMA_VERSION}: run the HMI of the daemon's release"
            )
        return db

    def _query(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with closing(self._connect()) as db:
            try:
                return db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"query of the store {self.path} failed: {exc}") from exc

    # --- History ------------------------------------------------------------------------------

    def search(self, filters: Filters, limit: int, offset: int = 0) -> tuple[list[Row], int]:
        """Newest first: one page of rows, and how many match in all."""
        where, args = filters.where()
        total = self._query(f"SELECT COUNT(*) FROM inspections{where}", args)[0][0]
        rows = self._query(
            f"SELECT {_ROW_COLUMNS} FROM inspections{where} "
            "ORDER BY started_at DESC, rowid DESC LIMIT ? OFFSET ?",
            [*args, limit, offset],
        )
        return [_row(r) for r in rows], int(total)

    def iter_rows(self, filters: Filters, max_rows: int) -> Iterator[Row]:
        """Every matching row, newest first, at most ``max_rows`` (for the CSV export)."""
        where, args = filters.where()
        with closing(self._connect()) as db:
            cur = db.execute(
                f"SELECT {_ROW_COLUMNS} FROM inspections{where} "
                "ORDER BY started_at DESC, rowid DESC LIMIT ?",
                [*args, max_rows],
            )
            for r in cur:
                yield _row(r)

    def header(self, inspection_id: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        """One inspection's verdict header (as published) and its map paths, or None."""
        rows = self._query(
            "SELECT header, maps FROM inspections WHERE id = ?", (inspection_id,)
        )
        if not rows:
            return None
        return json.loads(rows[0][0]), json.loads(rows[0][1])

    def latest(self) -> dict[str, Any] | None:
        """The newest inspection's verdict header, or None when there is none."""
        rows = self._query("SELECT header FROM inspections ORDER BY started_at DESC, rowid DESC "
                           "LIMIT 1")
        return json.loads(rows[0][0]) if rows else None

    def errors_after(self, after: str | None) -> tuple[dict[str, Any] | None, int]:
        """The newest ERROR finished after ``after`` (ISO UTC; None: ever), and how many."""
        cond, args = ("WHERE verdict = 'ERROR'", [])
        if after:
            cond += " AND finished_at > ?"
            args.append(after)
        n = self._query(f"SELECT COUNT(*) FROM inspections {cond}", args)[0][0]
        rows = self._query(
            f"SELECT header FROM inspections {cond} ORDER BY finished_at DESC LIMIT 1", args)
        return (json.loads(rows[0][0]) if rows else None), int(n)

    # --- Shift figures -----------------------------------------------------------------------

    def minute_counts(self, since: str, until: str) -> list[tuple[str, str, int]]:
        """(UTC minute ``YYYY-MM-DDTHH:MM``, verdict, count) in ``[since, until)``.

        Minutes, not hours: every time zone's hours and shifts are whole minutes of UTC.
        """
        rows = self._query(
            "SELECT substr(started_at, 1, 16) AS minute, verdict, COUNT(*) FROM inspections "
            "WHERE started_at >= ? AND started_at < ? GROUP BY minute, verdict",
            (since, until),
        )
        return [(str(m), str(v), int(n)) for m, v, n in rows]

    def durations(self, since: str, until: str) -> list[float]:
        """Cycle times [ms] of the complete inspections (PASS, FAIL) in ``[since, until)``."""
        rows = self._query(
            "SELECT duration_ms FROM inspections WHERE started_at >= ? AND started_at < ? "
            "AND verdict IN ('PASS', 'FAIL')",
            (since, until),
        )
        return [float(r[0]) for r in rows]

    def failed_defects(self, since: str, until: str) -> list[tuple[list[dict[str, Any]],
                                                                    list[str], str]]:
        """Every FAIL in ``[since, until)``: its defects, its reasons and what decided it
        (the operating point id of its verdict, ``config-rules`` when it names none)."""
        rows = self._query(
            "SELECT defects, reasons, json_extract(header, '$.model.operating_point') "
            "FROM inspections WHERE verdict = 'FAIL' AND started_at >= ? AND started_at < ?",
            (since, until),
        )
        return [(json.loads(d), json.loads(r), str(op or "config-rules")) for d, r, op in rows]

    # --- files -------------------------------------------------------------------------------

    def preview_file(self, inspection_id: str, started_at: str, camera: str) -> Path | None:
        """The frame preview JPEG of one camera, if the store kept it (and still has it)."""
        return self.map_file(preview_path(inspection_id, started_at, camera))

    def map_file(self, rel: str | None) -> Path | None:
        """A file under the store's ``maps/`` (a defect map a row points to, a preview), if it
        is still there; a path leading anywhere else is None."""
        if not rel:
            return None
        path = (self.data_dir / rel).resolve()
        maps = (self.data_dir / "maps").resolve()
        return path if path.is_relative_to(maps) and path.is_file() else None

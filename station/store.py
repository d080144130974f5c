"""The inspection store: one SQLite file (WAL) with a row per inspection, maps as PNG files.

Layout of the data directory::

    <data dir>/inspections.sqlite3     the rows (WAL journal beside it)
    <data dir>/maps/YYYY-MM-DD/<inspection id>_<camera>.png   defect maps the rows point to
    <data dir>/maps/YYYY-MM-DD/<inspection id>_<camera>.jpg   frame previews (``preview_path``)

Disk use of the maps and previews is bounded by ``storage.max_disk_mb``: after each write the
oldest files beyond the budget are deleted (their rows stay, with the paths marked missing on
read).

Accepted triggers: the daemon records every trigger it accepts (``accept``) before it
acknowledges it, and ``record`` removes that mark in the same transaction as it inserts the
verdict. A trigger marked but never recorded was lost to a crash (kill -9, power cut after
the WAL reached the disk); ``unfinished`` lists them at the next start, and the daemon closes
each as ERROR "interrupted by a restart".

The outbox (docs/fleet.md): with ``outbox=True`` (``mqtt.enabled``) ``record`` also queues the
verdict in the ``outbox`` table, in the same transaction. Its ``seq`` (AUTOINCREMENT: 1, 2,
3 ... per store, never reused) is the order the station publishes in; the publisher reads the
rows oldest first and deletes each only once the broker has acknowledged it
(``outbox_delivered``), so a restart or a kill loses none and resends at most the few in
flight.

Permissions: the data directory and the directories under it are created 0750, the database
and map files 0640, whatever the umask; an existing data directory that anyone may write to
is refused (``prepare_data_dir``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from config.errors import StoreError

log = structlog.get_logger(__name__)

STORE_SCHEMA_VERSION = 1
DB_NAME = "inspections.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inspections (
    id TEXT PRIMARY KEY,
    part_id TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration_ms REAL NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('PASS', 'FAIL', 'ERROR')),
    reasons TEXT NOT NULL,
    defects TEXT NOT NULL,
    n_defects INTEGER NOT NULL,
    model_id TEXT,
    model_trained INTEGER,
    calibration_id TEXT,
    timings TEXT NOT NULL,
    maps TEXT NOT NULL,
    header TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS inspections_started ON inspections (started_at);
CREATE INDEX IF NOT EXISTS inspections_verdict ON inspections (verdict, started_at);
CREATE INDEX IF NOT EXISTS inspections_part ON inspections (part_id, started_at);
CREATE TABLE IF NOT EXISTS accepted (
    id TEXT PRIMARY KEY,
    part_id TEXT,
    accepted_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    inspection_id TEXT NOT NULL UNIQUE,
    queued_at TEXT NOT NULL
);
"""

#: Modes of what the store creates, whatever the umask.
DIR_MODE = 0o750
FILE_MODE = 0o640


def prepare_data_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) mode 0750, or check an existing one.

    An existing directory that anyone may write to (mode o+w, e.g. 0777) is refused with
    the fix: anyone on the machine could replace the store or its maps there.
    """
    try:
        if path.exists():
            info = path.stat()
            if not stat.S_ISDIR(info.st_mode):
                raise StoreError(
                    f"data directory {str(path)!r} exists but is not a directory; give a "
                    "directory with --data-dir or storage.data_dir"
                )
            if info.st_mode & stat.S_IWOTH:
                raise StoreError(
                    f"data directory {str(path)!r} is writable by every user (mode "
                    f"{stat.S_IMODE(info.st_mode):04o}), so anyone could replace the "
                    f"inspection store there; fix it with `chmod 750 {path}` (or `chmod o-w`), "
                    "or give another --data-dir"
                )
            return path
        missing = [p for p in (path, *path.parents) if not p.exists()]
        path.mkdir(parents=True, exist_ok=True)
        for created in missing:
            os.chmod(created, DIR_MODE)
    except OSError as exc:
        raise StoreError(
            f"data directory {str(path)!r}: cannot create it ({exc.strerror}); give a writable "
            "--data-dir"
        ) from exc
    return path


def private_dir(path: Path) -> None:
    """``mkdir -p`` with mode 0750 for every directory it creates."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    for created in missing:
        os.chmod(created, DIR_MODE)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file of mode 0640, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


@dataclass(frozen=True)
class StoredInspection:
    """One row of the store, decoded."""

    id: str
    part_id: str | None
    started_at: str
    finished_at: str
    duration_ms: float
    verdict: str
    reasons: list[str]
    defects: list[dict[str, Any]]
    model_id: str | None
    model_trained: bool | None
    calibration_id: str | None
    timings_ms: dict[str, float]
    maps: dict[str, str]


@dataclass(frozen=True)
class Queued:
    """One undelivered verdict of the outbox: its sequence number, header and map paths."""

    seq: int
    inspection_id: str
    queued_at: str
    header: dict[str, Any]
    maps: dict[str, str]


class Store:
    """The inspection store. Thread-safe: one connection guarded by a lock."""

    def __init__(self, data_dir: Path, max_disk_mb: float = 2048.0, outbox: bool = False
                 ) -> None:
        self.data_dir = data_dir
        #: queue every recorded verdict for the plant's broker (``mqtt.enabled``)
        self.outbox = outbox
        self.max_disk_bytes = int(max_disk_mb * 1024 * 1024)
        self.path = data_dir / DB_NAME
        self._lock = threading.Lock()
        self._map_bytes: int | None = None  # running total, counted once on first write
        #: inspections per verdict: counted once at open, then kept up to date by record(),
        #: so that status (published from the daemon's main loop) never scans the table
        self._counts = {"PASS": 0, "FAIL": 0, "ERROR": 0}
        prepare_data_dir(data_dir)
        try:
            if not self.path.exists():  # created 0640 first: SQLite gives its WAL the same mode
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
                os.chmod(self.path, FILE_MODE)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                (str(STORE_SCHEMA_VERSION),),
            )
            self._db.commit()
            rows = self._db.execute(
                "SELECT verdict, COUNT(*) FROM inspections GROUP BY verdict"
            ).fetchall()
            #: undelivered verdicts: counted once here, then kept up to date
            self._backlog = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(
                f"data directory {str(data_dir)!r}: cannot open the store {DB_NAME} ({exc}); "
                "give a writable --data-dir"
            ) from exc
        self._counts.update({str(v): int(n) for v, n in rows})

    def write_map(
        self, inspection_id: str, started_at: str, camera: str, png: bytes, suffix: str = ".png"
    ) -> str:
        """Write one defect-map PNG (or, with ``suffix=".jpg"``, a frame preview JPEG);
        returns its path relative to the data directory."""
        rel = Path("maps") / started_at[:10] / f"{inspection_id}_{camera}{suffix}"
        path = self.data_dir / rel
        try:
            private_dir(path.parent)
            _write_private(path, png)
        except OSError as exc:
            raise StoreError(f"cannot write defect map {str(path)!r}: {exc.strerror}") from exc
        if self._map_bytes is None:
            maps = (self.data_dir / "maps").glob("*/*.*")
            self._map_bytes = sum(p.stat().st_size for p in maps)
        else:
            self._map_bytes += len(png)
        return rel.as_posix()

    def record(self, header: dict[str, Any], maps: dict[str, str]) -> None:
        """Insert one inspection from its verdict header (wire format) and map paths."""
        defects = [d for cam in header.get("cameras", []) for d in cam.get("defects", [])]
        model = header.get("model") or {}
        row = (
            header["inspection_id"], header.get("part_id"), header["started_at"],
            header["finished_at"], float(header["duration_ms"]), header["verdict"],
            json.dumps(header.get("reasons", [])), json.dumps(defects), len(defects),
            model.get("model_id"),
            None if not model else int(bool(model.get("trained"))),
            header.get("calibration_id"), json.dumps(header.get("timings_ms", {})),
            json.dumps(maps), json.dumps(header),
        )
        with self._lock:
            try:
                with self._db:  # one transaction: the verdict in (and queued for the plant),
                    # the accepted mark out
                    self._db.execute(
                        "INSERT INTO inspections VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row
                    )
                    self._db.execute("DELETE FROM accepted WHERE id = ?",
                                     (header["inspection_id"],))
                    if self.outbox:
                        self._db.execute(
                            "INSERT INTO outbox (inspection_id, queued_at) VALUES (?, ?)",
                            (header["inspection_id"], header["finished_at"]))
                self._counts[header["verdict"]] += 1
                self._backlog += int(self.outbox)
            except sqlite3.Error as exc:
                raise StoreError(
                    f"cannot record inspection {header['inspection_id']}: {exc}"
                ) from exc
        self._prune_maps()

    def accept(self, inspection_id: str, part_id: str | None, accepted_at: str) -> None:
        """Mark a trigger accepted (committed before the daemon acknowledges it)."""
        with self._lock:
            try:
                with self._db:
                    self._db.execute("INSERT INTO accepted VALUES (?, ?, ?)",
                                     (inspection_id, part_id, accepted_at))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot record trigger {inspection_id}: {exc}") from exc

    def unfinished(self) -> list[tuple[str, str | None, str]]:
        """(id, part_id, accepted_at) of accepted triggers with no recorded verdict, oldest
        first: what a crash interrupted."""
        with self._lock:
            try:
                with self._db:  # a mark whose verdict is in (cannot happen; tidy if it does)
                    self._db.execute(
                        "DELETE FROM accepted WHERE id IN (SELECT id FROM inspections)")
                rows = self._db.execute(
                    "SELECT id, part_id, accepted_at FROM accepted ORDER BY accepted_at, id"
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the accepted triggers: {exc}") from exc
        return [(str(r[0]), r[1], str(r[2])) for r in rows]

    def header(self, inspection_id: str) -> dict[str, Any] | None:
        """The stored verdict header (wire format) of one inspection, or None."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT header FROM inspections WHERE id = ?", (inspection_id,)).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read inspection {inspection_id}: {exc}") from exc
        if row is None:
            return None
        header: dict[str, Any] = json.loads(row[0])
        return header

    def is_accepted(self, inspection_id: str) -> bool:
        """True while a trigger is accepted and its verdict not yet recorded."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT 1 FROM accepted WHERE id = ?", (inspection_id,)).fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read inspection {inspection_id}: {exc}") from exc
        return row is not None

    def history(
        self, limit: int = 20, verdict: str | None = None, part_id: str | None = None
    ) -> list[StoredInspection]:
        """The newest ``limit`` inspections, newest first, optionally of one verdict and/or
        one part."""
        sql = (
            "SELECT id, part_id, started_at, finished_at, duration_ms, verdict, reasons, "
            "defects, model_id, model_trained, calibration_id, timings, maps FROM inspections"
        )
        where, args_list = [], []
        if verdict:
            where.append("verdict = ?")
            args_list.append(verdict)
        if part_id is not None:
            where.append("part_id = ?")
            args_list.append(part_id)
        if where:
            sql += " WHERE " + " AND ".join(where)
        args: tuple[Any, ...] = tuple(args_list)
        sql += " ORDER BY started_at DESC, rowid DESC LIMIT ?"
        args += (limit,)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [
            StoredInspection(
                id=r[0], part_id=r[1], started_at=r[2], finished_at=r[3], duration_ms=r[4],
                verdict=r[5], reasons=json.loads(r[6]), defects=json.loads(r[7]),
                model_id=r[8], model_trained=None if r[9] is None else bool(r[9]),
                calibration_id=r[10], timings_ms=json.loads(r[11]), maps=json.loads(r[12]),
            )
            for r in rows
        ]

    def outbox_after(self, seq: int, limit: int) -> list[Queued]:
        """Up to ``limit`` undelivered verdicts with a sequence number above ``seq``, in order."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT o.seq, o.inspection_id, o.queued_at, i.header, i.maps FROM outbox o "
                    "JOIN inspections i ON i.id = o.inspection_id WHERE o.seq > ? "
                    "ORDER BY o.seq LIMIT ?", (seq, limit)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the outbox: {exc}") from exc
        return [Queued(int(r[0]), str(r[1]), str(r[2]), json.loads(r[3]), json.loads(r[4]))
                for r in rows]

    def outbox_delivered(self, seqs: list[int]) -> None:
        """Remove verdicts the broker acknowledged from the outbox (one transaction)."""
        if not seqs:
            return
        with self._lock:
            try:
                with self._db:
                    cur = self._db.executemany("DELETE FROM outbox WHERE seq = ?",
                                               [(s,) for s in seqs])
                self._backlog = max(0, self._backlog - max(0, cur.rowcount))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot mark {len(seqs)} verdict(s) delivered: {exc}") from exc

    def outbox_backlog(self) -> tuple[int, str | None]:
        """(undelivered verdicts, when the oldest of them was queued or None)."""
        with self._lock:
            if not self._backlog:
                return 0, None
            try:
                row = self._db.execute(
                    "SELECT queued_at FROM outbox ORDER BY seq LIMIT 1").fetchone()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the outbox: {exc}") from exc
            return self._backlog, (None if row is None else str(row[0]))

    def backlog(self) -> int:
        """Undelivered verdicts (no query: kept up to date by ``record`` and
        ``outbox_delivered``)."""
        with self._lock:
            return self._backlog

    def counts(self) -> dict[str, int]:
        """Number of inspections per verdict (no query: kept up to date by ``record``)."""
        with self._lock:
            return dict(self._counts)

    def _prune_maps(self) -> None:
        """Delete the oldest maps while their total is over the budget (scan only then)."""
        if self._map_bytes is None or self._map_bytes <= self.max_disk_bytes:
            return
        files = sorted((self.data_dir / "maps").glob("*/*.*"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        while files and total > self.max_disk_bytes:
            victim = files.pop(0)
            total -= victim.stat().st_size
            victim.unlink(missing_ok=True)
            log.info("pruned defect map", path=str(victim), budget_mb=self.max_disk_bytes >> 20)
        self._map_bytes = total

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def preview_path(inspection_id: str, started_at: str, camera: str) -> str:
    """Where ``write_map(..., suffix=".jpg")`` puts a frame preview, relative to the data dir."""
    return f"maps/{started_at[:10]}/{inspection_id}_{camera}.jpg"

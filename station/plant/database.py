"""The plant's table of verdicts in PostgreSQL (psycopg 3): one row per inspection, written
idempotently (``ON CONFLICT (inspection_id) DO NOTHING``), so a verdict the broker delivers
twice is stored once.

The table (``collect.table``, default ``inspection_verdicts``) is made for a BI tool: plain
columns for what is filtered and grouped on (station, part, verdict, times, model), JSON
(``jsonb``) for the lists, the whole message in ``message``, and indexes on station and time,
part id, time, and (station, seq). ``received_order`` numbers rows as the collector wrote
them, so "in order per station" can be checked: within a station, ``seq`` rises with it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import psycopg
import structlog
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb

from config.errors import DatabaseError
from station.messaging.wire import PlantVerdict

log = structlog.get_logger(__name__)

_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    inspection_id   text PRIMARY KEY,
    station         text NOT NULL,
    seq             bigint NOT NULL,
    part_id         text,
    verdict         text NOT NULL CHECK (verdict IN ('PASS', 'FAIL', 'ERROR')),
    reasons         jsonb NOT NULL,
    started_at      timestamptz NOT NULL,
    finished_at     timestamptz NOT NULL,
    duration_ms     double precision NOT NULL,
    n_defects       integer NOT NULL,
    defect_counts   jsonb NOT NULL,
    model_id        text,
    model_trained   boolean,
    operating_point text,
    calibration_id  text,
    topic           text NOT NULL,
    message         jsonb NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    received_order  bigint GENERATED ALWAYS AS IDENTITY
)"""
_INDEXES = (
    ("station_started", "(station, started_at)"),
    ("part", "(part_id)"),
    ("started", "(started_at)"),
    ("station_seq", "(station, seq)"),
)
_COLUMNS = ("inspection_id", "station", "seq", "part_id", "verdict", "reasons", "started_at",
            "finished_at", "duration_ms", "n_defects", "defect_counts", "model_id",
            "model_trained", "operating_point", "calibration_id", "topic", "message")


@dataclass(frozen=True)
class Row:
    """One verdict as the collector received it."""

    verdict: PlantVerdict
    topic: str

    def values(self) -> tuple[Any, ...]:
        """The row's values in ``_COLUMNS`` order."""
        v = self.verdict
        message = v.model_dump(by_alias=True, mode="json", exclude={"maps_png"})
        model = v.model
        return (
            v.inspection_id, v.station, v.seq, v.part_id, v.verdict, Jsonb(v.reasons),
            v.started_at, v.finished_at, v.duration_ms, sum(v.defect_counts.values()),
            Jsonb(v.defect_counts), None if model is None else model.model_id,
            None if model is None else model.trained,
            None if model is None else model.operating_point, v.calibration_id, self.topic,
            Jsonb(message),
        )


def describe(conninfo: str) -> str:
    """Where ``conninfo`` points, without its password: ``user@host:port/dbname``."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.Error:
        return "(an unreadable collect.database)"
    host = parts.get("host") or parts.get("hostaddr") or "local socket"
    return (f"{parts.get('user') or '(default user)'}@{host}:{parts.get('port') or 5432}/"
            f"{parts.get('dbname') or '(default database)'}")


class VerdictTable:
    """The connection to the plant's database and its verdict table."""

    def __init__(self, conninfo: str, table: str = "inspection_verdicts") -> None:
        self.conninfo = conninfo
        self.table = table
        self.where = describe(conninfo)
        self._conn: psycopg.Connection[Any] | None = None
        self._insert = sql.SQL(
            "INSERT INTO {table} ({columns}) VALUES ({values}) "
            "ON CONFLICT (inspection_id) DO NOTHING"
        ).format(table=sql.Identifier(table),
                 columns=sql.SQL(", ").join(sql.Identifier(c) for c in _COLUMNS),
                 values=sql.SQL(", ").join(sql.Placeholder() * len(_COLUMNS)))

    @property
    def connected(self) -> bool:
        """Whether a connection is open."""
        return self._conn is not None and not self._conn.closed

    def connect(self) -> None:
        """Connect and create the table and its indexes when missing; ``DatabaseError``."""
        self.close()
        try:
            conn = psycopg.connect(self.conninfo, connect_timeout=10, autocommit=True,
                                   application_name="station collect")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"PostgreSQL {self.where}: cannot connect ({_first_line(exc)}); check "
                "collect.database, that the server runs, and the password ($PGPASSWORD or "
                "~/.pgpass)"
            ) from exc
        try:
            with conn.transaction():
                conn.execute(sql.SQL(_TABLE).format(table=sql.Identifier(self.table)))
                for suffix, columns in _INDEXES:
                    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {name} ON {table} "
                                         + columns).format(
                        name=sql.Identifier(f"{self.table}_{suffix}"),
                        table=sql.Identifier(self.table)))
        except psycopg.Error as exc:
            conn.close()
            raise DatabaseError(
                f"PostgreSQL {self.where}: cannot create table {self.table!r} "
                f"({_first_line(exc)}); the collector's user needs CREATE on the schema, or "
                "create the table beforehand (docs/fleet.md)"
            ) from exc
        self._conn = conn
        log.info("database connected", database=self.where, table=self.table)

    def insert(self, rows: list[Row]) -> int:
        """Insert ``rows`` in one transaction; returns how many were new (the rest were there
        already). ``DatabaseError`` (the connection is closed then; ``connect`` again)."""
        if not rows:
            return 0
        if self._conn is None or self._conn.closed:
            self.connect()
        conn = self._conn
        assert conn is not None
        try:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(self._insert, [r.values() for r in rows])
                return max(0, cur.rowcount)
        except psycopg.Error as exc:
            self.close()
            raise DatabaseError(
                f"PostgreSQL {self.where}: writing {len(rows)} verdict(s) failed "
                f"({_first_line(exc)}); they are written again when it answers"
            ) from exc

    def close(self) -> None:
        """Close the connection (no error if there is none)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__

"""station.plant.database: the plant's verdict table in a real PostgreSQL (a throw-away cluster
the tests make with initdb)."""

from __future__ import annotations

import pytest

from config import load_config
from config.errors import DatabaseError
from station.cycle import error_outcome
from station.messaging.wire import PlantVerdict
from tests.servers import skip_without

skip_without("psycopg")
import psycopg  # noqa: E402

from station.plant.database import Row, VerdictTable, describe  # noqa: E402


def verdict(n: int, station: str = "booth-1") -> Row:
    """A verdict row: ERROR, seq ``n``, inspection id ``<station>-<n>``."""
    cfg = load_config("default", [f"name={station}"], env={})
    header = error_outcome(cfg, f"{station}-{n}", f"P-{n}", "test",
                           {"model_id": "m", "trained": True}, None).header
    data = {**header.model_dump(by_alias=True, mode="json"), "seq": n,
            "defect_counts": {"Crack": 2}}
    return Row(PlantVerdict.model_validate(data), f"acme/{station}/verdict")


def test_the_table_and_its_indexes_are_made_and_inserts_are_idempotent(database: str) -> None:
    """connect() creates the table with indexes on (station, started_at), part_id, started_at
    and (station, seq); a verdict inserted twice is one row; the columns a BI tool reads are
    filled from the message."""
    table = VerdictTable(database)
    table.connect()
    assert table.insert([verdict(1), verdict(2)]) == 2
    assert table.insert([verdict(2), verdict(3)]) == 1
    table.close()
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT inspection_id, station, seq, part_id, verdict, n_defects, defect_counts, "
            "model_id, reasons, message->>'inspection_id' FROM inspection_verdicts "
            "ORDER BY received_order").fetchall()
        indexes = {r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'inspection_verdicts'")}
    assert [r[0] for r in rows] == ["booth-1-1", "booth-1-2", "booth-1-3"]
    first = rows[0]
    assert first[1:8] == ("booth-1", 1, "P-1", "ERROR", 2, {"Crack": 2}, "m")
    assert first[8] == ["test"] and first[9] == "booth-1-1"
    joined = " ".join(indexes)
    for columns in ("(station, started_at)", "(part_id)", "(started_at)", "(station, seq)"):
        assert columns in joined, columns


def test_an_unreachable_database_is_a_clear_error_without_the_password() -> None:
    """A server that does not answer: DatabaseError naming where (not the password) and the
    key to check."""
    dsn = "postgresql://plant:s3cret@127.0.0.1:1/plant"
    assert describe(dsn) == "plant@127.0.0.1:1/plant"
    with pytest.raises(DatabaseError) as err:
        VerdictTable(dsn).connect()
    text = str(err.value)
    assert "cannot connect" in text and "collect.database" in text and "s3cret" not in text

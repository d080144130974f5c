"""station.plant.collector: a real Mosquitto (started by the test) into a real PostgreSQL (a
throw-away cluster), fed by the station's own publisher."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import StationConfig, load_config
from tests.plant import USERS
from tests.servers import Mosquitto, Postgres, skip_without, wait_for

skip_without("psycopg")
skip_without("paho.mqtt.client")
import psycopg  # noqa: E402

from station.plant.collector import Collector, Received, parse  # noqa: E402
from station.plant.database import VerdictTable  # noqa: E402
from tests.plant import ROOT, Running, plant_config, record  # noqa: E402


def collector_config(tmp_path: Path, port: int, *extra: str) -> StationConfig:
    """The collector's config: the broker on ``port`` as user collector, fast retries."""
    pw = tmp_path / "collector-password"
    pw.write_text(USERS["collector"])
    return load_config("default", [
        f"mqtt.port={port}", "mqtt.username=collector", f"mqtt.password_file={pw}",
        f"mqtt.topic_root={ROOT}/{{station}}", "mqtt.retry_first_s=0.05",
        "mqtt.retry_max_s=0.5", "collect.batch_wait_s=0.05", *extra,
    ], env={})


class Collecting:
    """A collector running in a thread until ``stop()``."""

    def __init__(self, cfg: StationConfig, dsn: str) -> None:
        self.collector = Collector(cfg, VerdictTable(dsn))
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.collector.run, args=(self.stop_event,))
        self.thread.start()
        wait_for(self.collector.subscribed.is_set, 20, "the collector to subscribe")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def collecting() -> Iterator[list[Collecting]]:
    """Collectors the test starts (append); stopped after it."""
    made: list[Collecting] = []
    yield made
    for c in made:
        if c.thread.is_alive():
            c.stop()


def rows(dsn: str) -> list[tuple[str, str, int]]:
    """(inspection_id, station, seq) of every row, in the order the collector wrote them."""
    with psycopg.connect(dsn) as conn:
        return [(str(a), str(b), int(c)) for a, b, c in conn.execute(
            "SELECT inspection_id, station, seq FROM inspection_verdicts "
            "ORDER BY received_order")]


def count(dsn: str) -> int:
    """Rows in the table (0 while it does not exist)."""
    try:
        return len(rows(dsn))
    except psycopg.errors.UndefinedTable:
        return 0


def test_verdicts_land_once_each_and_garbage_is_dropped_without_blocking(
        broker: Mosquitto, database: str, tmp_path: Path, running: list[Running],
        collecting: list[Collecting]) -> None:
    """Forty verdicts from a station land in order; a message that is not a verdict and a
    copy of one already written are acknowledged without a row; the rest keeps flowing."""
    c = Collecting(collector_config(tmp_path, broker.port), database)
    collecting.append(c)
    r = Running(tmp_path, plant_config(tmp_path, broker.port))
    running.append(r)
    ids = record(r.store, r.cfg, 20)
    r.publisher.start()
    wait_for(lambda: count(database) == 20, 30, "20 rows")
    import paho.mqtt.publish as publish

    auth = {"username": "station", "password": USERS["station"]}
    topic = f"{ROOT}/booth-1/verdict"
    first = {**json.loads(_header_of(r, ids[0])), "seq": 1, "defect_counts": {}}
    publish.single(topic, b"{not json", qos=1, hostname="127.0.0.1", port=broker.port,
                   auth=auth, protocol=5)
    publish.single(topic, json.dumps(first), qos=1, hostname="127.0.0.1", port=broker.port,
                   auth=auth, protocol=5)
    ids += record(r.store, r.cfg, 20)
    wait_for(lambda: count(database) == 40 and c.collector.figures.rejected == 1
             and c.collector.figures.duplicates >= 1, 30, "40 rows, 1 rejected, 1 duplicate")
    got = rows(database)
    assert [g[0] for g in got] == ids and [g[2] for g in got] == list(range(1, 41))


def _header_of(r: Running, inspection_id: str) -> str:
    """The stored header JSON of one inspection."""
    with r.store._lock:
        return str(r.store._db.execute("SELECT header FROM inspections WHERE id = ?",
                                       (inspection_id,)).fetchone()[0])


def test_parse_says_why_a_message_is_not_a_verdict() -> None:
    """Bytes that are not JSON, hostile JSON and JSON that is not a verdict are refused with a
    reason (never an exception)."""
    def why(payload: bytes) -> str:
        out = parse(Received(1, 1, 1, "t", payload))
        assert isinstance(out, str)
        return out

    assert why(b"\xff\xfe").startswith("not JSON")
    assert why(b"[" * 100 + b"]" * 100).startswith("not JSON")
    assert why(b'{"verdict": "PASS"}').startswith("not a verdict")


def test_the_database_away_keeps_verdicts_unacknowledged_until_it_is_back(
        broker: Mosquitto, tmp_path: Path, running: list[Running],
        collecting: list[Collecting]) -> None:
    """PostgreSQL stops while verdicts arrive: the collector retries, acknowledges nothing it
    has not written, and when the server is back every verdict is there once."""
    pg = Postgres()
    pg.start()
    try:
        c = Collecting(collector_config(tmp_path, broker.port), pg.dsn)
        collecting.append(c)
        r = Running(tmp_path, plant_config(tmp_path, broker.port))
        running.append(r)
        r.publisher.start()
        record(r.store, r.cfg, 5)
        wait_for(lambda: count(pg.dsn) == 5, 30, "5 rows")
        pg.stop()
        record(r.store, r.cfg, 15)
        wait_for(lambda: c.collector.figures.db_errors > 0, 30, "a failed write")
        assert "cannot connect" in (c.collector.last_db_error or "") or "failed" in (
            c.collector.last_db_error or "")
        pg.start()
        wait_for(lambda: count(pg.dsn) == 20, 30, "all 20 rows")
        assert [g[2] for g in rows(pg.dsn)] == list(range(1, 21))
        c.stop()
    finally:
        pg.remove()


def test_verdicts_sent_while_the_collector_is_away_wait_at_the_broker_even_across_its_restart(
        broker: Mosquitto, database: str, tmp_path: Path, running: list[Running],
        collecting: list[Collecting]) -> None:
    """The collector's persistent session (fixed client id, clean start off, session expiry):
    it stops, verdicts are published, the broker restarts (persistence), the collector comes
    back and writes them all."""
    cfg = collector_config(tmp_path, broker.port)
    first = Collecting(cfg, database)
    first.stop()
    r = Running(tmp_path, plant_config(tmp_path, broker.port))
    running.append(r)
    r.publisher.start()
    record(r.store, r.cfg, 25)
    wait_for(lambda: r.store.backlog() == 0, 30, "the broker to take them")
    broker.stop()
    broker.start()
    again = Collecting(cfg, database)
    collecting.append(again)
    wait_for(lambda: count(database) == 25, 30, "25 rows")
    assert [g[2] for g in rows(database)] == list(range(1, 26))

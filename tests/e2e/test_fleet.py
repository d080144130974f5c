"""Many booths, one plant, as a user runs them: ``station run`` processes publishing to a real
Mosquitto, ``station collect`` writing into a real PostgreSQL, the broker stopped and started
and a station killed meanwhile (docs/fleet.md)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from station.messaging.client import request
from tests.e2e.conftest import RunningStation, start_station
from tests.plant import ROOT, USERS, collector_yaml, station_yaml
from tests.servers import Listener, Mosquitto, skip_without, wait_for

skip_without("psycopg")
skip_without("paho.mqtt.client")
import psycopg  # noqa: E402


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """A tiny model (a few thousand weights): cycles of milliseconds on the CPU."""
    from tests.models.tester import save_tiny

    return save_tiny(tmp_path / "tiny.ckpt")


class Plant:
    """The broker, the database, the collector process and the stations of one test."""

    def __init__(self, tmp_path: Path, broker: Mosquitto, database: str,
                 checkpoint: Path) -> None:
        self.tmp, self.broker, self.database, self.checkpoint = (
            tmp_path, broker, database, checkpoint)
        self.stations: list[RunningStation] = []
        self.collector: subprocess.Popen[bytes] | None = None
        self.collector_log = tmp_path / "collector.log"

    def start_collector(self) -> None:
        cfg = collector_yaml(self.tmp / "collector", self.broker.port, self.database)
        with self.collector_log.open("ab") as log:
            self.collector = subprocess.Popen(
                [sys.executable, "-m", "station.cli", "collect", "--config", str(cfg)],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(lambda: b"collector connected" in self.collector_log.read_bytes(), 60,
                 "the collector to connect")

    def station(self, name: str, data: Path | None = None, **mqtt: Any) -> RunningStation:
        cfg = station_yaml(self.tmp / "configs", name, mqtt.pop("port", self.broker.port),
                           self.checkpoint, password=mqtt.pop("password", USERS["station"]),
                           mqtt=mqtt)
        data = data or self.tmp / f"data-{name}"
        st = start_station(self.tmp / f"run-{name}-{len(self.stations)}", str(cfg),
                           ["--data-dir", str(data), "--set", "cycle.queue_depth=16"])
        st.data_dir = data
        self.stations.append(st)
        return st

    def rows(self) -> list[tuple[str, str, int]]:
        """(inspection_id, station, seq) as the collector wrote them."""
        try:
            with psycopg.connect(self.database) as conn:
                return [(str(a), str(b), int(c)) for a, b, c in conn.execute(
                    "SELECT inspection_id, station, seq FROM inspection_verdicts "
                    "ORDER BY received_order")]
        except psycopg.errors.UndefinedTable:
            return []

    def close(self) -> None:
        for st in self.stations:
            if st.proc.poll() is None:
                st.proc.kill()
                st.proc.wait(5)
        if self.collector is not None and self.collector.poll() is None:
            self.collector.send_signal(signal.SIGTERM)
            try:
                self.collector.wait(15)
            except subprocess.TimeoutExpired:
                self.collector.kill()
                self.collector.wait(5)


@pytest.fixture
def plant(tmp_path: Path, broker: Mosquitto, database: str, checkpoint: Path
          ) -> Iterator[Plant]:
    """A plant of this test: broker and database running, nothing else yet."""
    p = Plant(tmp_path, broker, database, checkpoint)
    yield p
    p.close()


def stored_ids(data: Path) -> list[str]:
    """The inspection ids in a station's SQLite store, in the order they were recorded."""
    db = sqlite3.connect(data / "inspections.sqlite3")
    try:
        return [r[0] for r in db.execute("SELECT id FROM inspections ORDER BY rowid")]
    finally:
        db.close()


def trigger(st: RunningStation, n: int, dealer: zmq.Socket[bytes] | None = None) -> list[str]:
    """``n`` inspections, up to 8 queued at once (wait false); the acknowledged ids."""
    ctx = zmq.Context.instance()
    sock = dealer or ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if dealer is None:
        sock.connect(st.command)
    ids: list[str] = []
    outstanding = sent = 0
    try:
        while len(ids) < n:
            while outstanding < 8 and sent < n:
                sock.send(json.dumps({"command": "inspect", "part_id": f"P{sent}"}).encode())
                outstanding += 1
                sent += 1
            assert sock.poll(30_000), f"no reply from {st.command}"
            reply = json.loads(sock.recv())
            outstanding -= 1
            if reply["ok"]:
                ids.append(reply["result"]["inspection_id"])
            else:
                assert reply["error"]["code"] == "BUSY", reply
                sent -= 1
                time.sleep(0.05)
    finally:
        if dealer is None:
            sock.close()
    return ids


def verdicts_done(st: RunningStation, count: int) -> None:
    """Wait until the station has recorded ``count`` inspections."""
    wait_for(lambda: len(stored_ids(st.data_dir)) >= count, 120, f"{count} verdicts stored")


def test_200_inspections_through_broker_restarts_and_a_kill_reach_the_database_once_each(
        plant: Plant, broker: Mosquitto) -> None:
    """200 inspections while the broker is stopped and started twice and the station is killed
    with SIGKILL once (with triggers accepted and not finished): every inspection the station
    recorded is in PostgreSQL exactly once, and in each station's order (seq 1, 2, 3 ...
    rising with the order the collector wrote them). The broker published the station's last
    will (offline, connection lost) when it was killed."""
    states = Listener(broker.port, "collector", USERS["collector"], [f"{ROOT}/+/state"],
                      "test-state-watch", 600)
    plant.start_collector()
    data = plant.tmp / "data-booth-1"
    st = plant.station("booth-1", data)
    trigger(st, 40)
    broker.stop()
    trigger(st, 40)
    verdicts_done(st, 80)
    broker.start()
    trigger(st, 30)
    broker.stop()
    trigger(st, 30)
    broker.start()
    wait_for(lambda: request(st.command, {"command": "status"}, 10)["result"]["outbox"][
        "connected"], 30, "the station connected again")
    # kill -9 with triggers accepted and not finished: closed as ERROR at the restart
    ctx = zmq.Context.instance()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(st.command)
    for i in range(6):
        dealer.send(json.dumps({"command": "inspect", "part_id": f"K{i}"}).encode())
    assert dealer.poll(10_000)  # the first is accepted (recorded before acknowledged)
    st.proc.kill()
    st.proc.wait(10)
    dealer.close()
    wait_for(lambda: any(p.get("reason") == "connection lost"
                         for p in states.payloads("/state")), 30, "the last will")
    st = plant.station("booth-1", data)  # closes what the kill interrupted before it answers
    trigger(st, max(0, 200 - len(stored_ids(data))))
    verdicts_done(st, 200)
    ids = stored_ids(data)
    wait_for(lambda: len(plant.rows()) >= len(ids), 120,
             f"{len(ids)} rows in PostgreSQL")
    rows = plant.rows()
    assert sorted(r[0] for r in rows) == sorted(ids)  # each once: the key is inspection_id
    assert [r[2] for r in rows] == list(range(1, len(ids) + 1))  # in the station's order
    seq_of = {r[0]: r[2] for r in rows}
    assert [seq_of[i] for i in ids] == list(range(1, len(ids) + 1))  # recording order
    interrupted = _reasons(data, "interrupted by a restart")
    assert interrupted, "the kill interrupted no accepted trigger"
    assert st.stop()[0] == 0
    states.close()


def _reasons(data: Path, text: str) -> list[str]:
    db = sqlite3.connect(data / "inspections.sqlite3")
    try:
        return [r[0] for r in db.execute("SELECT reasons FROM inspections WHERE reasons LIKE ?",
                                         (f"%{text}%",))]
    finally:
        db.close()


def test_three_stations_into_one_broker_and_one_database(plant: Plant, broker: Mosquitto
                                                         ) -> None:
    """Three stations publish at once to one broker; one collector writes all their verdicts
    into one table, each station's in its own order; each station's state and status are
    retained under its own name."""
    plant.start_collector()
    names = ["booth-a", "booth-b", "booth-c"]
    stations = [plant.station(n) for n in names]
    threads = [threading.Thread(target=trigger, args=(st, 20)) for st in stations]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for st in stations:
        verdicts_done(st, 20)
    wait_for(lambda: len(plant.rows()) == 60, 60, "60 rows")
    rows = plant.rows()
    for name, st in zip(names, stations, strict=True):
        mine = [r for r in rows if r[1] == name]
        assert [r[2] for r in mine] == list(range(1, 21)), name
        assert sorted(r[0] for r in mine) == sorted(stored_ids(st.data_dir))
    late = Listener(broker.port, "collector", USERS["collector"],
                    [f"{ROOT}/+/state", f"{ROOT}/+/status"])
    wait_for(lambda: len(late.messages) >= 6, 10, "retained state and status of 3 stations")
    assert {p["station"] for p in late.payloads("/state")} == set(names)
    assert {p["station"] for p in late.payloads("/status")} == set(names)
    late.close()
    for st in stations:
        assert st.stop()[0] == 0


@pytest.mark.parametrize("case", ["wrong password", "plain text to a TLS-only listener"])
def test_a_refused_broker_connection_is_reported_and_the_station_keeps_inspecting(
        case: str, plant: Plant, broker: Mosquitto) -> None:
    """A wrong password, or plain text to a TLS-only listener: the broker refuses, `station
    status` says why (naming the keys to check) with the backlog, and every trigger still
    gets its verdict."""
    if case == "wrong password":
        st = plant.station("booth-x", password="not-the-password")
        words = "check mqtt.username and the password"
    else:
        st = plant.station("booth-x", port=broker.tls_port)
        words = "if that listener is TLS-only, set mqtt.tls.enabled: true"
    for i in range(3):
        reply = request(st.command, {"command": "inspect", "part_id": f"P{i}", "wait": True},
                        30)
        assert reply["ok"] and reply["result"]["verdict"] in ("PASS", "FAIL"), reply
    status = request(st.command, {"command": "status"}, 10)["result"]
    assert status["outbox"]["backlog"] == 3 and not status["outbox"]["connected"]
    problems = " ".join(status["problems"])
    assert words in problems and "3 verdict(s) wait in the outbox" in problems
    out = subprocess.run([sys.executable, "-m", "station.cli", "status", "--endpoint",
                          st.command], capture_output=True, text=True, check=True).stdout
    assert "NOT CONNECTED  backlog 3/" in out and words in out
    assert st.stop()[0] == 0


def test_a_full_outbox_refuses_triggers_and_says_so(plant: Plant) -> None:
    """With the broker out of reach and mqtt.max_backlog = 2, the third trigger is answered
    BACKLOG_FULL (not lost, not inspected) and status names the full outbox."""
    from tests.servers import free_port

    st = plant.station("booth-y", port=free_port(), max_backlog=2)
    for _ in range(2):
        assert request(st.command, {"command": "inspect", "wait": True}, 30)["ok"]
    reply = request(st.command, {"command": "inspect", "wait": True}, 30)
    assert not reply["ok"] and reply["error"]["code"] == "BACKLOG_FULL"
    assert "mqtt.max_backlog = 2" in reply["error"]["message"]
    status = request(st.command, {"command": "status"}, 10)["result"]
    assert any("the outbox is full" in p for p in status["problems"])
    assert st.stop()[0] == 0

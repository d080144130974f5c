"""End to end, as on a booth: the light controller is a separate process on a serial line;
it is killed and restarted while `station run` keeps serving, and ERROR verdicts, events and
recovery follow without restarting the daemon."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from station.messaging.client import request
from tests.e2e.conftest import RunningStation
from tests.e2e.test_daemon import sub_socket

Factory = Callable[..., RunningStation]


def start_lightsim(link: Path) -> subprocess.Popen[str]:
    """The controller simulator as its own process; its log (JSON lines) goes to
    ``<link>.log``, appended to by every process started on that link."""
    with sim_log(link).open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli", "lightsim", "--link", str(link)],
            stdout=subprocess.PIPE, stderr=log, text=True,
        )
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    assert first == str(link), first
    return proc


def sim_log(link: Path) -> Path:
    return link.with_name(f"{link.name}.log")


def wait_logged(path: Path, event: str, timeout_s: float = 10.0) -> None:
    """Wait until the simulator has logged ``event`` (it logs after doing it)."""
    deadline = time.monotonic() + timeout_s
    while f'"event": "{event}"' not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{event} not logged:\n{path.read_text()}"
        time.sleep(0.02)


@pytest.fixture
def lightsim(tmp_path: Path) -> Iterator[tuple[Path, list[subprocess.Popen[str]]]]:
    link = tmp_path / "ttyLIGHTS"
    procs = [start_lightsim(link)]
    yield link, procs
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(10)
        if p.stdout is not None:
            p.stdout.close()


def inspect(station: RunningStation) -> dict[str, object]:
    reply = request(station.command, {"command": "inspect", "wait": True}, 60)
    assert reply["ok"], reply
    return reply["result"]  # type: ignore[no-any-return]


def test_light_controller_killed_and_restarted(
    run_station: Factory, lightsim: tuple[Path, list[subprocess.Popen[str]]]
) -> None:
    """Kill the controller process: ERROR verdicts; start it again: verdicts come back."""
    link, procs = lightsim
    station = run_station("default", [
        "--set", "lights.backend=serial", "--set", f"lights.port={link}",
        "--set", "lights.reply_timeout_s=0.2", "--set", "lights.retries=1",
        "--set", "lights.reopen_backoff_s=0.1", "--set", "lights.reopen_backoff_max_s=0.5",
    ])
    assert inspect(station)["verdict"] in ("PASS", "FAIL")
    procs[0].send_signal(signal.SIGUSR1)  # the port vanishes (USB adapter pulled)
    wait_logged(sim_log(link), "lightsim.port_closed")  # the pty is closed, the link gone
    assert not link.exists()
    header = inspect(station)
    assert header["verdict"] == "ERROR" and "lights" in str(header["reasons"])
    procs[0].send_signal(signal.SIGUSR2)  # and comes back
    deadline = time.monotonic() + 20
    while inspect(station)["verdict"] == "ERROR":
        assert time.monotonic() < deadline, station.log()
        time.sleep(0.3)
    procs[0].terminate()  # the controller dies altogether
    procs[0].wait(10)
    assert inspect(station)["verdict"] == "ERROR"
    status = request(station.command, {"command": "status"}, 5)["result"]
    assert status["state"] == "degraded" or status["counts"]["ERROR"] >= 2
    procs.append(start_lightsim(link))  # a new controller on the same port
    deadline = time.monotonic() + 20
    while inspect(station)["verdict"] == "ERROR":
        assert time.monotonic() < deadline, station.log()
        time.sleep(0.3)
    code, _ = station.stop()
    assert code == 0


def test_camera_worker_killed_mid_run(run_station: Factory) -> None:
    """genicam-sim: SIGKILL a camera's worker process; ERROR or retried verdicts, camera_lost
    and camera_recovered events, then normal verdicts, all without restarting the daemon."""
    import json
    import os
    import re

    import zmq

    station = run_station("genicam-sim")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = sub_socket(station.publish, ctx, station.command)
    events: list[dict[str, object]] = []

    def pump(until: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not until():
            assert time.monotonic() < deadline, (events, station.log()[-3000:])
            if sub.poll(200):
                topic, header, *_ = sub.recv_multipart()
                if topic == b"event":
                    events.append(json.loads(header))

    try:
        assert inspect(station)["verdict"] in ("PASS", "FAIL")
        status = request(station.command, {"command": "status"}, 5)["result"]
        match = re.search(r"worker pid (\d+)", status["cameras"][0]["detail"])
        assert match, status["cameras"][0]
        os.kill(int(match.group(1)), signal.SIGKILL)
        first = inspect(station)  # right after the kill
        if first["verdict"] == "ERROR":
            assert "cam0" in first["reasons"][0] and "worker process exited" in first["reasons"][0]
        else:  # the rig's monitor saw the dead worker and reopened it before the trigger
            pump(lambda: any(e["kind"] == "camera_lost" for e in events), 10)
        pump(lambda: any(e["kind"] == "camera_recovered" for e in events), 30)
        kinds = [e["kind"] for e in events]
        assert "camera_lost" in kinds
        assert inspect(station)["verdict"] in ("PASS", "FAIL")
    finally:
        sub.close()
        ctx.term()
    assert station.stop()[0] == 0


def test_kill_9_during_a_burst_loses_no_accepted_trigger(run_station: Factory,
                                                         tmp_path: Path) -> None:
    """Two rounds of SIGKILL in the middle of a burst of triggers: after each restart on the
    same data directory, every trigger that was acknowledged (wait false) or accepted (wait
    true, no reply yet) has exactly one verdict in the store; the unfinished ones are ERROR
    "interrupted by a restart"."""
    import json
    import sqlite3

    import zmq

    data = tmp_path / "shared-data"
    extra = ["--data-dir", str(data), "--set", "cycle.queue_depth=8",
             "--set", "lights.settle_ms=400"]
    acknowledged: set[str] = set()
    for _ in range(2):
        station = run_station("default", extra)
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(station.command)
        try:
            for i in range(5):
                dealer.send(json.dumps({"command": "inspect", "request_id": str(i)}).encode())
            for _ in range(5):
                assert dealer.poll(10_000)
                reply = json.loads(dealer.recv())
                assert reply["ok"], reply
                acknowledged.add(reply["result"]["inspection_id"])
            dealer.send(json.dumps({"command": "inspect", "wait": True}).encode())
            # Replies come in the order requests are handled: the ping's reply proves the
            # waiting trigger was accepted (it gets no reply until its verdict).
            dealer.send(json.dumps({"command": "ping", "request_id": "sync"}).encode())
            assert dealer.poll(10_000)
            assert json.loads(dealer.recv())["request_id"] == "sync"
            station.proc.kill()  # SIGKILL: no shutdown at all
            station.proc.wait(10)
        finally:
            dealer.close()
            ctx.term()
    station = run_station("default", extra)  # the restart that closes the last round
    db = sqlite3.connect(data / "inspections.sqlite3")
    try:
        rows = dict(db.execute("SELECT id, verdict || ' ' || reasons FROM inspections"))
        pending = db.execute("SELECT COUNT(*) FROM accepted").fetchone()[0]
    finally:
        db.close()
    assert acknowledged and acknowledged <= set(rows), sorted(acknowledged - set(rows))
    interrupted = [r for r in rows.values() if "interrupted by a restart" in r]
    assert interrupted and all(r.startswith("ERROR") for r in interrupted)
    # the wait=true triggers were accepted without an acknowledgement: closed as well
    assert len(rows) >= len(acknowledged) + 1 and pending == 0
    assert station.stop()[0] == 0

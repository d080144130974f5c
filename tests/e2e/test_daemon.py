"""End to end: ``station run`` as a subprocess, real sockets, real SQLite, real model."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import zmq

from station.messaging.client import request
from tests.e2e.conftest import RunningStation

Factory = Callable[..., RunningStation]


def sub_socket(endpoint: str, ctx: zmq.Context[zmq.Socket[bytes]],
               command: str | None = None, timeout_s: float = 30) -> zmq.Socket[bytes]:
    """A SUB socket that has provably joined: it waits for the first status message.

    With ``command``, a failure says whether the daemon still answers requests.
    """
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:  # slow joiner: status is published every 0.2 s
        if sub.poll(500) and sub.recv_multipart()[0] == b"status":
            return sub
    sub.close()
    alive = "not asked"
    if command is not None:
        try:
            alive = str(request(command, {"command": "status"}, 5).get("ok"))
        except Exception as exc:
            alive = repr(exc)
    raise AssertionError(f"no status message on {endpoint} within {timeout_s} s; "
                         f"status request answered ok={alive}")


def next_verdict(sub: zmq.Socket[bytes], inspection_id: str, timeout_s: float = 30
                 ) -> tuple[dict[str, Any], list[bytes]]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not sub.poll(200):
            continue
        parts = sub.recv_multipart()
        if parts[0] == b"verdict":
            header = json.loads(parts[1])
            if header["inspection_id"] == inspection_id:
                return header, parts[2:]
    raise AssertionError(f"no verdict for {inspection_id} within {timeout_s} s")


def raw_request(endpoint: str, frames: list[bytes], timeout_s: float = 10) -> dict[str, Any]:
    """Send raw frames from a DEALER and return the decoded reply."""
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(endpoint)
    try:
        s.send_multipart(frames)
        assert s.poll(int(timeout_s * 1000)), f"no reply to {frames!r:.80}"
        reply: dict[str, Any] = json.loads(s.recv_multipart()[-1])
        return reply
    finally:
        s.close()


def check_inspection(station: RunningStation, n_cameras: int = 2) -> dict[str, Any]:
    """inspect -> verdict with PNG maps on the PUB socket -> a row in SQLite."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = sub_socket(station.publish, ctx)
    try:
        reply = request(station.command, {"command": "inspect", "part_id": "P-1"}, 10)
        assert reply["ok"] and reply["schema"] == 1, reply
        iid = reply["result"]["inspection_id"]
        header, pngs = next_verdict(sub, iid)
    finally:
        sub.close()
        ctx.term()
    assert header["schema"] == 1 and header["part_id"] == "P-1"
    assert header["verdict"] in ("PASS", "FAIL"), header["reasons"]
    assert header["model"]["model_id"] and isinstance(header["model"]["trained"], bool)
    assert len(pngs) == len(header["maps"]) == n_cameras
    for png in pngs:
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        assert img is not None and img.dtype == np.uint8 and img.ndim == 2
    db = sqlite3.connect(station.data_dir / "inspections.sqlite3")
    try:
        row = db.execute("SELECT verdict, part_id, maps FROM inspections WHERE id = ?",
                         (iid,)).fetchone()
    finally:
        db.close()
    assert row is not None and row[0] == header["verdict"] and row[1] == "P-1"
    for rel in json.loads(row[2]).values():
        assert (station.data_dir / rel).is_file()
    return header


def test_default_station_end_to_end(run_station: Factory) -> None:
    """Default config: inspect over ZeroMQ, verdict + PNGs published, row stored, clean stop."""
    station = run_station("default")
    check_inspection(station)
    status = request(station.command, {"command": "status"}, 10)["result"]
    assert status["counts"]["PASS"] + status["counts"]["FAIL"] >= 1
    assert [c["name"] for c in status["cameras"]] == ["cam0", "cam1"]
    code, took = station.stop()
    assert code == 0, station.log()
    assert took < 10
    assert "stopped" in station.log()


MALFORMED: list[tuple[list[bytes], str]] = [
    ([b"{nope"], "BAD_JSON"),
    ([b"[]"], "BAD_JSON"),
    ([b"{}"], "BAD_REQUEST"),
    ([b'{"command": "selfdestruct"}'], "UNKNOWN_COMMAND"),
    ([b'{"command": "inspect", "part_id": 5}'], "BAD_REQUEST"),
    ([b'{"command": "inspect", "wait": "soon"}'], "BAD_REQUEST"),
    ([b'{"command": "ping", "schema": 9}'], "UNSUPPORTED_SCHEMA"),
    ([b'{"command": "ping"}', b"extra"], "BAD_REQUEST"),
    ([b'{"command": "ping", "x": "' + b"y" * 70000 + b'"}'], "TOO_LARGE"),
]


def test_malformed_requests_change_nothing(run_station: Factory) -> None:
    """Every malformed request gets an error reply; the daemon keeps serving; nothing stored."""
    station = run_station("default")
    for frames, code in MALFORMED:
        reply = raw_request(station.command, frames)
        assert reply["ok"] is False and reply["error"]["code"] == code, (frames[0][:40], reply)
        assert reply["error"]["message"]
    # A REQ client still works, and nothing was inspected.
    pong = request(station.command, {"command": "ping", "request_id": "r9"}, 5)
    assert pong["ok"] and pong["request_id"] == "r9"
    status = request(station.command, {"command": "status"}, 5)["result"]
    assert sum(status["counts"].values()) == 0
    # A client that connects and vanishes mid-request does not hurt either.
    with socket.create_connection(("127.0.0.1", int(station.command.rsplit(":", 1)[1]))) as s:
        s.sendall(b"\xff\x00garbage-that-is-not-zmtp")
    assert request(station.command, {"command": "ping"}, 5)["ok"]
    assert station.stop()[0] == 0


def test_full_queue_answers_busy_never_silence(run_station: Factory) -> None:
    """With queue depth 1, a burst of triggers: each gets a reply; refused ones say BUSY."""
    station = run_station("default", ["--set", "cycle.queue_depth=1"])
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(station.command)
    n = 6
    for i in range(n):
        s.send(json.dumps({"command": "inspect", "request_id": str(i)}).encode())
    replies = []
    for _ in range(n):
        assert s.poll(10000)
        replies.append(json.loads(s.recv()))
    s.close()
    codes = [r["error"]["code"] for r in replies if not r["ok"]]
    assert len(replies) == n
    assert codes and set(codes) == {"BUSY"}, replies
    assert station.stop()[0] == 0


def test_trigger_watch_history_commands(run_station: Factory, tmp_path: Path) -> None:
    """`station trigger` prints the verdict, `watch` shows it, `history` lists it."""
    station = run_station("default")
    base = [sys.executable, "-m", "station.cli"]
    watch = subprocess.Popen(
        [*base, "watch", "--endpoint", station.publish, "--count", "1", "--timeout", "60",
         "--json", "--status"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert watch.stdout is not None
    # The slow joiner: `watch` has subscribed once it prints its first status message.
    first = json.loads(watch.stdout.readline())
    assert first["topic"] == "status", first
    res = subprocess.run(
        [*base, "trigger", "--endpoint", station.command, "--part-id", "DMC-42"],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode in (0, 1), res.stderr
    assert "DMC-42" in res.stdout and ("PASS" in res.stdout or "FAIL" in res.stdout)
    out, err = watch.communicate(timeout=60)
    seen = [json.loads(line) for line in out.splitlines()]
    assert any(m["topic"] == "verdict" and m["part_id"] == "DMC-42" for m in seen), err
    hist = subprocess.run([*base, "history", "--data-dir", str(station.data_dir), "-n", "5"],
                          capture_output=True, text=True, timeout=60)
    assert hist.returncode == 0 and "DMC-42" in hist.stdout
    res = subprocess.run([*base, "trigger", "--endpoint", station.command, "--json"],
                         capture_output=True, text=True, timeout=60)
    assert json.loads(res.stdout)["verdict"] in ("PASS", "FAIL")
    assert station.stop()[0] == 0


def test_trigger_without_station_exits_3() -> None:
    """No daemon on the endpoint: `station trigger` says so and exits 3."""
    from tests.e2e.conftest import free_port

    res = subprocess.run(
        [sys.executable, "-m", "station.cli", "trigger", "--endpoint",
         f"tcp://127.0.0.1:{free_port()}", "--timeout", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert res.returncode == 3 and "no answer" in res.stderr


def test_sd_notify_ready_and_watchdog(run_station: Factory, tmp_path: Path) -> None:
    """Playing systemd: READY=1 after start-up, then WATCHDOG=1 pings at half the period."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.5)
    try:
        station = run_station("default", env={"NOTIFY_SOCKET": path,
                                               "WATCHDOG_USEC": "400000"})
        got: list[str] = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and got.count("WATCHDOG=1") < 3:
            with contextlib.suppress(TimeoutError):
                got.extend(sock.recv(4096).decode().split("\n"))
        assert "READY=1" in got
        assert got.count("WATCHDOG=1") >= 3
        assert got.index("READY=1") < got.index("WATCHDOG=1") or "READY=1" in got
        assert station.stop()[0] == 0
        rest: list[str] = []
        try:
            while True:
                rest.extend(sock.recv(4096).decode().split("\n"))
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest
    finally:
        sock.close()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """A taken command endpoint: exit 1 with the key and the fix, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "station.cli", "run", "--data-dir", str(tmp_path),
             "--set", f"messaging.command=tcp://127.0.0.1:{port}",
             "--set", "messaging.publish=tcp://127.0.0.1:*"],
            capture_output=True, text=True, timeout=120,
        )
    assert res.returncode == 1
    assert "messaging.command" in res.stderr and "Traceback" not in res.stderr


def test_bad_config_exits_2(tmp_path: Path) -> None:
    """`station run` with an invalid config exits 2 naming the key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("cycle: {queue_depth: -3}\n")
    res = subprocess.run([sys.executable, "-m", "station.cli", "run", "--config", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "cycle.queue_depth" in res.stderr


@pytest.mark.parametrize("config", ["genicam-sim"])
def test_genicam_sim_station_end_to_end(run_station: Factory, config: str) -> None:
    """The same path with two cameras opened through harvesters on viky.cti."""
    station = run_station(config)
    header = check_inspection(station)
    assert all(c["width"] for c in header["cameras"])
    # its rules judge areas in pixels (viky has no scale): no "every speck fails" rule
    for _ in range(3):
        reply = request(station.command, {"command": "inspect", "wait": True}, 60)
        assert reply["result"]["verdict"] in ("PASS", "FAIL"), reply["result"]["reasons"]
        assert not any(">= 0 px" in r for r in reply["result"]["reasons"]), reply["result"]
    assert station.stop()[0] == 0

"""End to end: hostile bytes and connections against ``station run`` over real sockets.

The hostile corpus of issue 9 (messages that once stopped the daemon) and a share of the
seeded fuzz run go to a running daemon from DEALER and REQ clients; every message must get
exactly one reply frame, the daemon must keep answering valid requests and never exit, and
connections that never speak ZeroMQ must be closed by the daemon.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import zmq

from station.messaging import jsonio
from station.messaging.client import request
from tests.e2e.conftest import RunningStation
from tests.station.test_requests import HOSTILE_CORPUS, fuzz_messages

Factory = Callable[..., RunningStation]


def open_fds(pid: int) -> int:
    """How many file descriptors process ``pid`` holds."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def one_reply(sock: zmq.Socket[bytes], timeout_s: float = 10) -> list[bytes]:
    """The next message on ``sock``; fails if none comes within ``timeout_s``."""
    assert sock.poll(int(timeout_s * 1000)), "no reply"
    return sock.recv_multipart()


def test_hostile_corpus_and_fuzz_over_the_wire(run_station: Factory) -> None:
    """Each corpus message gets one reply frame with its code; 2,000 fuzz messages pipelined
    from one DEALER get 2,000 one-frame replies; the daemon keeps serving and never exits."""
    station = run_station("default")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(station.command)
    try:
        for frames, code in HOSTILE_CORPUS:
            dealer.send_multipart(frames)
            reply = one_reply(dealer)
            route = [b""] if len(frames) >= 2 and frames[0] == b"" else []
            assert reply[:-1] == route, (frames[0][:40], reply)
            data = jsonio.loads(reply[-1])
            if code is None:
                assert data["ok"] is True, data
            else:
                assert data["ok"] is False and data["error"]["code"] == code, (
                    frames[0][:60], data)
            assert station.proc.poll() is None, station.log()
        # A REQ client that sends an empty frame gets exactly one frame back.
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(station.command)
        req.send(b"")
        reply = one_reply(req)
        assert len(reply) == 1 and jsonio.loads(reply[0])["error"]["code"] == "BAD_JSON"
        req.close()
        # Fuzz, pipelined: every message is answered, in one frame after its route.
        messages = [m for m in fuzz_messages(seed=2026, n=2000) if m]
        for frames in messages:
            dealer.send_multipart(frames)
        for _ in messages:
            reply = one_reply(dealer, 30)
            assert len(reply) in (1, 2) and reply[-1].startswith(b'{"schema":1,'), reply
        assert not dealer.poll(200), "more replies than requests"
    finally:
        dealer.close()
        ctx.term()
    assert station.proc.poll() is None, station.log()
    pong = request(station.command, {"command": "ping", "request_id": "after"}, 5)
    assert pong["ok"] and pong["request_id"] == "after"
    # Valid inspects among the fuzz may still fill the queue (BUSY): wait until one is served.
    deadline = time.monotonic() + 120
    while True:
        reply = request(station.command, {"command": "inspect", "wait": True}, 60)
        if reply["ok"] or reply["error"]["code"] != "BUSY" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert reply["ok"], reply
    header = reply["result"]
    assert header["verdict"] in ("PASS", "FAIL"), header["reasons"]
    code, _ = station.stop()
    assert code == 0, station.log()


def test_connections_that_never_speak_are_closed(run_station: Factory) -> None:
    """150 connections that send nothing, HTTP or garbage to both ports are closed by the
    daemon (handshake timeout, pre-ZMTP-3 greetings refused); its descriptors come back to
    where they were and it answers throughout."""
    station = run_station("default", ["--set", "messaging.handshake_timeout_s=0.5"])
    pid = station.proc.pid
    baseline = open_fds(pid)
    ports = [int(ep.rsplit(":", 1)[1]) for ep in (station.command, station.publish)]
    payloads = [b"", b"GET / HTTP/1.1\r\nHost: station\r\n\r\n", b"\xff\x00garbage",
                b"\x00\x00\x00", b"\xff" + b"\x00" * 8 + b"\x7f\x03"]
    conns: list[socket.socket] = []
    for i in range(150):
        s = socket.create_connection(("127.0.0.1", ports[i % 2]))
        if payloads[i % len(payloads)]:
            s.sendall(payloads[i % len(payloads)])
        s.setblocking(False)
        conns.append(s)
    assert request(station.command, {"command": "ping"}, 5)["ok"]
    open_conns = set(conns)
    deadline = time.monotonic() + 30
    while open_conns and time.monotonic() < deadline:
        readable, _, _ = select.select(list(open_conns), [], [], 0.5)
        for s in readable:
            try:
                if s.recv(4096) == b"":  # EOF: the daemon closed it
                    open_conns.discard(s)
            except ConnectionResetError:
                open_conns.discard(s)
    try:
        assert not open_conns, f"{len(open_conns)} of {len(conns)} connections still open"
        assert request(station.command, {"command": "ping"}, 5)["ok"]
        fds: list[int] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the daemon releases them as the closes land
            fds.append(open_fds(pid))
            if fds[-1] <= baseline + 2:
                break
            time.sleep(0.1)
        assert fds[-1] <= baseline + 2, (baseline, fds[-5:])
    finally:
        for s in conns:
            s.close()
    assert station.stop()[0] == 0


def test_burst_answers_carry_request_ids(run_station: Factory) -> None:
    """Valid and invalid requests interleaved from one DEALER: each reply carries its
    request_id, TOO_LARGE included, so a client can match them."""
    station = run_station("default", ["--set", "cycle.queue_depth=1"])
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(station.command)
    sent: dict[str, str] = {}
    bodies: list[tuple[str, dict[str, Any] | bytes]] = [
        ("a", {"command": "ping"}), ("b", {"command": "status"}),
        ("c", {"command": "inspect", "wait": "yes"}), ("d", {"command": "nope"}),
        ("e", b'{"command":"ping","request_id":"e","pad":"' + b"x" * 70_000 + b'"}'),
        ("f", {"command": "ping", "schema": True}), ("g", {"command": "inspect"}),
    ]
    try:
        for rid, body in bodies:
            raw = body if isinstance(body, bytes) else json.dumps({**body, "request_id": rid}
                                                                   ).encode()
            dealer.send(raw)
            sent[rid] = rid
        got = {}
        for _ in bodies:
            data = jsonio.loads(one_reply(dealer)[-1])
            got[data["request_id"]] = data
    finally:
        dealer.close()
        ctx.term()
    assert set(got) == set(sent)
    assert got["e"]["error"]["code"] == "TOO_LARGE"
    assert got["c"]["error"]["code"] == got["f"]["error"]["code"] == "BAD_REQUEST"
    assert got["g"]["ok"] is True
    assert station.stop()[0] == 0

"""A small client for the station's sockets, used by ``station trigger/watch/status`` and tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import zmq

from config.errors import NoAnswer as NoAnswer  # in the error tree; re-exported for callers
from station.messaging.curve import ClientCurve, make_client


def request(
    endpoint: str, payload: dict[str, Any], timeout_s: float, curve: ClientCurve | None = None
) -> dict[str, Any]:
    """Send one JSON request on a REQ socket and return the decoded reply.

    ``curve``: the client's keys for a station with CURVE on (``curve.client_curve(cfg)``).
    """
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if curve is not None:
            make_client(sock, curve)
        sock.connect(endpoint)
        # A REQ socket blocks in send() while it has no peer (a CURVE station that refused
        # the handshake leaves none): wait for one within the timeout instead.
        if not sock.poll(int(timeout_s * 1000), zmq.POLLOUT):
            raise NoAnswer(
                f"no connection to {endpoint} within {timeout_s:g} s; is `station run` running "
                "with this messaging.command endpoint (and, with CURVE, is this client's key "
                "listed)?"
            )
        sock.send(json.dumps(payload).encode(), zmq.NOBLOCK)
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            raise NoAnswer(
                f"no answer from {endpoint} within {timeout_s:g} s; is `station run` running "
                "with this messaging.command endpoint?"
            )
        reply: dict[str, Any] = json.loads(sock.recv())
        return reply
    finally:
        sock.close()


def subscribe(
    endpoint: str, topics: tuple[str, ...] = ("verdict", "status", "event"),
    timeout_s: float | None = None, idle_topics: tuple[str, ...] | None = None,
    curve: ClientCurve | None = None,
) -> Iterator[tuple[str, dict[str, Any], list[bytes]]]:
    """Yield (topic, header, extra parts) from the station's PUB socket.

    With ``timeout_s``, stops after that long without a message of ``idle_topics`` (default:
    any of ``topics``); e.g. status messages every 0.2 s need not keep a quiet watch going.
    """
    counted = topics if idle_topics is None else idle_topics
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in topics:
        sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    if curve is not None:
        make_client(sock, curve)
    sock.connect(endpoint)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    try:
        while True:
            left_s = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = -1 if left_s is None else int(left_s * 1000)
            if not sock.poll(wait, zmq.POLLIN):
                return
            parts = sock.recv_multipart()
            if len(parts) < 2:
                continue
            topic = parts[0].decode(errors="replace")
            if timeout_s is not None and topic in counted:
                deadline = time.monotonic() + timeout_s
            yield topic, json.loads(parts[1]), parts[2:]
    finally:
        sock.close()


def wait_until_up(endpoint: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """Ping until the station answers (start-up), or raise ``NoAnswer``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return request(endpoint, {"command": "ping"}, timeout_s=0.5)
        except NoAnswer:
            if time.monotonic() > deadline:
                raise

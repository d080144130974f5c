"""Tests of station.hmi.feed: validated publications, kept state, fan-out, the real socket."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import zmq

from station.hmi.feed import LISTENER_QUEUE, MAPS_KEPT, Feed, Message
from tests.e2e.conftest import free_port
from tests.station.hmi.conftest import header

STATUS = {
    "schema": 1, "topic": "status", "station": "s", "state": "ready", "problems": [],
    "uptime_s": 1.0, "pid": 1, "counts": {"PASS": 0, "FAIL": 0, "ERROR": 0},
    "queue": {"waiting": 0, "depth": 2}, "model": {}, "cameras": [], "lights": {},
    "calibration": {},
}
EVENT = {"schema": 1, "topic": "event", "station": "s", "kind": "camera_lost",
         "time": "2026-11-22T10:00:00.000+00:00", "data": {"camera": "cam1"}}


def verdict_parts(h: dict[str, Any]) -> list[bytes]:
    return [b"verdict", json.dumps(h).encode(), *[b"png-" + c.encode() for c in h["maps"]]]


def test_verdict_status_and_events_are_kept() -> None:
    """The latest verdict (with its map PNGs), the latest status and its age, the events."""
    now = [100.0]
    feed = Feed("tcp://127.0.0.1:1", events_kept=2, clock=lambda: now[0])
    h = header(1, "FAIL")
    assert feed.handle(verdict_parts(h)) == Message("verdict", h)
    assert feed.verdict() == h and feed.map_png(h["inspection_id"], "cam1") == b"png-cam1"
    assert feed.status() == (None, None)
    feed.handle([b"status", json.dumps(STATUS).encode()])
    now[0] = 103.5
    assert feed.status() == (STATUS, 3.5)
    for i in range(3):
        feed.handle([b"event", json.dumps({**EVENT, "data": {"n": i}}).encode()])
    assert [e["data"]["n"] for e in feed.events()] == [2, 1]  # newest first, 2 kept
    assert feed.bad_messages == 0


def test_only_recent_maps_are_kept() -> None:
    """Maps of more than MAPS_KEPT verdicts are not held in memory."""
    feed = Feed("tcp://127.0.0.1:1")
    for i in range(MAPS_KEPT + 3):
        feed.handle(verdict_parts(header(i)))
    assert feed.map_png(header(0)["inspection_id"], "cam0") is None
    assert feed.map_png(header(MAPS_KEPT + 2)["inspection_id"], "cam0") is not None


def test_garbage_is_counted_and_dropped() -> None:
    """Every malformed publication is dropped with a reason; the state stays as it was."""
    feed = Feed("tcp://127.0.0.1:1")
    good = header(1)
    feed.handle(verdict_parts(good))
    bad_verdict = {**header(2), "verdict": "MAYBE"}
    garbage = [
        [b"verdict"],
        [b"verdict", b"\xff\xfe not json"],
        [b"verdict", b"[1, 2]"],
        verdict_parts(bad_verdict),
        [b"verdict", json.dumps(header(3)).encode()],  # maps listed, no PNG parts
        [b"status", b"{}"],
        [b"event", json.dumps({**EVENT, "extra": 1}).encode()],
        [b"whatever", b"{}"],
    ]
    for parts in garbage:
        assert feed.handle(parts) is None
    assert feed.bad_messages == len(garbage) and feed.verdict() == good
    assert feed.last_bad is not None and "unknown topic" in feed.last_bad


def test_listeners_get_every_message_and_a_slow_one_loses_the_oldest() -> None:
    """Each listener's queue gets the messages on its own loop; when it is full the oldest
    go, the newest stay; announce() reaches listeners too."""

    async def scenario() -> tuple[list[str], int]:
        feed = Feed("tcp://127.0.0.1:1")
        queue = feed.listen()
        for i in range(LISTENER_QUEUE + 5):
            feed.handle(verdict_parts(header(i)))
        feed.announce(Message("alarm", {}))
        await asyncio.sleep(0)  # the callbacks scheduled so far run before this returns
        got = []
        while not queue.empty():
            got.append(queue.get_nowait())
        feed.unlisten(queue)
        feed.handle(verdict_parts(header(999)))
        await asyncio.sleep(0)
        return [m.topic for m in got], int(got[0].header["inspection_id"][9:15])

    topics, first = asyncio.run(scenario())
    assert len(topics) == LISTENER_QUEUE and topics[-1] == "alarm"
    assert first == 6  # 0..5 were dropped: 69 verdicts + 1 alarm into 64 places


def test_the_thread_reads_a_real_pub_socket() -> None:
    """Started, the feed subscribes to a real PUB socket and keeps what it publishes."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    feed = Feed(endpoint)
    feed.start()
    try:
        h = header(7)
        deadline = time.monotonic() + 20
        while feed.verdict() is None:  # slow joiner: publish until it has arrived
            assert time.monotonic() < deadline, "the feed never received the verdict"
            pub.send_multipart(verdict_parts(h))
            time.sleep(0.05)
        assert feed.verdict() == h
    finally:
        feed.stop()
        pub.close()
        ctx.term()

"""The station's PUB socket, read by one thread, fanned out to the pages' event streams.

One thread owns the SUB socket (ZeroMQ sockets are not thread-safe) and keeps the latest
verdict (with its defect-map PNGs, for an HMI that cannot see the store's files), the latest
status and the recent events. Every message is validated against the wire schema; one that
does not validate is counted and dropped, never passed on. Listeners (the server-sent event
streams, on the web server's event loop) get each message through a bounded queue; a listener
that does not keep up loses its oldest messages, and never slows the feed.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
import zmq
from pydantic import ValidationError

from station.messaging.wire import EventMessage, StatusMessage, VerdictHeader

log = structlog.get_logger(__name__)

#: Messages a slow listener may have waiting before its oldest are dropped.
LISTENER_QUEUE = 64
#: Verdicts whose defect-map PNGs are kept in memory.
MAPS_KEPT = 32


@dataclass(frozen=True)
class Message:
    """One validated publication: topic and JSON header (as sent)."""

    topic: str
    header: dict[str, Any]


class Feed:
    """Latest verdict, status and events from the station; listeners get every message."""

    def __init__(self, endpoint: str, events_kept: int = 100,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self._lock = threading.Lock()
        self._verdict: dict[str, Any] | None = None
        self._status: dict[str, Any] | None = None
        self._status_at: float | None = None
        self._events: deque[dict[str, Any]] = deque(maxlen=events_kept)
        self._maps: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Message]]] = set()
        self.bad_messages = 0
        self.last_bad: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()  # set once the socket is connected

    # --- what the pages read -----------------------------------------------------------------

    def verdict(self) -> dict[str, Any] | None:
        """The latest verdict header received, or None."""
        with self._lock:
            return self._verdict

    def status(self) -> tuple[dict[str, Any] | None, float | None]:
        """The latest status and its age [s] (None, None before the first)."""
        with self._lock:
            if self._status is None or self._status_at is None:
                return None, None
            return self._status, self._clock() - self._status_at

    def events(self) -> list[dict[str, Any]]:
        """The recent events, newest first."""
        with self._lock:
            return list(reversed(self._events))

    def map_png(self, inspection_id: str, camera: str) -> bytes | None:
        """A recent verdict's defect-map PNG, as published."""
        with self._lock:
            return self._maps.get(inspection_id, {}).get(camera)

    # --- listeners ---------------------------------------------------------------------------

    def listen(self) -> asyncio.Queue[Message]:
        """A queue (for the calling event loop) that gets every message from now on."""
        queue: asyncio.Queue[Message] = asyncio.Queue(LISTENER_QUEUE)
        with self._lock:
            self._listeners.add((asyncio.get_running_loop(), queue))
        return queue

    def unlisten(self, queue: asyncio.Queue[Message]) -> None:
        """Stop sending to ``queue``."""
        with self._lock:
            self._listeners = {(lp, q) for lp, q in self._listeners if q is not queue}

    @staticmethod
    def _offer(queue: asyncio.Queue[Message], msg: Message) -> None:
        while True:  # on the listener's loop: drop the oldest rather than block
            try:
                queue.put_nowait(msg)
                return
            except asyncio.QueueFull:
                queue.get_nowait()

    def announce(self, msg: Message) -> None:
        """Send a message of the HMI's own (e.g. ``alarm``: acknowledged) to every listener."""
        with self._lock:
            listeners = list(self._listeners)
        self._fan_out(listeners, msg)

    def _fan_out(
        self, listeners: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Message]]],
        msg: Message,
    ) -> None:
        for loop, queue in listeners:
            try:
                loop.call_soon_threadsafe(self._offer, queue, msg)
            except RuntimeError:  # that loop is closed: its page has gone
                self.unlisten(queue)

    # --- input -------------------------------------------------------------------------------

    def handle(self, parts: list[bytes]) -> Message | None:
        """Validate one multipart publication, keep what the pages need, fan it out.

        Returns the message, or None when it was dropped (counted in ``bad_messages``).
        """
        try:
            msg = self._parse(parts)
        except (ValueError, ValidationError) as exc:
            with self._lock:
                self.bad_messages += 1
                self.last_bad = str(exc).splitlines()[0][:200]
            log.warning("publication dropped", reason=self.last_bad)
            return None
        with self._lock:
            if msg.topic == "verdict":
                self._verdict = msg.header
                names = msg.header.get("maps", [])
                self._maps[msg.header["inspection_id"]] = dict(
                    zip(names, parts[2 : 2 + len(names)], strict=True))
                while len(self._maps) > MAPS_KEPT:
                    self._maps.popitem(last=False)
            elif msg.topic == "status":
                self._status, self._status_at = msg.header, self._clock()
            else:
                self._events.append(msg.header)
            listeners = list(self._listeners)
        self._fan_out(listeners, msg)
        return msg

    @staticmethod
    def _parse(parts: list[bytes]) -> Message:
        if len(parts) < 2:
            raise ValueError(f"a publication has a topic and a JSON header; got {len(parts)} part")
        topic = parts[0].decode("ascii", errors="replace")
        try:
            header = json.loads(parts[1])
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"topic {topic!r}: the header is not JSON ({exc})") from None
        if topic == "verdict":
            verdict = VerdictHeader.model_validate(header)
            if len(parts) - 2 != len(verdict.maps):
                raise ValueError(
                    f"verdict {verdict.inspection_id}: header lists {len(verdict.maps)} maps, "
                    f"{len(parts) - 2} PNG parts follow")
        elif topic == "status":
            StatusMessage.model_validate(header)
        elif topic == "event":
            EventMessage.model_validate(header)
        else:
            raise ValueError(f"unknown topic {topic[:40]!r}; expected verdict, status or event")
        return Message(topic, header)

    # --- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        """Connect and read in a thread until ``stop()``."""
        self._thread = threading.Thread(target=self._run, name="hmi-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (within one poll period) and close the socket."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1000)
        for topic in (b"verdict", b"status", b"event"):
            sock.setsockopt(zmq.SUBSCRIBE, topic)
        try:
            sock.connect(self.endpoint)
            self.connected.set()
            log.info("subscribed", endpoint=self.endpoint)
            while not self._stop.is_set():
                if sock.poll(200):
                    parts = sock.recv_multipart()
                    try:
                        self.handle(parts)
                    except Exception:  # a bug here must not end the feed
                        log.exception("publication not handled")
        except zmq.ZMQError as exc:
            log.error("feed stopped", endpoint=self.endpoint, error=str(exc))
            with self._lock:
                self.last_bad = f"cannot subscribe to {self.endpoint}: {exc}"
        finally:
            sock.close(0)
            ctx.term()

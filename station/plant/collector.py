"""``station collect``: every booth's verdicts from the broker into the plant's PostgreSQL.

Two threads:

- "mqtt" (:class:`Link`): the broker connection with the fixed client id
  ``collect.client_id``, clean start *off* on every connection and a session expiry of
  ``collect.session_expiry_s``, so the broker keeps the subscriptions and queues what arrives
  while the collector is away (the broker needs ``persistence true`` to keep them across its own
  restart, and ``max_queued_messages`` above the backlog it should hold: docs/fleet.md). It
  subscribes to ``collect.topics`` with QoS 1 and puts each message in the inbox. It never
  acknowledges on its own (paho's manual ack): it sends the PUBACKs the writer hands back.
- the caller's thread, the writer: takes up to ``collect.batch_size`` messages, validates each
  as a ``PlantVerdict``, inserts the batch in one transaction (``ON CONFLICT DO NOTHING``),
  and only after the commit hands their acknowledgements to the "mqtt" thread, in the order they
  came. A message that is not a verdict is logged and acknowledged (it would come back for
  ever); a database failure keeps the batch and tries again after a backoff, unacknowledged.

So a verdict is acknowledged only once it is in the database: kill the collector at any moment
and the broker sends again what was not acknowledged; the primary key drops the copies. A
message id belongs to one connection: acknowledgements of an earlier connection are not sent
(the broker sends those messages again on the new one).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from config import StationConfig
from config.errors import DatabaseError
from drivers.backoff import Backoff
from station.messaging import jsonio
from station.messaging.wire import PlantVerdict
from station.plant.database import Row, VerdictTable
from station.plant.link import Link, broker_url, read_password, tls_context

log = structlog.get_logger(__name__)

#: At a stop: how long the last acknowledgements get to go out [s].
FLUSH_S = 1.0


@dataclass(frozen=True)
class Received:
    """One message from the broker, tagged with its connection."""

    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


@dataclass
class Figures:
    """What the collector did since it started."""

    received: int = 0
    written: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches: int = 0
    db_seconds: float = 0.0
    db_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        """For the log."""
        mean = self.db_seconds / self.batches * 1000 if self.batches else 0.0
        return {"received": self.received, "written": self.written,
                "duplicates": self.duplicates, "rejected": self.rejected,
                "batches": self.batches, "mean_batch_ms": round(mean, 2),
                "db_errors": self.db_errors}


def parse(message: Received) -> Row | str:
    """A message as a row, or why it is not a verdict."""
    try:
        data = jsonio.loads(message.payload)
    except Exception as exc:  # JsonRefused, or bytes that are not JSON at all
        return f"not JSON: {str(exc)[:200]}"
    try:
        return Row(PlantVerdict.model_validate(data), message.topic)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(message)"
        return f"not a verdict ({exc.error_count()} problem(s); {where}: {first['msg']})"


class Collector:
    """Subscribes to the broker and writes the verdicts; :meth:`run` until ``stop`` is set."""

    def __init__(self, cfg: StationConfig, table: VerdictTable) -> None:
        self.cfg = cfg
        self.table = table
        c = cfg.collect
        self.filters = c.filters(cfg.mqtt)
        self.link = Link(
            cfg, c.client_id, clean_start=False, session_expiry_s=c.session_expiry_s,
            receive_maximum=c.receive_maximum, manual_ack=True,
            on_connected=self._on_connected, configure=self._configure,
            password=read_password(cfg), tls=tls_context(cfg),
        )
        self.inbox: queue.Queue[Received] = queue.Queue()
        self._acks: collections.deque[tuple[int, int, int]] = collections.deque()
        self._net_stop = threading.Event()
        self._net = threading.Thread(target=self._network, name="mqtt", daemon=True)
        self.figures = Figures()
        self.subscribed = threading.Event()
        self.last_db_error: str | None = None

    # --- the writer (the caller's thread) ----------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Collect until ``stop`` is set; then acknowledge what is written, and disconnect."""
        log.info("collector starting", broker=broker_url(self.cfg),
                 client_id=self.link.client_id, topics=self.filters, database=self.table.where,
                 table=self.table.table)
        try:
            self.table.connect()
        except DatabaseError as exc:  # verdicts wait at the broker, unacknowledged, meanwhile
            self.last_db_error = str(exc)
            log.error("database not reachable; retrying while collecting", error=str(exc))
        self._net.start()
        backoff = Backoff(self.cfg.mqtt.retry_first_s, self.cfg.mqtt.retry_max_s)
        next_figures = time.monotonic() + self.cfg.collect.stats_interval_s
        try:
            while not stop.is_set():
                if time.monotonic() >= next_figures:
                    next_figures = time.monotonic() + self.cfg.collect.stats_interval_s
                    log.info("collector figures", **self.figures.as_dict(),
                             inbox=self.inbox.qsize(), connected=self.link.connected)
                batch = self._take()
                if batch and not self._write(batch, stop, backoff):
                    return  # stopped while the database was away: nothing acknowledged
        finally:
            self._net_stop.set()
            self._net.join(FLUSH_S + 3)
            self.table.close()
            log.info("collector stopped", **self.figures.as_dict())

    def _take(self) -> list[Received]:
        """Up to ``batch_size`` messages: wait ``batch_wait_s`` for the first, then take what
        is there."""
        try:
            first = self.inbox.get(timeout=self.cfg.collect.batch_wait_s)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self.cfg.collect.batch_size:
            try:
                batch.append(self.inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, batch: list[Received], stop: threading.Event, backoff: Backoff) -> bool:
        """Write ``batch`` (retrying while the database fails) and queue its acknowledgements;
        False when ``stop`` came first."""
        rows: list[Row] = []
        for message in batch:
            parsed = parse(message)
            if isinstance(parsed, str):
                self.figures.rejected += 1
                log.warning("message dropped: not a verdict", topic=message.topic,
                            reason=parsed, bytes=len(message.payload))
            else:
                rows.append(parsed)
        while True:
            t0 = time.monotonic()
            try:
                new = self.table.insert(rows)
                break
            except DatabaseError as exc:
                if str(exc) != self.last_db_error:
                    log.error("database write failed; retrying", error=str(exc),
                              verdicts=len(rows))
                self.last_db_error = str(exc)
                self.figures.db_errors += 1
                if stop.wait(backoff.next_wait()):
                    return False
        if self.last_db_error is not None:
            log.info("database writes again", database=self.table.where)
        self.last_db_error = None
        backoff.reset()
        self.figures.batches += 1
        self.figures.db_seconds += time.monotonic() - t0
        self.figures.written += new
        self.figures.duplicates += len(rows) - new
        self._acks.extend((m.generation, m.mid, m.qos) for m in batch)
        return True

    # --- the network thread ------------------------------------------------------------------

    def _network(self) -> None:
        while not self._net_stop.is_set():
            try:
                self.link.step(0.02)
                self._send_acks()
            except Exception as exc:  # the thread must not die
                log.exception("collector network turn failed")
                self.link.drop(f"internal error: {type(exc).__name__}: {exc}")
        try:
            self._send_acks()
            self.link.close(flush_s=FLUSH_S, pending=lambda: False)
        except Exception:
            log.exception("collector disconnect failed")

    def _send_acks(self) -> None:
        client = self.link.client
        while self._acks:
            generation, mid, qos = self._acks.popleft()
            if (client is not None and self.link.connected
                    and generation == self.link.generation and qos > 0):
                client.ack(mid, qos)

    def _configure(self, client: mqtt.Client) -> None:
        client.on_message = self.link.guard(self._on_message)
        client.on_subscribe = self.link.guard(self._on_subscribe)

    def _on_connected(self, client: mqtt.Client, session_present: bool,
                      props: Properties | None) -> None:
        log.info("collector connected", broker=broker_url(self.cfg),
                 session_present=session_present)
        client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters])

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reasons: list[ReasonCode], properties: Properties | None) -> None:
        for topic, reason in zip(self.filters, reasons, strict=False):
            if reason.is_failure:
                log.error("subscription refused", topic=topic, reason=str(reason),
                          code=f"0x{reason.value:02X}",
                          fix="let the collector's user read these topics in the broker's ACL")
            elif reason.value < 1:
                log.warning("subscription granted with QoS 0: verdicts may be lost",
                            topic=topic)
        self.subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.figures.received += 1
        self.inbox.put(Received(self.link.generation, msg.mid, msg.qos, msg.topic,
                                bytes(msg.payload)))

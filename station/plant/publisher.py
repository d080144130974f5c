"""The outbox's sender: every recorded verdict to the plant's MQTT broker, nothing lost.

The store is the outbox (``station.store``: a verdict is queued in the transaction that
records it). This thread ("mqtt", its own, so the broker never stalls a cycle or the command
socket) reads the outbox oldest first, publishes each verdict with QoS 1 on
``<topic_root>/verdict`` and deletes it from the outbox only when the broker's PUBACK says it
took it:

- reason code below 0x80 (0x00 success, 0x10 "no matching subscribers") is delivered;
- 0x80 and above (0x87 not authorised by the broker's ACL, 0x97 quota exceeded ...) is a
  refusal: the verdict stays in the outbox, the refusal is reported in ``status`` and the log,
  and sending starts again from the oldest undelivered verdict after a wait that doubles (up to
  ``mqtt.retry_max_s``) while the refusals go on.

At most ``mqtt.max_inflight`` verdicts (lowered to the broker's Receive Maximum) are
unacknowledged at once. A connection that ends (broker stopped, network cut, kill -9 of the
station) forgets its in-flight messages; the next connection sends again from the oldest
undelivered verdict, so the few in flight may arrive twice (``inspection_id`` tells them apart)
and none is lost. Every connection is a fresh client with clean start: the station needs no
broker session, its outbox on disk is the session (docs/fleet.md).

Also, retained: ``<topic_root>/status`` (the status message, every
``messaging.status_interval_s``) and ``<topic_root>/state`` (``online`` at each connection,
``offline`` at a clean stop, and ``offline`` "connection lost" as the last will the broker
publishes when the station vanishes).
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from config import StationConfig
from config.errors import StationError
from drivers.backoff import Backoff
from station.messaging import jsonio
from station.messaging.wire import PlantState
from station.plant.link import Link, broker_url, read_password, tls_context
from station.store import Queued, Store

log = structlog.get_logger(__name__)

#: At a clean stop: how long the in-flight verdicts get to be acknowledged [s].
FLUSH_S = 1.0
#: How long ``stop`` waits for the thread [s].
JOIN_S = 3.0


def now_iso() -> str:
    """Now, ISO 8601 UTC with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def age_s(iso_time: str | None) -> float | None:
    """Seconds since ``iso_time`` (None when None or unreadable)."""
    if not iso_time:
        return None
    try:
        then = datetime.fromisoformat(iso_time)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - then).total_seconds())


def state_payload(station: str, state: str, reason: str) -> bytes:
    """A ``PlantState`` message (birth, clean stop, last will)."""
    msg = PlantState(station=station, state=state,
                     reason=reason, time=now_iso())
    return jsonio.dumps(msg.model_dump(by_alias=True, mode="json"))


def verdict_payload(queued: Queued, data_dir: Path, include_maps: bool) -> bytes:
    """The ``PlantVerdict`` of an outbox row: the header, its ``seq``, defects per class and,
    with ``include_maps``, the defect maps still on disk (base64 PNG)."""
    header = dict(queued.header)
    counts: Counter[str] = Counter(
        str(d.get("class_name")) for cam in header.get("cameras", [])
        for d in cam.get("defects", []))
    header["seq"] = queued.seq
    header["defect_counts"] = dict(sorted(counts.items()))
    if include_maps:
        maps: dict[str, str] = {}
        for cam, rel in queued.maps.items():
            try:
                maps[cam] = base64.b64encode((data_dir / rel).read_bytes()).decode()
            except OSError:
                continue  # pruned by storage.max_disk_mb: the verdict goes without it
        header["maps_png"] = maps
    return jsonio.dumps(header)


class Publisher:
    """Sends the outbox to the broker from its own thread; ``start``, ``stop``, ``health``."""

    def __init__(self, cfg: StationConfig, store: Store, data_dir: Path) -> None:
        self.cfg = cfg
        self.store = store
        self.data_dir = data_dir
        m = cfg.mqtt
        self.url = broker_url(cfg)
        self.topics = {leaf: m.topic(cfg.name, leaf) for leaf in ("verdict", "status", "state")}
        self.link = Link(
            cfg, m.client_id_for(cfg.name), clean_start=True, session_expiry_s=0,
            will=(self.topics["state"], state_payload(cfg.name, "offline", "connection lost")),
            on_connected=self._on_connected, configure=self._configure,
            password=read_password(cfg), tls=tls_context(cfg),
        )
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._stop = threading.Event()
        self._inflight: dict[int, int] = {}  # message id -> outbox seq (verdicts)
        self._others: dict[int, str] = {}  # message id -> topic (status, state)
        self._acked: list[int] = []  # seqs acknowledged, not yet removed from the outbox
        self._last_sent = 0  # highest seq sent on this connection
        self._window = m.max_inflight
        self._status: bytes | None = None
        self._status_new = False
        self._status_lock = threading.Lock()
        self._refusals = Backoff(m.retry_first_s, m.retry_max_s)
        self._hold_until = 0.0  # after a refusal: no verdicts before this (monotonic)
        self._holding = False
        #: since start: verdicts acknowledged, refusals, and the last refusal in words
        self.delivered = 0
        self.refused = 0
        self.last_refusal: str | None = None
        self.last_store_error: str | None = None

    # --- life cycle (the daemon's main thread) -----------------------------------------------

    def start(self) -> None:
        """Start the thread; it connects, and reconnects, on its own."""
        backlog = self.store.backlog()
        log.info("mqtt publisher starting", broker=self.url, client_id=self.link.client_id,
                 topic=self.topics["verdict"], backlog=backlog)
        self._thread.start()

    def stop(self, timeout_s: float = JOIN_S) -> None:
        """Publish ``offline``, give in-flight verdicts ``FLUSH_S`` to be acknowledged,
        disconnect cleanly; what is still undelivered stays in the outbox for the next start."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("mqtt publisher did not stop in time", limit_s=timeout_s)

    def offer_status(self, status: dict[str, Any]) -> None:
        """The latest status message; sent retained as soon as the thread can (thread-safe)."""
        payload = jsonio.dumps(status)
        with self._status_lock:
            self._status, self._status_new = payload, True

    # --- health (any thread) -----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """What ``status`` reports under ``outbox``."""
        try:
            backlog, oldest = self.store.outbox_backlog()
        except StationError as exc:
            backlog, oldest = self.store.backlog(), None
            self.last_store_error = str(exc)
        age = age_s(oldest)
        return {
            "broker": self.url, "client_id": self.link.client_id,
            "topic": self.topics["verdict"], "connected": self.link.connected,
            "since": datetime.fromtimestamp(self.link.since, UTC).isoformat(
                timespec="milliseconds"),
            "last_error": self.link.last_error, "backlog": backlog,
            "max_backlog": self.cfg.mqtt.max_backlog, "oldest_queued_at": oldest,
            "oldest_age_s": None if age is None else round(age, 1),
            "in_flight": len(self._inflight), "delivered": self.delivered,
            "refused": self.refused, "last_refusal": self.last_refusal,
            "store_error": self.last_store_error,
        }

    @staticmethod
    def problems(health: dict[str, Any]) -> list[str]:
        """The status problems a ``health()`` record shows (none when all is well)."""
        out: list[str] = []
        waiting = (f"{health['backlog']} verdict(s) wait in the outbox"
                   + (f", the oldest for {health['oldest_age_s']:.0f} s"
                      if health["oldest_age_s"] is not None else ""))
        if not health["connected"]:
            why = health["last_error"] or "connecting"
            out.append(f"plant broker not connected ({why}); {waiting}")
        elif health["last_refusal"] and health["backlog"]:
            out.append(f"{health['last_refusal']}; {waiting}")
        if health["backlog"] >= health["max_backlog"]:
            out.append(f"the outbox is full ({health['backlog']} >= mqtt.max_backlog "
                       f"{health['max_backlog']}): triggers are refused (BACKLOG_FULL) until the "
                       "broker takes verdicts")
        if health.get("store_error"):
            out.append(f"outbox: {health['store_error']}")
        return out

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.link.step(0.05)
                if self.link.connected:
                    self._send()
                self._commit()
            except Exception as exc:  # the thread must not die: drop, report, retry
                log.exception("mqtt publisher turn failed")
                self.link.drop(f"internal error: {type(exc).__name__}: {exc}")
        try:
            self.link.close(
                (self.topics["state"], state_payload(self.cfg.name, "offline", "stopped")),
                FLUSH_S, pending=lambda: bool(self._inflight))
            self._commit()
        except Exception:
            log.exception("mqtt publisher stop failed")
        log.info("mqtt publisher stopped", delivered=self.delivered,
                 backlog=self.store.backlog())

    def _configure(self, client: mqtt.Client) -> None:
        client.on_publish = self.link.guard(self._on_publish)
        client.max_inflight_messages_set(0)  # no limit of paho's own: the window is ours

    def _on_connected(self, client: mqtt.Client, session_present: bool,
                      props: Properties | None) -> None:
        self._inflight.clear()
        self._others.clear()
        self._last_sent = 0
        receive_max = getattr(props, "ReceiveMaximum", None) if props is not None else None
        # the broker's Receive Maximum counts status and state messages too: keep 2 for them
        self._window = max(1, min(self.cfg.mqtt.max_inflight, int(receive_max or 65535) - 2))
        info = client.publish(self.topics["state"],
                              state_payload(self.cfg.name, "online", "connected"), qos=1,
                              retain=True)
        self._others[info.mid] = self.topics["state"]
        with self._status_lock:
            self._status_new = self._status is not None
        log.info("mqtt publishing", broker=self.url, backlog=self.store.backlog(),
                 window=self._window)

    def _send(self) -> None:
        client = self.link.client
        assert client is not None
        with self._status_lock:
            status, self._status_new = (self._status if self._status_new else None), False
        if status is not None:
            info = client.publish(self.topics["status"], status, qos=1, retain=True)
            self._others[info.mid] = self.topics["status"]
        if self._holding:
            if self._inflight or time.monotonic() < self._hold_until:
                return
            self._holding = False
            self._last_sent = 0  # again from the oldest undelivered verdict
        room = self._window - len(self._inflight)
        waiting = self.store.backlog() - len(self._inflight) - len(self._acked)
        if room <= 0 or waiting <= 0:
            return
        for queued in self.store.outbox_after(self._last_sent, room):
            payload = verdict_payload(queued, self.data_dir, self.cfg.mqtt.include_maps)
            info = client.publish(self.topics["verdict"], payload, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS,):
                self.link.fail(f"{self.url}: publish failed ({mqtt.error_string(info.rc)})")
                return
            self._inflight[info.mid] = queued.seq
            self._last_sent = queued.seq

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    properties: Properties | None) -> None:
        if client is not self.link.client:
            return
        if mid in self._others:
            topic = self._others.pop(mid)
            if reason.is_failure:
                log.error("mqtt message refused", topic=topic, reason=str(reason),
                          code=f"0x{reason.value:02X}")
            return
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        if not reason.is_failure:  # 0x00 success, 0x10 no matching subscribers
            self._acked.append(seq)
            self._refusals.reset()
            return
        self.refused += 1
        wait = self._refusals.next_wait()
        self.last_refusal = (
            f"{self.url} refused verdict {seq} on {self.topics['verdict']}: {reason} "
            f"(0x{reason.value:02X}); it stays in the outbox and is sent again in {wait:g} s; "
            "check the broker's ACL for "
            + (f"user {self.cfg.mqtt.username!r}" if self.cfg.mqtt.username else "anonymous"))
        log.error("mqtt verdict refused", seq=seq, reason=str(reason),
                  code=f"0x{reason.value:02X}", retry_in_s=wait)
        self._holding = True
        self._hold_until = time.monotonic() + wait

    def _commit(self) -> None:
        """Remove what the broker acknowledged from the outbox (one transaction)."""
        if not self._acked:
            return
        acked, self._acked = self._acked, []
        try:
            self.store.outbox_delivered(acked)
        except StationError as exc:  # kept, and tried again next turn; a restart meanwhile
            # sends them again: duplicates, never losses
            self._acked = acked + self._acked
            if str(exc) != self.last_store_error:
                log.error("outbox not updated", error=str(exc), verdicts=len(acked))
            self.last_store_error = str(exc)
            return
        self.last_store_error = None
        self.delivered += len(acked)
        if self.last_refusal is not None and not self._holding:
            self.last_refusal = None

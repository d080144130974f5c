"""The daemon: sockets in the main thread, the inspection cycle in two stage threads.

Threads and who owns what:
- main thread: every ZeroMQ socket (they are not thread-safe), the systemd watchdog pings,
  the periodic status, publishing, recording, replies. It never blocks on acquisition or
  inference: it polls the command socket every ``POLL_MS``. It publishes verdicts in trigger
  order: each accepted job waits in ``_order`` until every earlier one is answered.
- cycle stages (``station.stages``): the acquisition thread takes inspection jobs from a
  bounded queue (``cycle.queue_depth``) and runs ``station.cycle.acquire_part``; the
  inference thread runs ``station.cycle.inspect_part`` on what it acquired, part N while
  part N+1 is acquired (``cycle.pipeline_depth`` acquired parts may wait between them);
  outcomes come back on a queue the main thread drains.
- hardware trigger (``cycle.trigger: hardware``): the rig's listener threads hand every frame
  that arrives to the main thread, which pairs them into parts (``drivers.cameras.pairing``)
  and queues each as a job that skips the lights and the grab; ``inspect`` is refused.
- driver threads (camera rig, light guard): report events through a queue the main thread
  drains and publishes on topic ``event``.

A trigger that finds the job queue full is answered ``BUSY``; it is never dropped in silence.

The line's side (docs/plc.md): with ``messaging.curve`` both sockets are CURVE servers and a
ZAP thread (``station.messaging.curve``) admits keys by role; every request's ``User-Id``
property names the roles, checked per command. The OPC UA server (``station.opcua``, its own
thread) hands its triggers to the main thread (``submit``) and gets every verdict and status.
``reload`` builds a new working set on a helper thread (``station.reload``) and swaps it in
between cycles.

Every request gets exactly one reply, whatever its bytes (``station.messaging.requests``), and
every accepted inspection exactly one verdict: it is marked in the store before it is
acknowledged, recorded with its verdict, and closed as ERROR "interrupted by a restart" at the
next start if a crash took it. With ``mqtt.enabled`` each recorded verdict is also queued in
the store's outbox, in the same transaction, and ``station.plant.publisher`` sends it to the
plant's broker from its own thread (docs/fleet.md); past ``mqtt.max_backlog`` undelivered
verdicts, triggers are answered ``BACKLOG_FULL``. During shutdown the command socket keeps
answering (``inspect`` with ``SHUTTING_DOWN``) until the moment it closes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import queue
import resource
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import structlog
import zmq

from config import StationConfig
from config.errors import StationError
from drivers.cameras.pairing import FramePairer, FrameSet
from drivers.frame import Frame
from drivers.lights.base import Luminaires
from station.cycle import (
    Acquired,
    Acquirer,
    CalibrationState,
    Inspects,
    Outcome,
    acquire_part,
    error_outcome,
    inspect_part,
    iso,
    new_inspection_id,
)
from station.health import Notifier
from station.messaging import curve, jsonio
from station.messaging.requests import (
    FALLBACK_REPLY,
    encode,
    error_reply,
    ok_reply,
    read_request,
)
from station.messaging.wire import (
    EventMessage,
    HistoryRequest,
    InspectRequest,
    PingRequest,
    ReloadRequest,
    Reply,
    Request,
    ResultRequest,
    StatusMessage,
    StatusRequest,
)
from station.stages import Job, Stages
from station.store import Store

if TYPE_CHECKING:
    from station.plant.publisher import Publisher

log = structlog.get_logger(__name__)

POLL_MS = 20
MAX_REQUESTS_PER_TURN = 64
#: How long an OPC UA Trigger waits for the main loop to accept it [s].
SUBMIT_TIMEOUT_S = 5.0
#: At shutdown: how long hardware may take to close while requests are still answered [s].
CLOSE_TIMEOUT_S = 3.0
#: At shutdown: the command socket closes after this long without a request [s] ...
FINAL_QUIET_S = 0.1
#: ... or after this long in all [s].
FINAL_DRAIN_S = 1.0
#: The reason given to accepted inspections a crash or kill interrupted.
INTERRUPTED = "interrupted by a restart"
#: Hardware trigger: frames the listener threads may hand over between two main-loop turns.
MAX_ARRIVALS = 256
#: What the acquisition stage hands the inference stage: the set in force, and the part.
_Staged = tuple[StationConfig, Inspects, CalibrationState, Acquired]


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft limit on open files to the hard limit; return (soft, hard) after.

    Each connection to the sockets holds one descriptor (as do cameras, the serial port and
    the store). Under systemd the unit's ``LimitNOFILE`` sets both limits.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit", soft=soft, hard=hard,
                        error=str(exc))
    return soft, hard


class Daemon:
    """The station daemon. ``start()``, then ``serve()`` until a signal or ``stop()``."""

    def __init__(
        self,
        cfg: StationConfig,
        data_dir: Path,
        *,
        inspector: Inspects,
        rig: Any | None,
        lights: Luminaires | None,
        calibration: CalibrationState | None = None,
        calibration_info: dict[str, Any] | None = None,
        notifier: Notifier | None = None,
        config_loader: Callable[[], StationConfig] | None = None,
    ) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.inspector = inspector
        self.rig = rig
        self.lights = lights
        self.calibration = calibration or CalibrationState()
        self.calibration_info = calibration_info or {}
        self.notifier = notifier or Notifier()
        self.store = Store(data_dir, cfg.storage.max_disk_mb, outbox=cfg.mqtt.enabled)
        self.plant: Publisher | None = None  # the outbox's sender (mqtt.enabled)
        if cfg.mqtt.enabled:
            self.plant = _publisher(cfg, self.store, data_dir)
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=cfg.cycle.queue_depth)
        self._outcomes: queue.Queue[tuple[Job, Outcome]] = queue.Queue()
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=1000)
        self._stop = threading.Event()
        self._signal: str | None = None  # the signal that asked to stop, logged by serve()
        self._started_at = time.monotonic()
        self._ctx = zmq.Context()
        self._router: zmq.Socket[bytes] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._worker: Stages[_Staged] = Stages(
            self._jobs, self._acquire_stage, self._infer_stage, self._deliver,
            lambda job, reason: self._error(job, reason), depth=cfg.cycle.pipeline_depth)
        self._order: deque[Job] = deque()  # accepted, verdict not yet published; in order
        self._arrivals: queue.Queue[Frame] = queue.Queue(maxsize=MAX_ARRIVALS)
        self._pairer: FramePairer | None = None  # cycle.trigger hardware, while listening
        # The line's side: CURVE, OPC UA, reload (see the module docstring).
        self.config_loader = config_loader
        self._curve: curve.ServerCurve | None = None
        self._opcua: Any = None
        self._active_lock = threading.Lock()  # cfg/inspector/calibration swapped together
        self._pending = 0  # accepted in this run, verdict not yet published
        self._submissions: queue.Queue[tuple[str | None, concurrent.futures.Future[str]]] = (
            queue.Queue(maxsize=64))
        self._reloading: tuple[list[bytes], str | None] | None = None
        self._reloads: queue.Queue[Any] = queue.Queue()
        self._frame_sizes: dict[str, tuple[int, int]] = {}
        self._exposure_pending: dict[str, dict[str, float]] = {}

    # --- life cycle -------------------------------------------------------------------------

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """Queue an event for publication (thread-safe; drops when 1000 are waiting)."""
        try:
            self._events.put_nowait((kind, data))
        except queue.Full:
            log.warning("event dropped: queue full", kind=kind)

    def bind(self) -> None:
        """Bind the PUB and ROUTER sockets; a clear error if an endpoint is taken.

        Connections that never speak ZeroMQ are closed: a ZMTP 1.0/2.0 greeting (which is
        what HTTP or random bytes look like) is refused because a ZAP domain is set, a
        handshake not completed within ``messaging.handshake_timeout_s`` is dropped, and a
        peer silent for ``messaging.heartbeat_timeout_s`` (not even answering heartbeats) is
        disconnected. Each open connection holds one file descriptor.
        """
        m = self.cfg.messaging
        pub = self._ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, m.send_hwm)
        router = self._ctx.socket(zmq.ROUTER)
        # A hard bound against memory abuse: far larger frames cut the connection; frames
        # between max_request_bytes and this get a TOO_LARGE reply.
        router.setsockopt(zmq.MAXMSGSIZE, max(16 * m.max_request_bytes, 1 << 20))
        router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        for sock in (pub, router):
            sock.setsockopt(zmq.LINGER, 500)
            sock.setsockopt(zmq.HANDSHAKE_IVL, round(m.handshake_timeout_s * 1000))
            sock.setsockopt(zmq.HEARTBEAT_IVL, round(m.heartbeat_interval_s * 1000))
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, round(m.heartbeat_timeout_s * 1000))
            sock.setsockopt(zmq.HEARTBEAT_TTL, min(round(m.heartbeat_timeout_s * 1000),
                                                   6_553_500))
            # With a ZAP domain set libzmq refuses pre-ZMTP-3 peers; with no ZAP handler in
            # the process, ZMTP 3 clients (NULL mechanism) are let in as before.
            sock.setsockopt(zmq.ZAP_DOMAIN, b"station")
        self._curve = curve.start_server_curve(self.cfg, self._ctx)
        if self._curve is not None:  # CURVE servers, each in its ZAP domain (roles differ)
            curve.make_server(router, self._curve.keys, curve.COMMAND_DOMAIN)
            curve.make_server(pub, self._curve.keys, curve.PUBLISH_DOMAIN)
            self._curve.handshakes.watch(router, curve.COMMAND_DOMAIN)
            self._curve.handshakes.watch(pub, curve.PUBLISH_DOMAIN)
            self._curve.handshakes.start()
        for warning in curve.exposure_warnings(self.cfg):
            log.warning("socket open beyond loopback", problem=warning)
        for sock, endpoint, key in ((pub, m.publish, "publish"), (router, m.command, "command")):
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                pub.close(0)
                router.close(0)
                self._stop_curve()
                raise StationError(
                    f"messaging.{key} = {endpoint!r}: cannot bind ({exc}); is another station "
                    f"running? Choose a free endpoint with --set messaging.{key}=tcp://127.0.0.1:PORT"
                ) from exc
        self._pub, self._router = pub, router
        log.info("sockets bound", publish=m.publish, command=m.command)

    def start(self) -> None:
        """Bind sockets, close what a crash interrupted, start the worker, tell systemd."""
        soft, _ = raise_fd_limit()
        self.bind()
        self._close_interrupted()
        self._start_opcua()
        if self.plant is not None:
            self.plant.start()
        self._worker.start()
        self._start_line()
        info = self.inspector.model_info
        if not info.get("trained"):
            log.warning(
                "the model is UNTRAINED: verdicts are not meaningful",
                model_id=info.get("model_id"),
            )
        self.notifier.ready(f"ready: {self.cfg.name}")
        self.publish_status()
        log.info("station ready", station=self.cfg.name, model=info.get("model_id"),
                 trained=info.get("trained"), pid=os.getpid(), data_dir=str(self.data_dir),
                 open_files_limit=soft)

    def stop(self) -> None:
        """Ask the main loop to stop (signal-safe)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the daemon cleanly.

        The handler only sets flags: it runs between two bytecodes of the main thread, which
        may be inside a log write holding the logger's lock, so logging from it could
        deadlock (it did: a SIGTERM during the "station ready" line hung the daemon).
        """

        def handler(signum: int, frame: FrameType | None) -> None:
            self._signal = signal.Signals(signum).name
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # --- the main loop ----------------------------------------------------------------------

    def serve(self) -> None:
        """Serve until stopped, then shut down in order; returns when everything is closed."""
        assert self._router is not None
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        next_status = time.monotonic() + self.cfg.messaging.status_interval_s
        while not self._stop.is_set():
            try:
                self._turn(poller)
                now = time.monotonic()
                if now >= next_status:
                    next_status = now + self.cfg.messaging.status_interval_s
                    self.publish_status()
            except Exception:  # a bug must not stop the station; a repeating one stops the
                # watchdog pings (they come last in a turn), and systemd restarts the daemon
                log.exception("main loop turn failed; serving on")
                time.sleep(POLL_MS / 1000)
        if self._signal is not None:
            log.info("signal received, stopping", signal=self._signal)
        self._shutdown(poller)

    def _turn(self, poller: zmq.Poller) -> None:
        events = dict(poller.poll(POLL_MS))
        if self._router is not None and self._router in events:
            self._read_requests(MAX_REQUESTS_PER_TURN)
        self._drain_submissions()
        self._drain_arrivals()
        self._drain_outcomes()
        self._drain_reloads()
        self._drain_events()
        self._check_cycle_timeout()
        self.notifier.watchdog()

    def _read_requests(self, limit: int) -> int:
        """Answer up to ``limit`` waiting requests; returns how many there were."""
        assert self._router is not None
        for done in range(limit):
            try:
                parts = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return done
            except zmq.ZMQError as exc:  # never seen; a socket error must not stop the loop
                log.error("command socket receive failed", error=str(exc))
                return done
            self._handle([p.bytes for p in parts], _user_id(parts))
        return limit

    def _shutdown(self, poller: zmq.Poller) -> None:
        log.info("stopping: no new triggers")
        self.notifier.stopping()
        self._stop_line()  # hardware trigger: frames still unpaired become ERROR parts
        # Queued jobs never started: each gets an ERROR verdict.
        self._fail_queued("aborted: the station is shutting down")
        try:
            self._jobs.put_nowait(None)
        except queue.Full:  # cannot happen: only this thread puts, and it just emptied it
            log.error("job queue full at shutdown")
        deadline = time.monotonic() + self.cfg.cycle.shutdown_timeout_s
        while self._worker.is_alive() and time.monotonic() < deadline:
            self._turn(poller)
            self._worker.join(0.0)
        self._drain_outcomes()
        for job in list(self._order):  # in a stage that did not finish in time
            if job.outcome is None:
                self._settle(job, self._error(
                    job, "aborted: the cycle did not finish at shutdown"))
        # Hardware closes in a helper thread; requests are answered meanwhile.
        closer = threading.Thread(target=self._close_hardware, name="close", daemon=True)
        closer.start()
        close_deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while closer.is_alive() and time.monotonic() < close_deadline:
            self._turn(poller)
            closer.join(0.0)
        if closer.is_alive():
            log.error("hardware did not close in time", limit_s=CLOSE_TIMEOUT_S)
        self.publish_status(state="stopping")
        self._drain_events()
        self._abandon_reload()
        self._final_answers(poller)
        self._stop_opcua()
        for sock in (self._router, self._pub):
            if sock is not None:
                sock.close(linger=500)
        self._stop_curve()
        self._ctx.term()
        if self.plant is not None:  # what it could not deliver stays in the outbox
            self.plant.stop()
        self.store.close()
        self.notifier.close()
        log.info("stopped")

    def _final_answers(self, poller: zmq.Poller) -> None:
        """Answer what arrives until the command socket has been quiet for FINAL_QUIET_S
        (at most FINAL_DRAIN_S), so that a request sent just before the end is answered."""
        end = time.monotonic() + FINAL_DRAIN_S
        quiet_since = time.monotonic()
        while time.monotonic() < end and time.monotonic() - quiet_since < FINAL_QUIET_S:
            events = dict(poller.poll(round(FINAL_QUIET_S * 500)))
            if (self._router is not None and self._router in events
                    and self._read_requests(MAX_REQUESTS_PER_TURN)):
                quiet_since = time.monotonic()
            self._drain_outcomes()

    def abort(self) -> None:
        """Close what ``build_daemon`` opened when start-up fails before ``serve()``."""
        self._close_hardware()
        self._stop_opcua()
        for sock in (self._router, self._pub):
            if sock is not None:
                sock.close(linger=0)
        self._stop_curve()
        self._ctx.term()
        if self.plant is not None:  # started only when start() got that far
            self.plant.stop()
        self.store.close()
        self.notifier.close()

    def _close_hardware(self) -> None:
        if self.lights is not None:
            try:
                self.lights.close()
            except Exception as exc:
                log.error("lights close failed", error=str(exc))
        if self.rig is not None:
            try:
                self.rig.close()
            except Exception as exc:
                log.error("camera close failed", error=str(exc))

    # --- requests ---------------------------------------------------------------------------

    def _send(self, envelope: list[bytes], reply: Reply) -> None:
        """Send one reply frame on ``envelope``'s route; never raises."""
        assert self._router is not None
        try:
            body = encode(reply)
        except Exception:  # encode does not raise; if it ever did, the reply still goes out
            log.exception("reply could not be encoded")
            body = FALLBACK_REPLY
        try:
            self._router.send_multipart([*envelope, body], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("reply not delivered", error=str(exc))

    def _handle(self, frames: list[bytes], user_id: str | None = None) -> None:
        """Answer one message from the command socket: exactly one reply, now or (inspect
        with ``wait``, reload) later. ``user_id``: the CURVE roles of the sender. Never
        raises."""
        try:
            incoming = read_request(frames, self.cfg.messaging.max_request_bytes)
        except Exception as exc:  # read_request does not raise (fuzzed); belt and braces
            log.exception("request parsing failed")
            self._send(frames[:1], error_reply("INTERNAL", f"{type(exc).__name__}: {exc}"))
            return
        if incoming.refusal is not None:
            err = incoming.refusal.error
            log.info("request refused", code=err.code if err else None,
                     message=err.message[:200] if err else None)
            self._send(incoming.envelope, incoming.refusal)
            return
        request = incoming.request
        assert request is not None
        try:
            forbidden = self._forbidden(request, user_id)
            reply = forbidden or self._answer(incoming.envelope, request)
        except Exception as exc:  # a bug must not take the daemon down
            log.exception("request failed")
            reply = error_reply("INTERNAL", f"{type(exc).__name__}: {exc}", request.command,
                                request.request_id)
        if reply is not None:
            self._send(incoming.envelope, reply)

    def _answer(self, envelope: list[bytes], request: Request) -> Reply | None:
        """The reply to a valid request; None when it comes later (a queued ``wait``)."""
        if isinstance(request, PingRequest):
            return ok_reply("ping", {
                "station": self.cfg.name, "pid": os.getpid(),
                "uptime_s": round(time.monotonic() - self._started_at, 3),
            }, request.request_id)
        if isinstance(request, StatusRequest):
            return ok_reply("status", self.status().model_dump(by_alias=True, mode="json"),
                            request.request_id)
        if isinstance(request, InspectRequest):
            return self._inspect(envelope, request)
        if isinstance(request, ResultRequest):
            return self._result(request)
        if isinstance(request, HistoryRequest):
            return self._history(request)
        if isinstance(request, ReloadRequest):
            return self._reload(envelope, request)
        return error_reply("INTERNAL", f"no handler for {request.command!r}", request.command,
                           request.request_id)

    def _inspect(self, envelope: list[bytes], req: InspectRequest) -> Reply | None:
        """Accept a trigger (marked in the store first) or refuse it; nothing after the job is
        queued can fail, so a queued ``wait`` job gets its verdict as its one reply."""
        if self.cfg.cycle.trigger == "hardware":
            return error_reply(
                "HARDWARE_TRIGGER",
                "this station's cameras are triggered by the line (cycle.trigger: hardware): "
                "each part is inspected when its frames arrive, and its verdict is published; "
                "inspect cannot trigger them", "inspect", req.request_id)
        if self._stop.is_set():
            return error_reply(
                "SHUTTING_DOWN", "the station is stopping and takes no new triggers",
                "inspect", req.request_id)
        if self.plant is not None and self.store.backlog() >= self.cfg.mqtt.max_backlog:
            return error_reply(
                "BACKLOG_FULL",
                f"{self.store.backlog()} verdicts wait for the plant's MQTT broker "
                f"(mqtt.max_backlog = {self.cfg.mqtt.max_backlog}); no trigger is accepted "
                "until it takes them; see `station status`", "inspect", req.request_id)
        if self._jobs.full():  # only this thread puts: not full now means the put succeeds
            return error_reply(
                "BUSY",
                f"{self.cfg.cycle.queue_depth} inspection(s) already waiting "
                "(cycle.queue_depth); trigger again after the next verdict",
                "inspect", req.request_id)
        job = Job(
            inspection_id=new_inspection_id(), part_id=req.part_id,
            envelope=envelope if req.wait else None, request_id=req.request_id,
        )
        try:
            self.store.accept(job.inspection_id, job.part_id, iso(time.time()))
        except StationError as exc:
            log.error("trigger not recorded, so not accepted", error=str(exc))
            return error_reply(
                "STORE_ERROR",
                f"the trigger could not be recorded in the inspection store ({exc}); nothing "
                "was inspected; see `station status` and the station's log",
                "inspect", req.request_id)
        self._jobs.put_nowait(job)
        self._order.append(job)
        job.counted = True
        self._pending += 1
        log.info("inspection queued", inspection_id=job.inspection_id, part_id=job.part_id)
        if req.wait:
            return None
        return ok_reply("inspect", {
            "inspection_id": job.inspection_id, "part_id": job.part_id,
            "queued": self._jobs.qsize(),
        }, req.request_id)

    def _close_interrupted(self) -> None:
        """Accepted inspections a crash left without a verdict: ERROR, recorded, published."""
        try:
            unfinished = self.store.unfinished()
        except StationError as exc:
            log.error("accepted triggers could not be read", error=str(exc))
            return
        for inspection_id, part_id, accepted_at in unfinished:
            job = Job(inspection_id=inspection_id, part_id=part_id)
            log.warning("inspection interrupted by a restart", inspection_id=inspection_id,
                        part_id=part_id, accepted_at=accepted_at)
            self._finish(job, error_outcome(
                self.cfg, inspection_id, part_id,
                f"{INTERRUPTED}: accepted at {accepted_at}, the station stopped before its "
                "verdict",
                self.inspector.model_info, self.calibration.calibration_id,
                started_at=accepted_at,
            ))

    # --- the line's side: CURVE roles, OPC UA, result, history, reload -----------------------

    def _forbidden(self, request: Request, user_id: str | None) -> Reply | None:
        """With CURVE: FORBIDDEN when the sender's roles may not send this command."""
        if self._curve is None:
            return None
        why = curve.refusal(request.command, user_id)
        if why is None:
            return None
        log.warning("command refused for the client's role", command=request.command,
                    roles=user_id)
        return error_reply("FORBIDDEN", why, request.command, request.request_id)

    def _stop_curve(self) -> None:
        if self._curve is not None:
            self._curve.stop()
            self._curve = None

    def _start_opcua(self) -> None:
        """Start the OPC UA server when configured; ``StationError`` when it cannot start."""
        if not self.cfg.opcua.enabled:
            return
        from station.opcua.server import OpcUaServer

        server = OpcUaServer(self.cfg, self.submit, self._pending_flags)
        server.start()
        self._opcua = server

    def _stop_opcua(self) -> None:
        if self._opcua is not None:
            self._opcua.stop()
            self._opcua = None

    def _pending_flags(self) -> tuple[bool, bool]:
        """(an accepted inspection has no verdict yet, triggers are accepted): for OPC UA."""
        return self._pending > 0, not self._stop.is_set()

    def submit(self, part_id: str | None) -> str:
        """A trigger from another thread (OPC UA): accepted by the main loop, one part at a
        time; returns the inspection id or raises ``TriggerRefused``."""
        from station.opcua.server import TriggerRefused

        fut: concurrent.futures.Future[str] = concurrent.futures.Future()
        try:
            self._submissions.put_nowait((part_id, fut))
        except queue.Full:
            raise TriggerRefused("BUSY", "too many triggers waiting for the station") from None
        try:
            return fut.result(timeout=SUBMIT_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            if fut.cancel():
                raise TriggerRefused(
                    "TIMEOUT", f"the station did not take the trigger within "
                    f"{SUBMIT_TIMEOUT_S:g} s") from None
            return fut.result()

    def _drain_submissions(self) -> None:
        from station.opcua.server import TriggerRefused

        while True:
            try:
                part_id, fut = self._submissions.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue  # the caller gave up waiting: not accepted
            try:
                fut.set_result(self._accept_exclusive(part_id))
            except TriggerRefused as exc:
                fut.set_exception(exc)
            except Exception as exc:  # a bug: the trigger is refused, the daemon goes on
                log.exception("OPC UA trigger failed")
                fut.set_exception(TriggerRefused("INTERNAL", f"{type(exc).__name__}: {exc}"))

    def _accept_exclusive(self, part_id: str | None) -> str:
        """Accept a trigger only when no other inspection is pending (the PLC handshake)."""
        from pydantic import ValidationError

        from station.opcua.server import TriggerRefused

        if self._stop.is_set():
            raise TriggerRefused("SHUTTING_DOWN", "the station is stopping")
        if self._pending > 0:
            raise TriggerRefused("BUSY", f"{self._pending} inspection(s) pending")
        try:
            req = InspectRequest.model_validate(
                {"command": "inspect", "part_id": part_id, "wait": False}, strict=True)
        except ValidationError as exc:
            raise TriggerRefused("BAD_PART_ID", str(exc.errors()[0]["msg"])) from exc
        reply = self._inspect([], req)
        if reply is None or not reply.ok or reply.result is None:
            code = reply.error.code if reply is not None and reply.error else "INTERNAL"
            message = reply.error.message if reply is not None and reply.error else ""
            raise TriggerRefused(code, message)
        return str(reply.result["inspection_id"])

    def _result(self, req: ResultRequest) -> Reply:
        """``result``: done (with the stored verdict header), queued or running; NOT_FOUND."""
        iid = req.inspection_id
        try:
            header = self.store.header(iid)
            accepted = header is None and self.store.is_accepted(iid)
        except StationError as exc:
            return error_reply("STORE_ERROR", str(exc), "result", req.request_id)
        if header is not None:
            return ok_reply("result", {"inspection_id": iid, "state": "done",
                                       "verdict": header}, req.request_id)
        if not accepted:
            return error_reply(
                "NOT_FOUND", f"no inspection {iid!r} was accepted by this station; ids come "
                "from the reply to inspect", "result", req.request_id)
        with self._jobs.mutex:
            queued = any(j is not None and j.inspection_id == iid for j in self._jobs.queue)
        return ok_reply("result", {"inspection_id": iid,
                                   "state": "queued" if queued else "running"}, req.request_id)

    def _history(self, req: HistoryRequest) -> Reply:
        """``history``: the newest inspections (summaries), newest first."""
        try:
            rows = self.store.history(req.limit, req.verdict, req.part_id)
        except StationError as exc:
            return error_reply("STORE_ERROR", str(exc), "history", req.request_id)
        return ok_reply("history", {"inspections": [
            {"inspection_id": r.id, "part_id": r.part_id, "verdict": r.verdict,
             "reasons": r.reasons, "started_at": r.started_at, "finished_at": r.finished_at,
             "duration_ms": r.duration_ms, "defects": len(r.defects), "model_id": r.model_id,
             "calibration_id": r.calibration_id}
            for r in rows]}, req.request_id)

    def _reload(self, envelope: list[bytes], req: ReloadRequest) -> Reply | None:
        """``reload``: prepare the new set on a helper thread; the reply comes when done."""
        if self.config_loader is None:
            return error_reply(
                "RELOAD_FAILED", "this daemon was not started from a config file it can read "
                "again; restart it to change its set", "reload", req.request_id)
        if self._stop.is_set():
            return error_reply("SHUTTING_DOWN", "the station is stopping", "reload",
                               req.request_id)
        if self._reloading is not None:
            return error_reply("BUSY", "a reload is already running; wait for its reply",
                               "reload", req.request_id)
        self._reloading = (envelope, req.request_id)
        serials = {h.name: h.serial for h in self.rig.health()} if self.rig is not None else None
        folders = self._curve.folders if self._curve is not None else None
        with self._active_lock:
            running, cal_id = self.cfg, self.calibration.calibration_id
        loader = self.config_loader
        sizes = dict(self._frame_sizes)

        def prepare() -> None:
            from station.reload import prepare as build

            try:
                result: Any = build(
                    loader, running, cal_id, self.data_dir, serials, sizes,
                    None if folders is None else (lambda: curve.load_role_keys(folders)))
            except Exception as exc:  # every failure is a refused reload, never a crash
                result = exc
            self._reloads.put(result)

        log.info("reload requested")
        threading.Thread(target=prepare, name="reload", daemon=True).start()
        return None

    def _drain_reloads(self) -> None:
        """Swap in a prepared set (between cycles) and answer the reload, or refuse it."""
        from station.reload import Prepared

        try:
            result = self._reloads.get_nowait()
        except queue.Empty:
            return
        pending, self._reloading = self._reloading, None
        envelope, request_id = pending if pending is not None else ([], None)
        if not isinstance(result, Prepared):
            info = self.inspector.model_info
            reason = (str(result) if isinstance(result, StationError)
                      else f"{type(result).__name__}: {result}")
            log.error("reload refused; the running set stays in force", reason=reason)
            if envelope:
                self._send(envelope, error_reply(
                    "RELOAD_FAILED", f"{reason}; the running set stays in force (model "
                    f"{info.get('model_id')}, calibration {self.calibration.calibration_id})",
                    "reload", request_id))
            return
        with self._active_lock:
            self.cfg = result.cfg
            self.inspector = result.inspector
            self.calibration = result.calibration
            self.calibration_info = result.calibration_info
            self._exposure_pending = result.exposure
        if result.keys is not None and self._curve is not None:
            self._curve.authenticator.set_keys(result.keys)
        summary = result.summary()
        log.info("reloaded", model=summary["model"]["model_id"],
                 calibration=summary["calibration_id"], warm_up_ms=summary["warm_up_ms"],
                 restart_needed=summary["restart_needed"])
        self.event("reloaded", {"model_id": summary["model"]["model_id"],
                                "calibration_id": summary["calibration_id"]})
        if envelope:
            self._send(envelope, ok_reply("reload", summary, request_id))
        self.publish_status()

    def _apply_exposure(self, exposure: dict[str, dict[str, float]]) -> None:
        """On the cycle thread: a reloaded calibration's exposure and gain onto the cameras."""
        if not exposure or self.rig is None:
            return
        for cam in self.rig.cameras:
            for node, value in exposure.get(cam.name, {}).items():
                try:
                    cam.set_feature(node, value)
                    log.info("calibrated feature applied", camera=cam.name, node=node,
                             value=value)
                except StationError as exc:
                    log.warning("calibrated feature not applied", camera=cam.name, node=node,
                                error=str(exc))

    def _abandon_reload(self) -> None:
        """At shutdown: a reload still preparing gets its one reply."""
        if self._reloading is not None:
            envelope, request_id = self._reloading
            self._reloading = None
            self._send(envelope, error_reply(
                "SHUTTING_DOWN", "the station stopped before the reload was ready; nothing "
                "changed", "reload", request_id))

    # --- the cycle stages -------------------------------------------------------------------

    def _acquire_stage(self, job: Job) -> _Staged:
        """On the acquisition thread: the set in force now (a reload swaps it between parts;
        the part keeps this one to its verdict), then lights, cameras, checks, previews."""
        with self._active_lock:
            cfg, inspector, calibration = self.cfg, self.inspector, self.calibration
            exposure, self._exposure_pending = self._exposure_pending, {}
        self._apply_exposure(exposure)
        part = acquire_part(cfg, job.inspection_id, job.part_id, self.lights, self._acquirer(),
                            calibration, line=job.line)
        return cfg, inspector, calibration, part

    def _infer_stage(self, job: Job, staged: _Staged) -> Outcome:
        """On the inference thread: the pipeline on an acquired part."""
        cfg, inspector, calibration, part = staged
        part.timings["wait"] = round(job.waited * 1000, 3)  # between the stages
        return inspect_part(cfg, part, inspector, calibration)

    def _deliver(self, job: Job, outcome: Outcome) -> None:
        """On the inference thread, in trigger order: the cycle's events, then the outcome."""
        for kind, data in outcome.events:
            self.event(kind, data)
        self._outcomes.put((job, outcome))

    def _acquirer(self) -> Acquirer | None:
        return self.rig

    def _error(self, job: Job, reason: str) -> Outcome:
        return error_outcome(
            self.cfg, job.inspection_id, job.part_id, reason, self.inspector.model_info,
            self.calibration.calibration_id,
        )

    def _settle(self, job: Job, outcome: Outcome, own: bool = False) -> None:
        """Answer ``job`` (once: a second answer is ignored); it is published when every job
        accepted before it is. ``own``: the outcome its stages made; otherwise the stages'
        late result will be discarded."""
        if job.outcome is not None:
            return
        if not own:
            job.abandoned = True
        job.outcome = outcome
        self._release()

    def _release(self) -> None:
        """Record, publish and answer the answered jobs at the head of the order."""
        while self._order and self._order[0].outcome is not None:
            job = self._order.popleft()
            assert job.outcome is not None
            self._finish(job, job.outcome)

    @property
    def _stuck_cycles(self) -> int:
        """Cycles answered for exceeding cycle.cycle_timeout_s whose stage has not returned."""
        return sum(1 for job in self._worker.working() if job.timed_out)

    def _fail_queued(self, reason: str) -> None:
        """Answer every job still waiting in the queue as ERROR (the sentinel stays)."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:  # the shutdown sentinel: put back for the worker
                self._jobs.put_nowait(None)
                return
            self._settle(job, self._error(job, reason))

    def _check_cycle_timeout(self) -> None:
        """Answer a part over cycle.cycle_timeout_s in the stages (the wait between them not
        counted) as ERROR; while its stage has not returned, every part behind it too."""
        limit = self.cfg.cycle.cycle_timeout_s
        now = time.monotonic()
        working = self._worker.working()
        for job in working:
            elapsed = self._worker.elapsed(job, now)
            if job.outcome is None and elapsed is not None and elapsed > limit:
                job.timed_out = True
                log.error("cycle timed out", inspection_id=job.inspection_id, limit_s=limit)
                self._settle(job, self._error(
                    job, f"cycle took longer than cycle.cycle_timeout_s = {limit:g} s"))
        stuck = next((job for job in working if job.timed_out), None)
        if stuck is None:
            return
        # The stage holding it is stuck: nothing behind it would ever finish.
        why = (f"the previous cycle is stuck (over cycle.cycle_timeout_s = {limit:g} s) and "
               "has not returned")
        self._fail_queued(f"not run: {why}")
        behind = stuck not in self._order  # answered and published: all that is left is later
        for job in list(self._order):
            if job is stuck:
                behind = True
            elif behind and job.outcome is None:
                self._settle(job, self._error(
                    job, f"not finished: {why}" if job.started is not None else f"not run: {why}"))

    def _drain_outcomes(self) -> None:
        while True:
            try:
                job, outcome = self._outcomes.get_nowait()
            except queue.Empty:
                return
            if job.abandoned:
                log.warning("late result of an abandoned cycle discarded",
                            inspection_id=job.inspection_id)
                continue
            self._settle(job, outcome, own=True)

    # --- hardware trigger: frames from the line, paired into parts ----------------------------

    def _start_line(self) -> None:
        """cycle.trigger hardware: listen to every camera and pair what arrives."""
        if self.cfg.cycle.trigger != "hardware":
            return
        if self.rig is None:
            log.error("cycle.trigger is hardware but the cameras are not open: no part will "
                      "be inspected")
            return
        c = self.cfg.cycle
        self._pairer = FramePairer([cam.name for cam in self.cfg.cameras],
                                   round(c.pair_window_ms * 1e6), round(c.pair_timeout_ms * 1e6))
        self.rig.listen(self._arrived)

    def _arrived(self, frame: Frame) -> None:
        """On a camera's listener thread: a frame for the main thread to pair."""
        try:
            self._arrivals.put_nowait(frame)
        except queue.Full:  # its part becomes an ERROR (missing partner), never silent
            log.error("frame dropped: the main loop did not take the arrivals in time",
                      camera=frame.camera, frame_id=frame.frame_id)

    def _drain_arrivals(self, final: bool = False) -> None:
        """Pair the frames that arrived; queue every decided set as a part (``final``: all
        that wait, at shutdown)."""
        pairer = self._pairer
        if pairer is None:
            return
        while True:
            try:
                frame = self._arrivals.get_nowait()
            except queue.Empty:
                break
            try:
                pairer.offer(frame)
            except ValueError as exc:
                log.error("frame from an unknown camera dropped", error=str(exc))
        for fs in pairer.flush() if final else pairer.ready(time.time_ns()):
            self._accept_line(fs)

    def _accept_line(self, fs: FrameSet) -> None:
        """One part the line triggered: an inspection id, marked in the store, queued; an
        ERROR at once when the queue is full or the station stops (in trigger order)."""
        job = Job(inspection_id=new_inspection_id(), part_id=None, line=fs)
        try:
            self.store.accept(job.inspection_id, None, iso(fs.first_arrival_ns / 1e9))
        except StationError as exc:  # it is inspected and published all the same
            log.error("line-triggered part not marked in the store", error=str(exc))
        self._order.append(job)
        job.counted = True
        self._pending += 1
        log.info("line-triggered part", inspection_id=job.inspection_id,
                 frames={f.camera: f.frame_id for f in fs.frames},
                 skew_ms=None if fs.skew_ns is None else round(fs.skew_ns / 1e6, 3),
                 problem=fs.reason)
        if self._stop.is_set():
            self._settle(job, self._error(job, "aborted: the station is shutting down"))
        elif self._jobs.full():  # only this thread puts
            self._settle(job, self._error(
                job, f"not inspected: {self.cfg.cycle.queue_depth} part(s) already waiting "
                "(cycle.queue_depth); the line triggers faster than the station inspects"))
        else:
            self._jobs.put_nowait(job)

    def _stop_line(self) -> None:
        """At shutdown: stop listening; frames still waiting become parts (aborted)."""
        if self._pairer is None:
            return
        if self.rig is not None:
            self.rig.stop_listening()
        self._drain_arrivals(final=True)
        self._pairer = None

    def _finish(self, job: Job, outcome: Outcome) -> None:
        """Record, publish and answer one finished (or aborted) inspection."""
        header = outcome.header.model_dump(by_alias=True, mode="json")
        paths: dict[str, str] = {}
        if self.cfg.storage.keep_defect_maps:
            for cam, png in outcome.maps.items():
                try:
                    paths[cam] = self.store.write_map(
                        job.inspection_id, header["started_at"], cam, png)
                except StationError as exc:
                    log.error("defect map not stored", error=str(exc))
        for cam, jpeg in outcome.previews.items():  # the HMI's pictures (storage.preview_px)
            try:
                self.store.write_map(job.inspection_id, header["started_at"], cam, jpeg, ".jpg")
            except StationError as exc:
                log.error("frame preview not stored", error=str(exc))
        try:
            self.store.record(header, paths)
        except StationError as exc:
            log.error("inspection not recorded", error=str(exc))
        self._publish("verdict", header, [outcome.maps[c] for c in outcome.header.maps])
        log.info("verdict", inspection_id=job.inspection_id, part_id=job.part_id,
                 verdict=header["verdict"], reasons=header["reasons"],
                 duration_ms=header["duration_ms"])
        if job.envelope is not None:
            self._send(job.envelope, ok_reply("inspect", header, job.request_id))
        for cam in header.get("cameras", []):
            if cam.get("width") and cam.get("height"):
                self._frame_sizes[cam["camera"]] = (int(cam["height"]), int(cam["width"]))
        if job.counted:
            job.counted = False
            self._pending -= 1
        if self._opcua is not None:
            self._opcua.publish_verdict(header, self.store.counts(), self._pending > 0)

    # --- publishing -------------------------------------------------------------------------

    def _publish(self, topic: str, header: dict[str, Any], parts: Sequence[bytes] = ()) -> None:
        assert self._pub is not None
        try:
            self._pub.send_multipart([topic.encode(), jsonio.dumps(header), *parts])
        except zmq.ZMQError as exc:
            log.warning("publish failed", topic=topic, error=str(exc))

    def _drain_events(self) -> None:
        while True:
            try:
                kind, data = self._events.get_nowait()
            except queue.Empty:
                return
            if kind == "camera_recovered" and self._pairer is not None:
                self._pairer.resync()  # its frame counter restarted with the reopen
            # whatever a driver put in, the event goes out as plain JSON
            data = json.loads(jsonio.dumps(data)) if isinstance(data, dict) else {
                "value": json.loads(jsonio.dumps(data))}
            msg = EventMessage(
                station=self.cfg.name, kind=str(kind),
                time=datetime.now(UTC).isoformat(timespec="milliseconds"), data=data,
            )
            log.info("event", event_kind=kind, **{k: v for k, v in data.items()
                                                  if k not in ("kind", "event")})
            self._publish("event", msg.model_dump(by_alias=True, mode="json"))

    def status(self, state: str | None = None) -> StatusMessage:
        """The station's status now."""
        problems: list[str] = []
        info = dict(self.inspector.model_info)
        if not info.get("trained"):
            problems.append(f"model {info.get('model_id')} is untrained: verdicts mean nothing")
        cams: list[dict[str, Any]] = []
        if self.rig is not None:
            for h in self.rig.health():
                cams.append(_plain(h))
                if not h.connected:
                    problems.append(f"camera {h.name} not connected: {h.detail}")
        else:
            problems.append("cameras are not open")
        lights: dict[str, Any] = {"backend": "none"}
        if self.lights is not None:
            lh = self.lights.health()
            lights = _plain(lh)
            if not lh.connected and lh.backend != "none":
                problems.append(f"lights not connected: {lh.detail}")
            if lh.fault:
                problems.append(f"lights may be on: {lh.fault}; the guard keeps switching "
                                "them off")
        problems.extend(self.calibration.refuse_reasons)
        problems.extend(self.calibration_info.get("warnings", []))
        problems.extend(curve.exposure_warnings(self.cfg))
        if self._stuck_cycles:
            problems.append("a cycle exceeded cycle.cycle_timeout_s and has not returned")
        outbox = None
        if self.plant is not None:
            outbox = self.plant.health()
            problems.extend(self.plant.problems(outbox))
        if state is None:
            state = "stopping" if self._stop.is_set() else ("degraded" if problems else "ready")
        return StatusMessage(
            station=self.cfg.name, state=state,
            problems=problems,
            uptime_s=round(time.monotonic() - self._started_at, 3), pid=os.getpid(),
            counts=self.store.counts(),
            queue={"waiting": self._jobs.qsize(), "depth": self.cfg.cycle.queue_depth,
                   "in_flight": len(self._worker.working()),
                   "between_stages": self._worker.between()},
            model=info, cameras=cams, lights=lights, data_dir=str(self.data_dir),
            calibration={"calibration_id": self.calibration.calibration_id,
                         **self.calibration_info},
            outbox=outbox,
        )

    def publish_status(self, state: str | None = None) -> None:
        """Publish the status on topic ``status`` and as the systemd STATUS line."""
        st = self.status(state)
        data = st.model_dump(by_alias=True, mode="json")
        self._publish("status", data)
        if self._opcua is not None:
            self._opcua.publish_status(data)
        if self.plant is not None:
            self.plant.offer_status(data)
        self.notifier.status(f"{st.state}; " + ("; ".join(st.problems) or "no problems"))


def _user_id(parts: list[zmq.Frame]) -> str | None:
    """The ZAP user id (CURVE roles) a message arrived with; None without CURVE."""
    try:
        value = parts[-1].get("User-Id") if parts else None
    except zmq.ZMQError:  # no such property: the connection was not authenticated
        return None
    return value if isinstance(value, str) and value else None


def _publisher(cfg: StationConfig, store: Store, data_dir: Path) -> Publisher:
    """The outbox's sender; ``ConfigError`` when the optional extra ``mqtt`` is missing."""
    from station.plant import extra_missing

    try:
        from station.plant.publisher import Publisher
    except ImportError as exc:
        raise extra_missing(exc) from None
    return Publisher(cfg, store, data_dir)


def _plain(obj: Any) -> dict[str, Any]:
    """A dataclass (health record) as JSON-friendly data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = dataclasses.asdict(obj)
        return {k: (dict((str(a), b) for a, b in v.items()) if isinstance(v, dict) else v)
                for k, v in data.items()}
    return dict(obj)

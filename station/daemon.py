"""The daemon: sockets in the main thread, the inspection cycle in one worker thread.

Threads and who owns what:
- main thread: every ZeroMQ socket (they are not thread-safe), the systemd watchdog pings,
  the periodic status, publishing, recording, replies. It never blocks on acquisition or
  inference: it polls the command socket every ``POLL_MS``.
- cycle worker: takes inspection jobs from a bounded queue (``cycle.queue_depth``) and runs
  ``station.cycle.run_cycle``; outcomes come back on a queue the main thread drains.
- driver threads (camera rig, light guard): report events through a queue the main thread
  drains and publishes on topic ``event``.

A trigger that finds the job queue full is answered ``BUSY``; it is never dropped in silence.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
import zmq

from config import StationConfig
from config.errors import StationError
from drivers.lights.base import Luminaires
from station.cycle import (
    Acquirer,
    CalibrationState,
    Inspects,
    Outcome,
    error_outcome,
    new_inspection_id,
    run_cycle,
)
from station.health import Notifier
from station.messaging.requests import encode, error_reply, ok_reply, parse_request
from station.messaging.wire import (
    EventMessage,
    InspectRequest,
    PingRequest,
    Reply,
    StatusMessage,
    StatusRequest,
)
from station.store import Store

log = structlog.get_logger(__name__)

POLL_MS = 20
MAX_REQUESTS_PER_TURN = 64


@dataclass
class Job:
    """One inspection waiting for, or in, the cycle."""

    inspection_id: str
    part_id: str | None
    envelope: list[bytes] | None = None  # reply route, when the requester waits
    request_id: str | None = None
    started: float | None = None  # monotonic, set by the worker
    abandoned: bool = False


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
    ) -> None:
        self.cfg = cfg
        self.data_dir = data_dir
        self.inspector = inspector
        self.rig = rig
        self.lights = lights
        self.calibration = calibration or CalibrationState()
        self.calibration_info = calibration_info or {}
        self.notifier = notifier or Notifier()
        self.store = Store(data_dir, cfg.storage.max_disk_mb)
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=cfg.cycle.queue_depth)
        self._outcomes: queue.Queue[tuple[Job, Outcome]] = queue.Queue()
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=1000)
        self._stop = threading.Event()
        self._in_flight: Job | None = None
        self._in_flight_lock = threading.Lock()
        self._started_at = time.monotonic()
        self._ctx = zmq.Context()
        self._router: zmq.Socket[bytes] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._worker = threading.Thread(target=self._work, name="cycle", daemon=True)
        self._stuck_cycles = 0

    # --- life cycle -------------------------------------------------------------------------

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """Queue an event for publication (thread-safe; drops when 1000 are waiting)."""
        try:
            self._events.put_nowait((kind, data))
        except queue.Full:
            log.warning("event dropped: queue full", kind=kind)

    def bind(self) -> None:
        """Bind the PUB and ROUTER sockets; a clear error if an endpoint is taken."""
        m = self.cfg.messaging
        pub = self._ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 500)
        pub.setsockopt(zmq.SNDHWM, m.send_hwm)
        router = self._ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 500)
        # A hard bound against memory abuse: far larger frames cut the connection; frames
        # between max_request_bytes and this get a TOO_LARGE reply.
        router.setsockopt(zmq.MAXMSGSIZE, max(16 * m.max_request_bytes, 1 << 20))
        router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        for sock, endpoint, key in ((pub, m.publish, "publish"), (router, m.command, "command")):
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                pub.close(0)
                router.close(0)
                raise StationError(
                    f"messaging.{key} = {endpoint!r}: cannot bind ({exc}); is another station "
                    f"running? Choose a free endpoint with --set messaging.{key}=tcp://127.0.0.1:PORT"
                ) from exc
        self._pub, self._router = pub, router
        log.info("sockets bound", publish=m.publish, command=m.command)

    def start(self) -> None:
        """Bind sockets, start the worker, tell systemd we are ready."""
        self.bind()
        self._worker.start()
        info = self.inspector.model_info
        if not info.get("trained"):
            log.warning(
                "the model is UNTRAINED: verdicts are not meaningful",
                model_id=info.get("model_id"),
            )
        self.notifier.ready(f"ready: {self.cfg.name}")
        self.publish_status()
        log.info("station ready", station=self.cfg.name, model=info.get("model_id"),
                 trained=info.get("trained"), pid=os.getpid())

    def stop(self) -> None:
        """Ask the main loop to stop (signal-safe)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the daemon cleanly."""

        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal received, stopping", signal=signal.Signals(signum).name)
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
            self._turn(poller)
            now = time.monotonic()
            if now >= next_status:
                self.publish_status()
                next_status = now + self.cfg.messaging.status_interval_s
        self._shutdown(poller)

    def _turn(self, poller: zmq.Poller) -> None:
        events = dict(poller.poll(POLL_MS))
        if self._router is not None and self._router in events:
            for _ in range(MAX_REQUESTS_PER_TURN):
                try:
                    frames = self._router.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._handle(frames)
        self._drain_outcomes()
        self._drain_events()
        self._check_cycle_timeout()
        self.notifier.watchdog()

    def _shutdown(self, poller: zmq.Poller) -> None:
        log.info("stopping: no new triggers")
        self.notifier.stopping()
        # Queued jobs never started: each gets an ERROR verdict.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._finish(job, self._error(job, "aborted: the station is shutting down"))
        self._jobs.put(None)
        deadline = time.monotonic() + self.cfg.cycle.shutdown_timeout_s
        while self._worker.is_alive() and time.monotonic() < deadline:
            self._turn(poller)
            self._worker.join(0.0)
        self._drain_outcomes()
        with self._in_flight_lock:
            job = self._in_flight
        if self._worker.is_alive() and job is not None and not job.abandoned:
            job.abandoned = True
            self._finish(job, self._error(job, "aborted: the cycle did not finish at shutdown"))
        self._close_hardware()
        self.publish_status(state="stopping")
        self._drain_events()
        for sock in (self._router, self._pub):
            if sock is not None:
                sock.close(linger=200)
        self._ctx.term()
        self.store.close()
        self.notifier.close()
        log.info("stopped")

    def abort(self) -> None:
        """Close what ``build_daemon`` opened when start-up fails before ``serve()``."""
        self._close_hardware()
        for sock in (self._router, self._pub):
            if sock is not None:
                sock.close(linger=0)
        self._ctx.term()
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
        assert self._router is not None
        try:
            self._router.send_multipart([*envelope, encode(reply)], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.warning("reply not delivered", error=str(exc))

    def _handle(self, frames: list[bytes]) -> None:
        # REQ clients: [identity, b"", body]; DEALER clients: [identity, body].
        if b"" in frames[1:]:
            split = len(frames) - 1 - frames[::-1].index(b"")
            envelope, body = frames[: split + 1], frames[split + 1 :]
        else:
            envelope, body = frames[:1], frames[1:]
        if len(body) != 1:
            self._send(envelope, error_reply(
                "BAD_REQUEST", f"a request is one JSON frame; got {len(body)} frames"))
            return
        parsed = parse_request(body[0], self.cfg.messaging.max_request_bytes)
        if isinstance(parsed, Reply):
            log.info("request refused", code=parsed.error.code if parsed.error else None)
            self._send(envelope, parsed)
            return
        try:
            if isinstance(parsed, PingRequest):
                self._send(envelope, ok_reply("ping", {
                    "station": self.cfg.name, "pid": os.getpid(),
                    "uptime_s": round(time.monotonic() - self._started_at, 3),
                }, parsed.request_id))
            elif isinstance(parsed, StatusRequest):
                self._send(envelope, ok_reply(
                    "status", self.status().model_dump(by_alias=True, mode="json"),
                    parsed.request_id))
            elif isinstance(parsed, InspectRequest):
                self._inspect(envelope, parsed)
        except Exception as exc:  # a bug must not take the daemon down
            log.exception("request failed")
            self._send(envelope, error_reply(
                "INTERNAL", f"{type(exc).__name__}: {exc}", parsed.command, parsed.request_id))

    def _inspect(self, envelope: list[bytes], req: InspectRequest) -> None:
        if self._stop.is_set():
            self._send(envelope, error_reply(
                "SHUTTING_DOWN", "the station is stopping and takes no new triggers",
                "inspect", req.request_id))
            return
        job = Job(
            inspection_id=new_inspection_id(), part_id=req.part_id,
            envelope=envelope if req.wait else None, request_id=req.request_id,
        )
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            self._send(envelope, error_reply(
                "BUSY",
                f"{self.cfg.cycle.queue_depth} inspection(s) already waiting "
                "(cycle.queue_depth); trigger again after the next verdict",
                "inspect", req.request_id))
            return
        log.info("inspection queued", inspection_id=job.inspection_id, part_id=job.part_id)
        if not req.wait:
            self._send(envelope, ok_reply("inspect", {
                "inspection_id": job.inspection_id, "part_id": job.part_id,
                "queued": self._jobs.qsize(),
            }, req.request_id))

    # --- the cycle worker -------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job.started = time.monotonic()
            with self._in_flight_lock:
                self._in_flight = job
            try:
                outcome = run_cycle(
                    self.cfg, job.inspection_id, job.part_id, self.lights, self._acquirer(),
                    self.inspector, self.calibration,
                )
            except Exception as exc:  # run_cycle should not raise; if it does: ERROR
                log.exception("cycle crashed", inspection_id=job.inspection_id)
                outcome = self._error(job, f"internal error: {type(exc).__name__}: {exc}")
            with self._in_flight_lock:
                self._in_flight = None
            self._outcomes.put((job, outcome))

    def _acquirer(self) -> Acquirer | None:
        return self.rig

    def _error(self, job: Job, reason: str) -> Outcome:
        return error_outcome(
            self.cfg, job.inspection_id, job.part_id, reason, self.inspector.model_info,
            self.calibration.calibration_id,
        )

    def _check_cycle_timeout(self) -> None:
        with self._in_flight_lock:
            job = self._in_flight
        if job is None or job.abandoned or job.started is None:
            return
        if time.monotonic() - job.started > self.cfg.cycle.cycle_timeout_s:
            job.abandoned = True
            self._stuck_cycles += 1
            log.error("cycle timed out", inspection_id=job.inspection_id,
                      limit_s=self.cfg.cycle.cycle_timeout_s)
            self._finish(job, self._error(
                job, f"cycle took longer than cycle.cycle_timeout_s = "
                f"{self.cfg.cycle.cycle_timeout_s:g} s"))

    def _drain_outcomes(self) -> None:
        while True:
            try:
                job, outcome = self._outcomes.get_nowait()
            except queue.Empty:
                return
            if job.abandoned:
                self._stuck_cycles = max(0, self._stuck_cycles - 1)
                log.warning("late result of an abandoned cycle discarded",
                            inspection_id=job.inspection_id)
                continue
            self._finish(job, outcome)

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

    # --- publishing -------------------------------------------------------------------------

    def _publish(self, topic: str, header: dict[str, Any], parts: Sequence[bytes] = ()) -> None:
        assert self._pub is not None
        try:
            self._pub.send_multipart([topic.encode(), json.dumps(header).encode(), *parts])
        except zmq.ZMQError as exc:
            log.warning("publish failed", topic=topic, error=str(exc))

    def _drain_events(self) -> None:
        while True:
            try:
                kind, data = self._events.get_nowait()
            except queue.Empty:
                return
            msg = EventMessage(
                station=self.cfg.name, kind=kind,
                time=datetime.now(UTC).isoformat(timespec="milliseconds"), data=data,
            )
            log.info("event", kind=kind, **{k: v for k, v in data.items() if k != "kind"})
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
        problems.extend(self.calibration.refuse_reasons)
        problems.extend(self.calibration_info.get("warnings", []))
        if self._stuck_cycles:
            problems.append("a cycle exceeded cycle.cycle_timeout_s and has not returned")
        if state is None:
            state = "stopping" if self._stop.is_set() else ("degraded" if problems else "ready")
        return StatusMessage(
            station=self.cfg.name, state=state,
            problems=problems,
            uptime_s=round(time.monotonic() - self._started_at, 3), pid=os.getpid(),
            counts=self.store.counts(),
            queue={"waiting": self._jobs.qsize(), "depth": self.cfg.cycle.queue_depth,
                   "in_flight": int(self._in_flight is not None)},
            model=info, cameras=cams, lights=lights,
            calibration={"calibration_id": self.calibration.calibration_id,
                         **self.calibration_info},
        )

    def publish_status(self, state: str | None = None) -> None:
        """Publish the status on topic ``status`` and as the systemd STATUS line."""
        st = self.status(state)
        self._publish("status", st.model_dump(by_alias=True, mode="json"))
        self.notifier.status(f"{st.state}; " + ("; ".join(st.problems) or "no problems"))


def _plain(obj: Any) -> dict[str, Any]:
    """A dataclass (health record) as JSON-friendly data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data = dataclasses.asdict(obj)
        return {k: (dict((str(a), b) for a, b in v.items()) if isinstance(v, dict) else v)
                for k, v in data.items()}
    return dict(obj)

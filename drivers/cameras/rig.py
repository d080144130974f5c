"""The camera rig: every camera of the booth, triggered and grabbed together, kept alive.

* ``acquire()`` triggers and grabs all cameras concurrently (one thread each, a per-camera
  timeout, one retry on an incomplete frame) and records the skew between the frames'
  host timestamps in each frame's ``extra`` (``skew_ns``, ``skew_clock``; ``device_skew_ns``
  when every camera has a device clock) and in ``last_skew_ns``.
* A camera that fails to open, reports ``CameraLost`` or times out ``lost_after_timeouts``
  times in a row is *lost*: ``on_event('camera_lost', ...)`` fires once, and a supervisor
  thread reopens it with bounded exponential backoff (``camera_recovered`` when it is back).
  While a camera is lost, ``acquire()`` raises ``CameraLost`` at once, naming it.
* Every wait is bounded: the caller's thread never hangs on a camera.
* ``listen(on_frame)`` is the other way to get frames, for cameras a line triggers
  (``cycle.trigger: hardware``): one thread per camera grabs whatever arrives, in slices of
  ``slice_s`` (a slice without a frame is no fault: no part came), and hands every frame to
  ``on_frame`` as it arrives; ``drivers.cameras.pairing`` makes parts of them. Faults other
  than an empty slice count as in ``acquire()`` (a lost camera is reopened, then listened to
  again).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from config.errors import CameraError, CameraLost, CameraTimeout, IncompleteFrame
from drivers.backoff import Backoff
from drivers.cameras.base import Camera, CameraHealth
from drivers.frame import Frame

log = structlog.get_logger(__name__)

EventCallback = Callable[[str, dict[str, object]], None]
FrameCallback = Callable[[Frame], None]


@dataclasses.dataclass
class _Slot:
    """The rig's book-keeping for one camera."""

    camera: Camera
    backoff: Backoff
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    connected: bool = False
    lost_since: float = 0.0
    lost_reason: str = ""
    next_try: float = 0.0
    attempts: int = 0
    consecutive_timeouts: int = 0
    frames: int = 0
    errors: int = 0
    reconnects: int = 0
    last_error: str = ""


class CameraRig:
    """All cameras of the station, acquired together, reconnected in the background."""

    def __init__(
        self,
        cameras: Sequence[Camera],
        on_event: EventCallback | None = None,
        reconnect_backoff_s: float = 0.5,
        reconnect_backoff_max_s: float = 10.0,
        lost_after_timeouts: int = 2,
        monitor_interval_s: float = 0.25,
        open_timeout_s: float = 60.0,
        close_timeout_s: float = 5.0,
        grab_margin_s: float = 1.0,
    ) -> None:
        """``cameras`` are not opened yet (``open()`` does it).

        ``reconnect_backoff_s`` is the first wait after a loss, doubled after every failed
        reopen up to ``reconnect_backoff_max_s`` [s]. ``lost_after_timeouts`` consecutive
        timeouts declare a camera lost. ``monitor_interval_s`` is how often the supervisor
        checks liveness and due reconnects [s]. ``grab_margin_s`` is added to a camera's own
        bounded wait before the rig gives up on it [s].
        """
        names = [c.name for c in cameras]
        if len(set(names)) != len(names):
            raise ValueError(f"camera names must be unique, got {names}")
        if not cameras:
            raise ValueError("a CameraRig needs at least one camera")
        self._slots = [_Slot(camera=c, backoff=Backoff(reconnect_backoff_s,
                                                       reconnect_backoff_max_s))
                       for c in cameras]
        self._on_event = on_event
        self._lost_after = max(1, lost_after_timeouts)
        self._interval = monitor_interval_s
        self._open_timeout = open_timeout_s
        self._close_timeout = close_timeout_s
        self._margin = grab_margin_s
        self._state = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._opened = False
        self._pool = cf.ThreadPoolExecutor(
            max_workers=2 * len(cameras) + 1, thread_name_prefix="camera-rig"
        )
        self._supervisor: threading.Thread | None = None
        self._listeners: list[threading.Thread] = []
        self._listen_stop = threading.Event()
        #: Skew between the frames of the last ``acquire()`` [ns], and the clock it used.
        self.last_skew_ns: int | None = None
        self.last_skew_clock: str | None = None

    @property
    def cameras(self) -> list[Camera]:
        """The cameras, in the order given."""
        return [s.camera for s in self._slots]

    # -- life cycle ---------------------------------------------------------------------

    def open(self) -> None:
        """Open every camera concurrently; one that fails is reported lost and retried."""
        if self._closed:
            raise CameraError("camera rig: open() after close()")
        if self._opened:
            return
        self._opened = True
        futures = {self._pool.submit(self._open_one, s): s for s in self._slots}
        done, _ = cf.wait(futures, timeout=self._open_timeout)
        for fut, slot in futures.items():
            if fut not in done:
                self._mark_lost(slot, f"open did not finish within {self._open_timeout:.0f} s")
                continue
            exc = fut.exception()
            if exc is not None:
                self._mark_lost(slot, f"open failed: {exc}")
        self._supervisor = threading.Thread(
            target=self._supervise, name="camera-rig-supervisor", daemon=True
        )
        self._supervisor.start()
        log.info("camera_rig_opened", cameras=[s.camera.name for s in self._slots],
                 connected=[s.camera.name for s in self._slots if s.connected])

    def _open_one(self, slot: _Slot) -> None:
        with slot.lock:
            slot.camera.open()
        with self._state:
            slot.connected = True

    def close(self) -> None:
        """Stop the supervisor and close every camera, in bounded time; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        deadline = time.monotonic() + self._close_timeout
        self.stop_listening(max(0.0, deadline - time.monotonic()))
        if self._supervisor is not None:
            self._supervisor.join(timeout=max(0.0, deadline - time.monotonic()))
        futures = [self._pool.submit(self._close_one, s) for s in self._slots]
        cf.wait(futures, timeout=max(0.1, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        log.info("camera_rig_closed")

    def _close_one(self, slot: _Slot) -> None:
        got = slot.lock.acquire(timeout=self._close_timeout)
        try:
            slot.camera.close()
        except Exception as exc:  # closing must not raise: log and go on
            log.warning("camera_close_failed", camera=slot.camera.name, error=str(exc))
        finally:
            if got:
                slot.lock.release()
            with self._state:
                slot.connected = False

    def __enter__(self) -> CameraRig:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- acquisition ----------------------------------------------------------------------

    def acquire(self, timeout_s: float | None = None) -> list[Frame]:
        """Trigger all cameras, grab all concurrently; frames in camera order.

        ``timeout_s`` overrides each camera's own timeout (``timeout_s`` attribute, from the
        config). Raises a ``CameraError`` subclass naming the camera(s) on any failure: the
        type of the first failure, the message of all.
        """
        if self._closed or not self._opened:
            raise CameraError("camera rig: acquire() needs open() first and no close()")
        with self._state:
            down = [s for s in self._slots if not s.connected]
            if down:
                now = time.monotonic()
                raise CameraLost("; ".join(
                    f"camera {s.camera.name} is not connected ({s.lost_reason}; lost "
                    f"{now - s.lost_since:.1f} s ago, next reconnect attempt in "
                    f"{max(0.0, s.next_try - now):.1f} s)" for s in down
                ))
        timeouts = [timeout_s if timeout_s is not None else _camera_timeout(s.camera)
                    for s in self._slots]
        started = time.monotonic()
        futures = [self._pool.submit(self._acquire_one, s, t)
                   for s, t in zip(self._slots, timeouts, strict=True)]
        # Each camera's own calls are bounded; the rig adds a margin on top (two grabs for
        # the retry of an incomplete frame).
        bound = 2 * max(timeouts) + self._margin + 0.5
        cf.wait(futures, timeout=bound)
        frames: list[Frame] = []
        failures: list[tuple[_Slot, CameraError]] = []
        for slot, fut, t in zip(self._slots, futures, timeouts, strict=True):
            if not fut.done():
                err: CameraError = CameraTimeout(
                    f"camera {slot.camera.name}: no frame within {bound:.1f} s "
                    f"(timeout {t:.1f} s, the camera's call did not return)"
                )
                failures.append((slot, err))
                continue
            exc = fut.exception()
            if exc is None:
                frames.append(fut.result())
                continue
            if isinstance(exc, CameraError):
                failures.append((slot, exc))
            else:  # a bug or a vendor exception that escaped translation
                wrapped = CameraError(f"camera {slot.camera.name}: {type(exc).__name__}: {exc}")
                wrapped.__cause__ = exc
                failures.append((slot, wrapped))
        for slot, err in failures:
            self._account_failure(slot, err)
        if failures:
            first = failures[0][1]
            message = "; ".join(str(e) for _, e in failures)
            raise type(first)(message) from first
        with self._state:
            for slot in self._slots:
                slot.frames += 1
                slot.consecutive_timeouts = 0
        return self._with_skew(frames, time.monotonic() - started)

    def listen(self, on_frame: FrameCallback, slice_s: float = 0.1) -> None:
        """Hand every frame any camera delivers to ``on_frame`` (called on that camera's
        listener thread; it must not block), until :meth:`stop_listening` or :meth:`close`.

        For line-triggered cameras: nothing is triggered, each camera's ``grab`` waits at
        most ``slice_s`` at a time. An incomplete frame is handed on as it is (it cannot be
        triggered again; the part it belongs to becomes an ERROR).
        """
        if self._closed or not self._opened:
            raise CameraError("camera rig: listen() needs open() first and no close()")
        if self._listeners:
            raise CameraError("camera rig: already listening")
        self._listen_stop.clear()
        self._listeners = [
            threading.Thread(target=self._listen_one, args=(slot, on_frame, slice_s),
                             name=f"camera-listen-{slot.camera.name}", daemon=True)
            for slot in self._slots
        ]
        for thread in self._listeners:
            thread.start()
        log.info("camera_rig_listening", cameras=[s.camera.name for s in self._slots])

    def stop_listening(self, timeout_s: float = 5.0) -> None:
        """Stop the listener threads (each returns within its grab slice); idempotent."""
        self._listen_stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._listeners:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._listeners = []

    def _listen_one(self, slot: _Slot, on_frame: FrameCallback, slice_s: float) -> None:
        stop = self._listen_stop
        while not stop.is_set() and not self._stop.is_set():
            with self._state:
                connected = slot.connected
            if not connected or not slot.lock.acquire(timeout=slice_s):
                stop.wait(min(slice_s, self._interval))  # lost: the supervisor reopens it
                continue
            try:
                frame = slot.camera.grab(slice_s)
            except CameraTimeout:
                continue  # no frame in this slice: no part came
            except Exception as exc:  # counted like a failed grab; lost ones are reopened
                err = exc if isinstance(exc, CameraError) else CameraError(
                    f"camera {slot.camera.name}: {type(exc).__name__}: {exc}")
                self._account_failure(slot, err)
                stop.wait(min(slice_s, self._interval))
                continue
            finally:
                slot.lock.release()
            with self._state:
                slot.frames += 1
                slot.consecutive_timeouts = 0
            try:
                on_frame(frame)
            except Exception as exc:  # a broken receiver must not stop the listener
                log.error("camera_frame_callback_failed", camera=slot.camera.name,
                          error=str(exc))

    def _acquire_one(self, slot: _Slot, timeout_s: float) -> Frame:
        if not slot.lock.acquire(timeout=timeout_s + self._margin):
            raise CameraTimeout(
                f"camera {slot.camera.name}: busy (a reconnect or an earlier grab still runs)"
            )
        try:
            cam = slot.camera
            cam.trigger()
            frame = cam.grab(timeout_s)
            if not frame.complete:
                log.warning("incomplete_frame_retry", camera=cam.name, frame_id=frame.frame_id)
                cam.trigger()
                frame = cam.grab(timeout_s)
                if not frame.complete:
                    raise IncompleteFrame(
                        f"camera {cam.name}: frame {frame.frame_id} incomplete twice in a row "
                        "(lost packets? check packet size, inter-packet delay and the NIC)"
                    )
            return frame
        finally:
            slot.lock.release()

    def _account_failure(self, slot: _Slot, err: CameraError) -> None:
        with self._state:
            slot.errors += 1
            slot.last_error = str(err)
            if isinstance(err, CameraTimeout):
                slot.consecutive_timeouts += 1
                lost = slot.consecutive_timeouts >= self._lost_after
            else:
                lost = isinstance(err, CameraLost)
        log.warning("camera_acquire_failed", camera=slot.camera.name, error=str(err),
                    kind=type(err).__name__)
        if lost:
            self._mark_lost(slot, str(err))

    def _with_skew(self, frames: list[Frame], elapsed_s: float) -> list[Frame]:
        """Skew = spread of the frames' host timestamps (the trigger instants for triggered
        cameras). Device clocks are independent unless the cameras are PTP-synchronised
        (IEEE 1588), so the device-clock spread is recorded apart, as ``device_skew_ns``."""
        stamps = [f.host_timestamp_ns for f in frames]
        skew = max(stamps) - min(stamps)
        self.last_skew_ns, self.last_skew_clock = skew, "host"
        extra = {"skew_ns": str(skew), "skew_clock": "host",
                 "rig_acquire_ms": f"{elapsed_s * 1000:.1f}"}
        device = [f.device_timestamp_ns for f in frames]
        if len(frames) > 1 and all(d is not None for d in device):
            ticks = [int(d) for d in device if d is not None]
            extra["device_skew_ns"] = str(max(ticks) - min(ticks))
        return [dataclasses.replace(f, extra={**f.extra, **extra}) for f in frames]

    # -- health and recovery ----------------------------------------------------------------

    def health(self) -> list[CameraHealth]:
        """One ``CameraHealth`` per camera, with the rig's view of the connection."""
        out: list[CameraHealth] = []
        for slot in self._slots:
            try:
                h = slot.camera.health()
            except Exception as exc:  # health must never raise
                h = CameraHealth(name=slot.camera.name, backend="?", connected=False,
                                 detail=f"health failed: {exc}")
            with self._state:
                connected = slot.connected and h.connected
                detail = h.detail if slot.connected else (
                    f"lost: {slot.lost_reason}; reconnecting (attempt {slot.attempts + 1} in "
                    f"{max(0.0, slot.next_try - time.monotonic()):.1f} s)"
                )
                out.append(dataclasses.replace(
                    h, connected=connected, detail=detail, errors=max(h.errors, slot.errors),
                    reconnects=slot.reconnects,
                ))
        return out

    def _emit(self, kind: str, data: dict[str, object]) -> None:
        log.warning(kind, **data) if kind == "camera_lost" else log.info(kind, **data)
        if self._on_event is None:
            return
        try:
            self._on_event(kind, data)
        except Exception as exc:  # a broken listener must not break acquisition
            log.error("camera_event_callback_failed", kind=kind, error=str(exc))

    def _mark_lost(self, slot: _Slot, reason: str) -> None:
        with self._state:
            was_connected = slot.connected or slot.lost_since == 0.0
            slot.connected = False
            if not was_connected:
                return
            slot.lost_since = time.monotonic()
            slot.lost_reason = reason
            slot.backoff.reset()
            slot.next_try = slot.lost_since + slot.backoff.next_wait()
            slot.attempts = 0
            slot.consecutive_timeouts = 0
        self._emit("camera_lost", {"camera": slot.camera.name, "reason": reason})

    def _supervise(self) -> None:
        while not self._stop.wait(self._interval):
            for slot in self._slots:
                if self._stop.is_set():
                    return
                try:
                    self._check(slot)
                except Exception as exc:  # the supervisor must survive anything
                    log.error("camera_supervisor_error", camera=slot.camera.name,
                              error=str(exc))

    def _check(self, slot: _Slot) -> None:
        with self._state:
            connected, due = slot.connected, time.monotonic() >= slot.next_try
        if connected:
            # Liveness without touching the device: a dead worker process, a closed camera.
            if slot.lock.acquire(blocking=False):
                try:
                    h = slot.camera.health()
                finally:
                    slot.lock.release()
                if not h.connected:
                    self._mark_lost(slot, h.detail or "camera reports disconnected")
            return
        if not due or not slot.lock.acquire(blocking=False):
            return
        try:
            with self._state:
                slot.attempts += 1
                attempt = slot.attempts
            try:
                slot.camera.close()
            except Exception as exc:
                log.debug("camera_close_before_reopen_failed", camera=slot.camera.name,
                          error=str(exc))
            if self._stop.is_set():
                return
            slot.camera.open()
        except Exception as exc:
            with self._state:
                wait_s = slot.backoff.next_wait()
                slot.next_try = time.monotonic() + wait_s
                slot.last_error = str(exc)
                slot.lost_reason = slot.lost_reason or str(exc)
            log.info("camera_reconnect_failed", camera=slot.camera.name, attempt=attempt,
                     error=str(exc), next_try_s=round(wait_s, 2))
            return
        finally:
            slot.lock.release()
        with self._state:
            slot.connected = True
            slot.reconnects += 1
            down_s = time.monotonic() - slot.lost_since
            reason = slot.lost_reason
        self._emit("camera_recovered", {
            "camera": slot.camera.name, "reason": f"reopened after {down_s:.1f} s",
            "lost_reason": reason, "attempts": attempt,
        })


def _camera_timeout(camera: Camera) -> float:
    value = getattr(camera, "timeout_s", 2.0)
    return float(value) if isinstance(value, (int, float)) else 2.0

"""The luminaire controller driver over a serial line (pyserial).

One request at a time, each waiting for its reply (``reply_timeout_s``); a timeout, a garbled
reply or an NG 01/05 (line noise) is retried up to ``retries`` times, any other NG raises
``LightRefused`` with the error number. Every request is idempotent (absolute values), so a
retry after a lost reply is safe.

A vanished port (USB adapter pulled, simulator gone) raises ``LightPortError``; the port is
reopened by the next request once the backoff has passed (``reopen_backoff_s`` doubling up to
``reopen_backoff_max_s``), never blocking longer than one open attempt plus one exchange. After
every (re)open every channel is switched off first: a controller that kept power may still be
lit. Closing and the guard ignore the backoff: switching off is worth an extra open attempt.

Lights never stay on: ``close`` switches them off, ``on`` switches them off again when it
fails half way, and a guard thread switches them off once they have been on for ``max_on_s``.
An all-off the controller does not confirm while a channel is (or may be) lit is a *fault*:
``health().fault`` says why (the inspection cycle turns it into an ERROR verdict, the daemon
into a ``status`` problem), and the guard retries every ``reopen_backoff_s`` until the
controller confirms, without waiting for ``max_on_s``. ``on_event`` hears ``lights_fault``
when a guard attempt fails for the first time in such an episode and ``lights_recovered`` when
a fault ends (every channel confirmed off again).

pyserial and OS exceptions are translated here into ``config.errors`` ``Light*`` exceptions.
"""

from __future__ import annotations

import termios
import threading
import time
from collections.abc import Callable

import serial
import structlog

from config.errors import LightError, LightPortError, LightProtocolError, LightRefused, LightTimeout
from config.lights import LightsConfig
from drivers.backoff import Backoff
from drivers.lights import protocol as p
from drivers.lights.base import EventSink, LightsHealth

log = structlog.get_logger(__name__)

#: Exceptions pyserial and the OS raise for a port that is missing or went away.
_PORT_ERRORS = (serial.SerialException, OSError, termios.error)


class SerialLuminaires:
    """``Luminaires`` on a controller speaking ``docs/lighting-protocol.md``."""

    def __init__(
        self,
        cfg: LightsConfig,
        *,
        port: str | None = None,
        backend: str = "serial",
        clock: Callable[[], float] = time.monotonic,
        on_event: EventSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.port = port if port is not None else cfg.port
        self.backend = backend
        self._clock = clock
        self._on_event = on_event
        self._io = threading.RLock()  # one exchange at a time; taken before _guard_cv
        self._guard_cv = threading.Condition()  # guards _lit_since and _guard_stop
        self._guard: threading.Thread | None = None
        self._guard_stop = False
        self._lit_since: float | None = None
        self._fault = ""  # why the lights may be on against orders; "" = confirmed off
        self._retry_off_at: float | None = None  # next guard attempt after a failed all-off
        self._fault_reported = False  # the guard has published this episode's lights_fault
        self._serial: serial.Serial | None = None
        self._opened = False
        self._ever_connected = False
        self._backoff = Backoff(cfg.reopen_backoff_s, cfg.reopen_backoff_max_s)
        self._next_reopen = 0.0
        self._intensity: dict[int, int] = {}  # what the controller is known to hold
        self._lit: set[int] = set()  # channels that are (or may be) on
        self.ident = ""
        self.errors = 0
        self.reopens = 0
        self.guard_trips = 0
        self.commands = 0
        self.last_error = ""
        self.last_rtt_s = 0.0
        self.max_rtt_s = 0.0

    # ------------------------------------------------------------------ Luminaires
    def open(self) -> None:
        """Open the port and greet the controller: all off, identify, pulse widths.

        Raises ``LightError`` when the controller cannot be reached or refuses; the driver
        stays usable (later requests reopen with backoff) and still needs ``close``. Calling
        it again while open retries the connection at once if it is down.
        """
        with self._io:
            if self._opened:
                self._connect(force=True)
                return
            self._opened = True
            with self._guard_cv:
                self._guard_stop = False
            self._guard = threading.Thread(target=self._guard_loop, name="lights-guard",
                                           daemon=True)
            self._guard.start()
            self._connect(force=True)
        log.info("lights.opened", port=self.port, backend=self.backend, ident=self.ident)

    def on(self) -> None:
        """Every configured channel on at its intensity (the caller waits ``settle_ms``).

        Intensities are sent only when the controller is not known to hold them already.
        If any step fails, everything is switched off again and the error is raised.
        """
        if not self.cfg.channels:
            return
        with self._io:
            try:
                self._connect()  # first: a reopen forgets the intensities the controller held
                for ch in self.cfg.channels:
                    if self._intensity.get(ch.channel) != ch.intensity:
                        self.set_intensity(ch.channel, ch.intensity)
                    self.set_channel(ch.channel, True)
            except LightError:
                self._safe_off(force=False)
                raise

    def off(self) -> None:
        """Every channel off (one broadcast request); never raises, logs a failure.

        A vanished port is reopened for it only once the backoff has passed.
        """
        self._safe_off(force=False)

    def set_intensity(self, channel: int, value: int) -> None:
        """Set one channel's intensity, 0..255 (does not switch it on)."""
        _check_channel(channel, "set_intensity")
        if not 0 <= value <= p.INTENSITY_MAX:
            raise LightError(
                f"set_intensity: channel {channel:02d} intensity {value} is outside "
                f"0..{p.INTENSITY_MAX}"
            )
        with self._io:
            self._request(p.intensity_request(channel, value), channel, f"intensity {value}")
            self._intensity[channel] = value

    def set_channel(self, channel: int, lit: bool) -> None:
        """Switch one channel on or off; on starts the max on-time guard."""
        _check_channel(channel, "set_channel")
        with self._io:
            if lit:
                self._mark_lit(channel)  # before sending: the reply may be lost, not the light
                self._request(p.light_request(channel, True), channel, "on")
            else:
                self._request(p.light_request(channel, False), channel, "off")
                self._mark_dark(channel)

    def health(self) -> LightsHealth:
        """Connection state and counters; no I/O, never blocks on the port."""
        connected = self._serial is not None
        detail = f"port {self.port}"
        if self.ident:
            detail += f", controller {self.ident!r}"
        if not connected and self.last_error:
            detail += f"; {self.last_error}"
        return LightsHealth(
            backend=self.backend,
            connected=connected,
            lit=bool(self._lit),
            detail=detail,
            channels=dict(self._intensity),
            errors=self.errors,
            reopens=self.reopens,
            fault=self._fault,
        )

    def close(self) -> None:
        """Lights off, guard stopped, port closed; safe to call twice."""
        if not self._opened:
            return
        self._safe_off(force=True)
        with self._guard_cv:
            self._guard_stop = True
            self._guard_cv.notify_all()
        if self._guard is not None and self._guard is not threading.current_thread():
            self._guard.join(self._exchange_budget_s() + 1.0)
        self._guard = None
        with self._io:
            self._drop_port()
            self._opened = False
        log.info("lights.closed", port=self.port)

    # ------------------------------------------------------------------ extras
    def set_pulse_width(self, channel: int, width_us: int) -> None:
        """Strobe pulse width of one channel (0 = continuous) [µs]."""
        if not 0 <= channel <= 99 or not 0 <= width_us <= p.PULSE_MAX_US:
            raise LightError(
                f"set_pulse_width: channel {channel:02d} must be 0..99 and pulse width "
                f"{width_us} µs must be 0..{p.PULSE_MAX_US}"
            )
        with self._io:
            self._request(p.pulse_request(channel, width_us), channel, f"pulse {width_us} µs")

    def read_status(self, channel: int) -> p.ChannelStatus:
        """Ask the controller for one channel's intensity, on/off state and pulse width."""
        _check_channel(channel, "read_status")
        with self._io:
            reply = self._request(p.status_request(channel), channel, "status")
            status = p.parse_status(channel, reply.data)
            self._intensity[channel] = status.intensity
            if status.lit:
                self._mark_lit(channel)
            else:
                self._mark_dark(channel)
            return status

    # ------------------------------------------------------------------ guard
    def _mark_lit(self, channel: int) -> None:
        self._lit.add(channel)
        with self._guard_cv:
            if self._lit_since is None:
                self._lit_since = self._clock()
                self._guard_cv.notify_all()

    def _mark_dark(self, channel: int | None) -> None:
        if channel is None:
            self._lit.clear()
        else:
            self._lit.discard(channel)
        if not self._lit:
            with self._guard_cv:
                self._lit_since = None
                self._guard_cv.notify_all()

    def _guard_loop(self) -> None:
        """Force everything off once lit for ``max_on_s``; after a failed all-off, retry
        every ``reopen_backoff_s`` until the controller confirms it."""
        while True:
            with self._guard_cv:
                while not self._guard_stop and self._lit_since is None:
                    self._guard_cv.wait()
                lit_since = self._lit_since
                if self._guard_stop or lit_since is None:
                    return
                now = self._clock()
                due = lit_since + self.cfg.max_on_s
                retry_at = self._retry_off_at
                if retry_at is not None:
                    due = min(due, retry_at)
                if now < due:
                    self._guard_cv.wait(due - now)
                    continue
                on_for = now - lit_since
            if on_for >= self.cfg.max_on_s:
                self.guard_trips += 1
                log.warning("lights.max_on_guard", port=self.port, on_for_s=round(on_for, 3),
                            max_on_s=self.cfg.max_on_s)
            else:
                log.warning("lights.off_retry", port=self.port, fault=self._fault)
            if not self._safe_off(force=True, during="guard") and not self._fault_reported:
                self._fault_reported = True
                self._emit("lights_fault", {
                    "reason": self._fault, "during": "guard", "port": self.port,
                    "on_for_s": round(self._clock() - lit_since, 3),
                })

    def _emit(self, kind: str, data: dict[str, object]) -> None:
        """Tell ``on_event`` (never raises: a failing listener is logged)."""
        if self._on_event is None:
            return
        try:
            self._on_event(kind, data)
        except Exception as exc:  # the listener's bug must not stop the guard
            log.error("lights.event_listener_failed", kind=kind, error=str(exc))

    def _confirmed_dark(self) -> None:
        """The controller confirmed every channel off (lock held): clear any fault."""
        self._mark_dark(None)
        was = self._fault
        self._fault, self._fault_reported = "", False
        with self._guard_cv:
            self._retry_off_at = None
        if was:
            log.info("lights.off_confirmed", port=self.port, after=was)
            self._emit("lights_recovered", {"port": self.port,
                                            "detail": "every channel confirmed off"})

    def _safe_off(self, *, force: bool, during: str = "off") -> bool:
        """All channels off; True on success, False (logged) on failure.

        ``force``: try to reopen a vanished port even before the backoff has passed (the
        guard and ``close`` do: switching off is worth an extra open attempt). A failure while
        a channel is (or may be) lit sets ``fault`` and makes the guard retry.
        """
        with self._io:
            if not self._opened:
                return True
            try:
                if not self._connect(force=force):  # a fresh connection is already dark
                    self._request(p.light_request(p.ALL_CHANNELS, False), p.ALL_CHANNELS,
                                  "all off")
            except LightError as exc:
                log.error("lights.off_failed", port=self.port, error=str(exc), during=during)
                if self._lit:
                    self._fault = (
                        f"all-off not confirmed by the controller (channel(s) "
                        f"{', '.join(f'{c:02d}' for c in sorted(self._lit))} may be lit): {exc}"
                    )
                    with self._guard_cv:
                        self._retry_off_at = self._clock() + self.cfg.reopen_backoff_s
                        self._guard_cv.notify_all()
                return False
            self._confirmed_dark()
            return True

    # ------------------------------------------------------------------ port
    def _connect(self, *, force: bool = False) -> bool:
        """Make sure the port is open and greeted (lock held); True if it was just opened.

        A fresh connection is greeted with ``@00L0`` (a controller that kept power may still
        be lit), ``@00V`` and the configured pulse widths; intensities are forgotten, so
        ``on`` sends them again. A greeting that fails closes the port again: the next
        attempt, after the backoff, starts from scratch.
        """
        if self._serial is not None:
            return False
        if not self._opened:
            raise LightPortError(f"lights on {self.port}: used before open() or after close()")
        now = self._clock()
        if not force and now < self._next_reopen:
            raise LightPortError(
                f"lights on {self.port}: port unavailable ({self.last_error}); next reopen "
                f"attempt in {self._next_reopen - now:.2f} s "
                f"(backoff {self._backoff.current_s:.2f} s, "
                f"at most {self.cfg.reopen_backoff_max_s} s)"
            )
        try:
            self._serial = serial.Serial(
                self.port, self.cfg.baudrate, timeout=self.cfg.reply_timeout_s,
                write_timeout=self.cfg.reply_timeout_s, exclusive=True,
            )
        except (ValueError, *_PORT_ERRORS) as exc:
            self._note_error(f"cannot open {self.port} at {self.cfg.baudrate} bit/s: {exc}")
            self._schedule_reopen(now)
            raise LightPortError(f"lights: {self.last_error}") from exc
        self._intensity.clear()
        try:
            self._request(p.light_request(p.ALL_CHANNELS, False), p.ALL_CHANNELS, "all off")
            self._confirmed_dark()
            self.ident = self._request(p.identify_request(), p.ALL_CHANNELS, "identify").data
            for ch in self.cfg.channels:
                self._request(p.pulse_request(ch.channel, ch.pulse_us), ch.channel,
                              f"pulse {ch.pulse_us} µs")
        except LightError:
            self._drop_port()
            self._schedule_reopen(now)
            raise
        if self._ever_connected:
            self.reopens += 1
            log.info("lights.port_reopened", port=self.port, reopens=self.reopens)
        self._ever_connected = True
        self._backoff.reset()
        return True

    def _schedule_reopen(self, now: float) -> None:
        """After a failed (re)open: wait the backoff, then double it up to its maximum."""
        self._next_reopen = now + self._backoff.next_wait()

    def _drop_port(self) -> None:
        """Close the port quietly (lock held)."""
        ser, self._serial = self._serial, None
        if ser is not None:
            try:
                ser.close()
            except _PORT_ERRORS as exc:  # pragma: no cover - close of a dead port
                log.debug("lights.close_failed", port=self.port, error=str(exc))

    def _note_error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    def _exchange_budget_s(self) -> float:
        """Longest one request can take with every retry [s]."""
        return self.cfg.reply_timeout_s * 2 * (self.cfg.retries + 1)

    # ------------------------------------------------------------------ requests
    def _request(self, frame: bytes, channel: int, what: str) -> p.Reply:
        """Send ``frame``, return its OK reply (lock held); retries, then raises."""
        with self._io:
            if not self._opened:
                raise LightPortError(
                    f"lights on {self.port}: {what} on channel {channel:02d} before open()"
                )
            self._connect()
            attempts = self.cfg.retries + 1
            where = f"lights on {self.port}, channel {channel:02d}, {what}"
            failure: LightError | None = None
            for attempt in range(1, attempts + 1):
                try:
                    reply = self._exchange(frame, where)
                except LightPortError as exc:
                    self._note_error(str(exc))
                    self._drop_port()
                    self._next_reopen = self._clock() + self._backoff.current_s
                    log.error("lights.port_lost", port=self.port, error=str(exc))
                    raise
                except (LightTimeout, LightProtocolError) as exc:
                    failure = exc
                    self._note_error(str(exc))
                    log.warning("lights.retry", port=self.port, channel=channel, what=what,
                                attempt=attempt, attempts=attempts, error=str(exc))
                    continue
                if reply.ok:
                    return reply
                message = (
                    f"{where}: controller answered NG {reply.code:02d} "
                    f"({p.ng_text(reply.code)})"
                )
                self._note_error(message)
                if reply.code in p.RETRYABLE_NG and attempt < attempts:
                    log.warning("lights.retry", port=self.port, channel=channel, what=what,
                                attempt=attempt, attempts=attempts, error=message)
                    continue
                raise LightRefused(message, reply.code)
            assert failure is not None
            raise type(failure)(f"{failure} (gave up after {attempts} attempt(s))") from failure

    def _exchange(self, frame: bytes, where: str) -> p.Reply:
        """One request, one reply line; translate pyserial errors (lock held)."""
        ser = self._serial
        assert ser is not None
        started = time.perf_counter()
        try:
            ser.reset_input_buffer()  # a late reply to an earlier request is not ours
            ser.write(frame)
            line: bytes = ser.read_until(b"\n", p.MAX_FRAME)
        except serial.SerialTimeoutException as exc:
            raise LightTimeout(
                f"{where}: request not written within {self.cfg.reply_timeout_s} s"
            ) from exc
        except _PORT_ERRORS as exc:
            raise LightPortError(f"{where}: port failed: {exc}") from exc
        self.commands += 1
        if not line.endswith(b"\n"):
            if len(line) >= p.MAX_FRAME:
                raise LightProtocolError(
                    f"{where}: reply longer than {p.MAX_FRAME} bytes without LF: {line!r}"
                )
            got = f" (partial reply {line!r})" if line else ""
            raise LightTimeout(f"{where}: no reply within {self.cfg.reply_timeout_s} s{got}")
        self.last_rtt_s = time.perf_counter() - started
        self.max_rtt_s = max(self.max_rtt_s, self.last_rtt_s)
        try:
            reply = p.parse_reply(line)
        except LightProtocolError as exc:
            raise LightProtocolError(f"{where}: {exc}") from exc
        wanted = int(frame[1:3])
        if reply.channel != wanted:
            raise LightProtocolError(
                f"{where}: reply is for channel {reply.channel:02d}, expected {wanted:02d}: "
                f"{line!r}"
            )
        return reply


def _check_channel(channel: int, what: str) -> None:
    if not 1 <= channel <= 99:
        raise LightError(f"{what}: channel {channel} is outside 1..99")

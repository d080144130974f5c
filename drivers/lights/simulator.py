"""A luminaire controller simulator on a pseudo-terminal, with fault injection.

It speaks ``docs/lighting-protocol.md`` on the master side of a pty; the driver opens the
slave side (``/dev/pts/N``) with pyserial exactly as it opens ``/dev/ttyUSB0``, so the tests
and the default config run the real serial code path.

Give ``link`` (a file path) to get a stable name: a symlink to the current pty, re-pointed
when the port comes back after a ``port_closed`` fault, the way udev keeps
``/dev/serial/by-id/...`` stable across a replug.

Faults (``set_fault``): ``none``; ``no_reply`` (requests are swallowed); ``garbled`` (the
command is executed, its reply is scrambled); ``ng`` (refused with ``code``, not executed);
``bad_checksum`` (executed, reply checksum off by one); ``port_closed`` (the pty is closed and
the link removed, like a pulled USB adapter; setting any other fault brings a fresh pty back,
with every channel off, like a controller powering up).
"""

from __future__ import annotations

import contextlib
import errno
import os
import pty
import select
import threading
import time
import tty
from collections import deque
from pathlib import Path
from typing import Literal, get_args

import structlog

from config.errors import LightProtocolError
from drivers.lights import protocol as p

log = structlog.get_logger(__name__)

Fault = Literal["none", "no_reply", "garbled", "ng", "bad_checksum", "port_closed"]
FAULTS: tuple[str, ...] = get_args(Fault)

#: How long ``set_fault`` and ``stop`` wait for the serving thread [s].
THREAD_WAIT_S = 2.0


class LightSimulator:
    """The controller: ``start()`` -> device path, ``set_fault(...)``, ``stop()``."""

    def __init__(
        self,
        channels: int = 4,
        *,
        link: str | os.PathLike[str] | None = None,
        reply_delay_s: float = 0.0,
        ident: str = "LIGHTSIM-4 1.0",
    ) -> None:
        if not 1 <= channels <= 99:
            raise ValueError(f"simulator channels must be 1..99, got {channels}")
        self.channels = channels
        self.link = Path(link) if link is not None else None
        self.reply_delay_s = reply_delay_s
        self.ident = ident
        self._lock = threading.Condition()
        self._state = {ch: p.ChannelStatus(ch, 0, False, 0) for ch in range(1, channels + 1)}
        self._fault: Fault = "none"
        self._pending: tuple[Fault, int] | None = None  # (fault, requests before it applies)
        self._ng_code = int(p.NgCode.LUMINAIRE_FAULT)
        self._fault_left = 0  # requests the fault still lasts; 0 = until changed
        self._wanted = 0  # generation of the wanted port state
        self._applied = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._pts: str | None = None
        self._wake_r: int | None = None
        self._wake_w: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.requests: deque[p.Request] = deque(maxlen=256)
        self.request_count = 0

    # ----------------------------------------------------------------- public API
    def start(self) -> str:
        """Open the pty, serve in a background thread; return the device path (or link)."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("simulator already started")
            self._stop.clear()
            self._wake_r, self._wake_w = os.pipe()
            self._open_pty()
            self._thread = threading.Thread(target=self._serve, name="lightsim", daemon=True)
            self._thread.start()
            path = self.path
            assert path is not None
        log.info("lightsim.started", path=path, pty=self._pts, channels=self.channels)
        return path

    @property
    def path(self) -> str | None:
        """The link when given, else the current pty slave; None while the port is closed."""
        if self._pts is None:
            return None
        return str(self.link) if self.link is not None else self._pts

    @property
    def running(self) -> bool:
        """True between ``start`` and ``stop``."""
        return self._thread is not None

    @property
    def fault(self) -> Fault:
        """The fault in force."""
        return self._fault

    def set_fault(self, kind: str, *, code: int = int(p.NgCode.LUMINAIRE_FAULT),
                  after: int = 0, count: int = 0) -> None:
        """Inject ``kind`` (one of ``FAULTS``) now, or after ``after`` more requests.

        ``code`` is the error number sent with ``ng``; ``count`` > 0 limits a reply fault to
        that many requests, then ``none`` is back (ignored for ``port_closed``). Returns once
        a port change (``port_closed`` and back) has taken effect.
        """
        if kind not in FAULTS:
            raise ValueError(f"fault {kind!r} is not one of {', '.join(FAULTS)}")
        if not 0 <= code <= 99:
            raise ValueError(f"NG error number must be 0..99, got {code}")
        if after < 0 or count < 0:
            raise ValueError(f"after and count must be >= 0 requests, got {after}, {count}")
        fault: Fault = kind  # type: ignore[assignment]
        with self._lock:
            self._ng_code = code
            self._fault_left = count
            if after:
                self._pending = (fault, after)
                return
            self._pending = None
            self._fault = fault
            self._wanted += 1
            wanted = self._wanted
        log.info("lightsim.fault", fault=kind, code=code)
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            with self._lock:
                self._lock.wait_for(lambda: self._applied >= wanted, THREAD_WAIT_S)

    def inject(self, data: bytes) -> None:
        """Send unsolicited bytes to the host now (line noise, a reply arriving too late)."""
        with self._lock:
            self._reply(data, delay=False)

    def state(self, channel: int) -> p.ChannelStatus:
        """One channel's state."""
        with self._lock:
            return self._state[channel]

    def lit_channels(self) -> frozenset[int]:
        """Channels now switched on."""
        with self._lock:
            return frozenset(ch for ch, s in self._state.items() if s.lit)

    def stop(self) -> None:
        """Stop serving, close the pty, remove the link; safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        self._wake()
        thread.join(THREAD_WAIT_S)
        if thread.is_alive():  # pragma: no cover - would be a bug in _serve
            log.error("lightsim.thread_stuck")
        with self._lock:
            self._close_pty()
            for fd in (self._wake_r, self._wake_w):
                if fd is not None:
                    os.close(fd)
            self._wake_r = self._wake_w = None
            self._thread = None
        log.info("lightsim.stopped")

    # ----------------------------------------------------------------- the pty
    def _open_pty(self) -> None:
        master, slave = pty.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation until the driver sets its own
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._pts = os.ttyname(slave)
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.symlink(self._pts, tmp)
            os.replace(tmp, self.link)

    def _close_pty(self) -> None:
        if self.link is not None and self._pts is not None:
            with contextlib.suppress(OSError):
                if os.readlink(self.link) == self._pts:
                    self.link.unlink()
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        self._pts = None

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")

    def _reconcile(self) -> None:
        """Bring the port in line with the fault; called by the serving thread only."""
        with self._lock:
            if self._fault == "port_closed" and self._master is not None:
                self._close_pty()
                log.info("lightsim.port_closed")
            elif self._fault != "port_closed" and self._master is None:
                self._state = {ch: p.ChannelStatus(ch, s.intensity, False, s.pulse_us)
                               for ch, s in self._state.items()}
                self._open_pty()
                log.info("lightsim.port_restored", pty=self._pts)
            self._applied = self._wanted
            self._lock.notify_all()

    # ----------------------------------------------------------------- serving
    def _serve(self) -> None:
        buf = b""
        discarding = False
        while not self._stop.is_set():
            self._reconcile()
            assert self._wake_r is not None
            fds = [self._wake_r] + ([self._master] if self._master is not None else [])
            ready, _, _ = select.select(fds, [], [])
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            master = self._master
            if master is None or master not in ready:
                buf, discarding = b"", False
                continue
            try:
                chunk = os.read(master, 1024)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    continue
                if exc.errno == errno.EIO:  # pragma: no cover - we hold the slave open
                    time.sleep(0.01)
                    continue
                raise
            buf += chunk
            while True:
                end = buf.find(b"\n")
                if end < 0:
                    if len(buf) > p.MAX_FRAME and not discarding:
                        self._reply(p.encode_ng(0, p.NgCode.FRAMING))
                        discarding = True
                    if discarding:
                        buf = b""
                    break
                line, buf = buf[: end + 1], buf[end + 1:]
                if discarding:
                    discarding = False
                    continue
                reply = self._handle(line)
                if reply is not None:
                    self._reply(reply)

    def _reply(self, data: bytes, *, delay: bool = True) -> None:
        if delay and self.reply_delay_s and self._stop.wait(self.reply_delay_s):
            return
        master = self._master
        while data and master is not None and not self._stop.is_set():
            try:
                data = data[os.write(master, data):]
            except BlockingIOError:
                select.select([], [master], [], 0.1)
            except OSError:  # pragma: no cover - port closed under us
                return

    def _handle(self, line: bytes) -> bytes | None:
        """The reply to one request line under the fault in force (None: no reply)."""
        with self._lock:
            self.request_count += 1
            if self._pending is not None:
                fault, left = self._pending
                if left == 0:
                    self._pending = None
                    self._fault = fault
                    self._wanted += 1
                    self._wake()
                else:
                    self._pending = (fault, left - 1)
            fault_now = self._fault
            if fault_now not in ("none", "port_closed") and self._fault_left:
                self._fault_left -= 1
                if not self._fault_left:
                    self._fault = "none"
            if fault_now in ("no_reply", "port_closed"):
                return None
            if len(line) > p.MAX_FRAME:
                return p.encode_ng(0, p.NgCode.FRAMING)
            try:
                req = p.parse_request(line)
            except p.ChecksumMismatch:
                return p.encode_ng(_channel_of(line), p.NgCode.CHECKSUM)
            except LightProtocolError:
                return p.encode_ng(_channel_of(line), p.NgCode.FRAMING)
            self.requests.append(req)
            if fault_now == "ng":
                return p.encode_ng(req.channel, self._ng_code)
            reply = self._execute(req)
        if fault_now == "garbled":
            return bytes(b ^ 0x55 for b in reply[:-2]) + p.EOL
        if fault_now == "bad_checksum":
            body = reply[:-4]
            return body + b"%02X" % ((sum(body) + 1) & 0xFF) + p.EOL
        return reply

    def _execute(self, req: p.Request) -> bytes:
        """Carry out a well-formed request (lock held); the OK or NG reply."""
        ch, cmd, data = req.channel, req.command, req.data
        if cmd not in {c.value for c in p.Command}:
            return p.encode_ng(ch, p.NgCode.UNKNOWN_COMMAND)
        if cmd == p.Command.IDENTIFY:
            return p.encode_ok(ch, self.ident) if not data else p.encode_ng(ch, p.NgCode.BAD_DATA)
        targets = list(self._state) if ch == p.ALL_CHANNELS else [ch]
        if ch != p.ALL_CHANNELS and ch not in self._state:
            return p.encode_ng(ch, p.NgCode.BAD_CHANNEL)
        if cmd == p.Command.STATUS:
            if ch == p.ALL_CHANNELS:
                return p.encode_ng(ch, p.NgCode.BAD_CHANNEL)
            if data:
                return p.encode_ng(ch, p.NgCode.BAD_DATA)
            return p.encode_ok(ch, self._state[ch].encode())
        try:
            change = _parse_setting(cmd, data)
        except ValueError:
            return p.encode_ng(ch, p.NgCode.BAD_DATA)
        for t in targets:
            s = self._state[t]
            self._state[t] = p.ChannelStatus(
                t,
                change.get("intensity", s.intensity),
                bool(change.get("lit", s.lit)),
                change.get("pulse_us", s.pulse_us),
            )
        return p.encode_ok(ch)


def _parse_setting(cmd: str, data: str) -> dict[str, int]:
    """Decode the data of F, L, P; ValueError if malformed or out of range."""
    if cmd == p.Command.INTENSITY and len(data) == 3 and data.isdigit():
        if int(data) <= p.INTENSITY_MAX:
            return {"intensity": int(data)}
    elif cmd == p.Command.LIGHT and data in ("0", "1"):
        return {"lit": int(data)}
    elif cmd == p.Command.PULSE and len(data) == 5 and data.isdigit():
        return {"pulse_us": int(data)}
    raise ValueError(data)


def _channel_of(line: bytes) -> int:
    """The channel of a request that failed to parse, when its digits are readable."""
    digits = line[1:3]
    return int(digits) if line[:1] == p.START and digits.isdigit() else 0


__all__ = ["FAULTS", "Fault", "LightSimulator"]

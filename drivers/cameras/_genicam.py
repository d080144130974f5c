"""The GenICam camera (harvesters + a GenTL producer), driven in a worker process.

``GenICamCamera`` is the station-side proxy: it starts ``drivers.cameras._worker`` as a
subprocess with a Unix socket pair, sends it one request at a time and waits for each reply
with a bound (the request's own timeout plus ``genicam.reply_margin_s``). Frames arrive in
shared memory (a memfd the worker creates and passes over the socket) and are copied into
an array the Frame owns. A worker that dies, or does not answer in time, is killed and the
camera reports ``CameraLost``; the rig then reopens it, which starts a fresh process (the
recovery that works even for producers that only recover after a process restart).

While a request waits, the calling thread sits in ``poll()`` without the GIL: the station's
other threads (the command socket) run freely. The station's process never imports
harvesters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import mmap
import os
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from multiprocessing.reduction import recvfds
from pathlib import Path
from typing import Any

import numpy as np
import structlog

import config.errors as errors
from config.cameras import CameraConfig
from config.errors import CameraError, CameraLost
from drivers.cameras._cti import resolve_producers
from drivers.cameras.base import CameraHealth
from drivers.frame import Frame

log = structlog.get_logger(__name__)

FeatureValue = bool | int | float | str

_ERRORS: dict[str, type[CameraError]] = {
    name: cls for name, cls in vars(errors).items()
    if isinstance(cls, type) and issubclass(cls, CameraError)
}
#: How long a worker gets to close the device before it is terminated, then killed [s].
CLOSE_GRACE_S = 3.0


def worker_python(configured: str | None) -> str:
    """The interpreter for worker processes: the configured one (checked), else ours."""
    if configured is None:
        return sys.executable
    path = Path(configured).expanduser()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise CameraError(
            f"genicam.worker_python {configured!r} is not an executable file; give the path "
            "of a Python interpreter (e.g. a 3.10 virtual environment's bin/python) or null"
        )
    return str(path)


def worker_env() -> dict[str, str]:
    """Our environment with this project's source first on PYTHONPATH, so that another
    interpreter (``worker_python``) imports the same ``drivers`` and ``config`` code."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


class GenICamCamera:
    """A GenICam device behind a worker process (see module docstring)."""

    def __init__(self, cfg: CameraConfig) -> None:
        """Nothing starts until :meth:`open`. ``cfg.backend`` is 'genicam' (harvesters) or
        'pylon' (pypylon); both run in a worker process and share everything else."""
        self.cfg = cfg
        self.backend = cfg.backend
        self.name = cfg.name
        #: Default grab timeout the rig uses for this camera [s].
        self.timeout_s = cfg.timeout_s
        self._margin = cfg.genicam.reply_margin_s
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._sock: socket.socket | None = None
        self._map: mmap.mmap | None = None
        self._opened = False
        self._info: dict[str, Any] = {}
        self._frames = 0
        self._errors = 0
        self._starts = 0
        self._recycles = 0
        self._recycle_due = False
        self._last_error = ""

    # -- worker process ------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The worker's process id while it runs (tests kill it to simulate a crash)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def info(self) -> dict[str, Any]:
        """What the worker reported at open: vendor, model, serial, id, mode, pixel format."""
        return dict(self._info)

    def _spawn(self) -> None:
        python = worker_python(self.cfg.genicam.worker_python)
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [python, "-m", "drivers.cameras._worker", "--serve", str(child.fileno())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, close_fds=True, env=worker_env(),
            )
        except OSError as exc:
            parent.close()
            raise CameraError(f"camera {self.name}: cannot start its worker: {exc}") from exc
        finally:
            child.close()
        self._sock = parent
        self._conn = Connection(os.dup(parent.fileno()))
        self._starts += 1

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=CLOSE_GRACE_S)
            except subprocess.TimeoutExpired:
                log.error("camera_worker_unkillable", camera=self.name, pid=proc.pid)
        self._release_ipc()

    def _release_ipc(self) -> None:
        for closer in (self._conn, self._sock, self._map):
            if closer is not None:
                with contextlib.suppress(OSError, BufferError):
                    closer.close()
        self._conn = self._sock = None
        self._map = None
        self._opened = False

    def _call(self, request: tuple[object, ...], timeout_s: float) -> tuple[str, Any]:
        """Send one request, wait at most ``timeout_s`` for its reply (logs and shared-memory
        hand-overs are handled on the way). ``CameraLost`` if the worker died or hung."""
        conn = self._conn
        if conn is None or self._proc is None:
            raise CameraLost(f"camera {self.name}: not open (open() it, or it was lost)")
        deadline = time.monotonic() + timeout_s
        try:
            conn.send(request)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not conn.poll(remaining):
                    self._errors += 1
                    self._last_error = f"worker did not answer {request[0]!r} in {timeout_s:.1f} s"
                    self._kill()
                    raise CameraLost(
                        f"camera {self.name}: its worker did not answer {request[0]!r} within "
                        f"{timeout_s:.1f} s (hung producer?); worker killed, reconnecting"
                    )
                reply = conn.recv()
                kind = reply[0]
                if kind == "log":
                    _, level, event, fields = reply
                    getattr(log, level, log.info)(event, worker_pid=self.pid, **fields)
                elif kind == "shm":
                    self._adopt_shared(int(reply[1]))
                elif kind == "err":
                    if not (reply[1] == "CameraTimeout" and self._info.get("mode") == "hardware"):
                        self._errors += 1  # a line-triggered grab without a frame: no part came
                        self._last_error = str(reply[2])
                    raise _ERRORS.get(str(reply[1]), CameraError)(str(reply[2]))
                else:
                    return kind, reply[1]
        except (EOFError, OSError, BrokenPipeError) as exc:
            code = self._proc.poll() if self._proc is not None else None
            self._errors += 1
            self._last_error = f"worker exited ({code})"
            self._kill()
            raise CameraLost(
                f"camera {self.name}: its worker process exited (code {code}) during "
                f"{request[0]!r}; reconnecting"
            ) from exc

    def _adopt_shared(self, size: int) -> None:
        assert self._sock is not None
        fds = recvfds(self._sock, 1)
        try:
            new_map = mmap.mmap(fds[0], size, prot=mmap.PROT_READ)
        finally:
            for fd in fds:
                os.close(fd)
        if self._map is not None:
            self._map.close()
        self._map = new_map

    # -- Camera protocol ---------------------------------------------------------------

    def open(self) -> None:
        """Start the worker, open the device, apply the features, pick the trigger mode."""
        with self._lock:
            if self._opened and self.pid is not None:
                return
            self._kill()
            producers = ([] if self.cfg.backend == "pylon" else
                         [str(p) for p in resolve_producers(self.cfg.genicam.cti)])
            spec = {"name": self.name, "backend": self.cfg.backend, "producers": producers,
                    "timeout_s": float(self.cfg.timeout_s),
                    "genicam": self.cfg.genicam.model_dump(mode="json")}
            self._spawn()
            try:
                _, info = self._call(("open", spec), self.cfg.genicam.open_timeout_s)
            except CameraError:
                self._kill()
                raise
            self._info = dict(info)
            self._opened = True
            log.info("camera_opened", camera=self.name, backend=self.backend, pid=self.pid,
                     serial=info.get("serial_number"), model=info.get("model"),
                     mode=info.get("mode"), pixel_format=info.get("pixel_format"))

    @property
    def recycles(self) -> int:
        """How many times the worker was restarted for exceeding ``worker_rss_limit_mb``."""
        return self._recycles

    def worker_rss_kib(self) -> int | None:
        """The worker's resident memory [KiB] (Linux /proc), ``None`` if not running."""
        pid = self.pid
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except (OSError, ValueError):
            return None
        return None

    def _recycle_if_due(self) -> None:
        if not self._recycle_due:
            return
        self._recycle_due = False
        rss = self.worker_rss_kib()
        log.info("camera_worker_recycled", camera=self.name, rss_kib=rss,
                 limit_mib=self.cfg.genicam.worker_rss_limit_mb)
        self.close()
        self.open()
        self._recycles += 1

    def trigger(self) -> None:
        """Software trigger, or start single-frame acquisition, or nothing (hardware).
        A worker over its memory limit is restarted first (bounded by ``open_timeout_s``)."""
        with self._lock:
            self._recycle_if_due()
            self._call(("trigger",), self.timeout_s + self._margin)

    def grab(self, timeout_s: float) -> Frame:
        """The next frame within ``timeout_s`` (the worker's fetch is bounded by it)."""
        with self._lock:
            kind, meta = self._call(("grab", float(timeout_s)), timeout_s + self._margin)
            if kind != "frame" or self._map is None:
                raise CameraError(f"camera {self.name}: worker answered {kind!r} to grab")
            dtype = np.dtype(meta["dtype"])
            count = int(meta["nbytes"]) // dtype.itemsize
            data = np.frombuffer(self._map, dtype=dtype, count=count).reshape(
                tuple(meta["shape"])).copy()
            self._frames += 1
            rss = self.worker_rss_kib()
            if rss is not None and rss > self.cfg.genicam.worker_rss_limit_mb * 1024:
                self._recycle_due = True
        frame = Frame(
            camera=self.name, frame_id=int(meta["frame_id"]),
            host_timestamp_ns=int(meta["host_timestamp_ns"]),
            pixel_format=str(meta["pixel_format"]), data=data,
            device_timestamp_ns=meta["device_timestamp_ns"],
            exposure_us=meta["exposure_us"], gain_db=meta["gain_db"],
            complete=bool(meta["complete"]), source=f"genicam:{self._info.get('id', '?')}",
            extra={k: str(v) for k, v in meta["extra"].items()},
        )
        frame.validate()
        return frame

    def close(self) -> None:
        """Ask the worker to close the device, then make sure it is gone; idempotent."""
        with self._lock:
            proc = self._proc
            if proc is None:
                self._release_ipc()
                return
            if proc.poll() is None and self._conn is not None:
                try:
                    self._call(("close",), CLOSE_GRACE_S)
                except CameraError as exc:
                    log.warning("camera_close_failed", camera=self.name, error=str(exc))
            if self._proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=CLOSE_GRACE_S)
            self._kill()

    def health(self) -> CameraHealth:
        """From local state only (never a round trip): a dead worker shows as disconnected."""
        proc = self._proc
        alive = proc is not None and proc.poll() is None
        if self._opened and not alive:
            code = proc.poll() if proc is not None else None
            detail = f"worker process exited (code {code})"
        elif self._opened:
            detail = (f"mode {self._info.get('mode')}, {self._info.get('pixel_format')}, "
                      f"worker pid {proc.pid if proc else '?'}, recycled {self._recycles}x")
        else:
            detail = "not open" + (f"; last error: {self._last_error}" if self._last_error
                                   else "")
        return CameraHealth(
            name=self.name, backend=self.backend, connected=self._opened and alive, detail=detail,
            serial=self._info.get("serial_number") or None, model=self._info.get("model"),
            frames=self._frames, errors=self._errors,
            reconnects=max(0, self._starts - 1 - self._recycles),
        )

    def get_feature(self, node: str) -> FeatureValue:
        """Read a node of the device (``CameraFeatureError`` names it if it cannot)."""
        with self._lock:
            _, value = self._call(("get", node), self.timeout_s + self._margin)
        return value  # type: ignore[no-any-return]

    def set_feature(self, node: str, value: FeatureValue) -> None:
        """Write a node, checked and read back (acquisition paused for locked nodes)."""
        with self._lock:
            _, readback = self._call(("set", node, value), self.timeout_s + self._margin)
            if node == "PixelFormat":
                self._info["pixel_format"] = readback


@dataclasses.dataclass(frozen=True)
class ProducerReport:
    """What one GenTL producer sees: its devices, or why it could not be asked."""

    producer: Path
    devices: list[dict[str, str]]
    error: str | None = None


def discover(
    producers: list[Path], *, try_open: bool = False, timeout_s: float = 30.0,
    python: str | None = None,
) -> list[ProducerReport]:
    """Ask every producer, each in its own short-lived worker process, which devices it sees.

    One process per producer: a producer that crashes or hangs (vendor code) costs its own
    line in the report, not the listing of the others. ``try_open`` also opens and closes
    every device, proving that the producer's ``create`` works on this Python (harvesters#503);
    ``python`` runs the workers with another interpreter (``genicam.worker_python``).
    """
    interpreter = worker_python(python)
    reports: list[ProducerReport] = []
    for producer in producers:
        cmd = [interpreter, "-m", "drivers.cameras._worker", "--list", str(producer)]
        if try_open:
            cmd.append("--open")
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL, check=False, env=worker_env())
        except subprocess.TimeoutExpired:
            reports.append(ProducerReport(producer, [], f"no answer within {timeout_s:.0f} s"))
            continue
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        try:
            answer = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            answer = {}
        if "devices" in answer:
            reports.append(ProducerReport(producer, list(answer["devices"])))
        else:
            why = answer.get("error") or (
                f"worker exited with code {done.returncode}: "
                f"{(done.stderr.strip().splitlines() or ['no output'])[-1]}"
            )
            reports.append(ProducerReport(producer, [], str(why)))
    return reports

"""The camera worker process: one per GenICam camera, owning its own Harvester.

Why a process (see docs/cameras.md): harvesters 1.4.3 has no device-lost event, a second
Harvester loading the same .cti in one process fails, ``Harvester.update()`` destroys every
acquirer, a waiting fetch can starve other threads of the GIL, some producers only recover
after a process restart, and memory grows over long runs. A process per camera isolates all
of that: the station's process never imports harvesters, a hung or crashed producer is killed
and restarted, and nothing it leaks outlives it.

Protocol (pickled tuples over a Unix socket pair, one request at a time):

    parent -> worker: ("open", spec) ("trigger",) ("grab", timeout_s) ("get", node)
                      ("set", node, value) ("close",)
    worker -> parent: ("log", level, event, fields)   any number, before a reply
                      ("shm", size) + one fd (SCM_RIGHTS)  a new frame buffer (memfd)
                      ("ok", value) | ("frame", meta) | ("err", error class name, message)

Frames travel in a memfd the worker creates and the parent maps: the pixels are copied once,
inside the producer buffer's ``with`` block, into shared memory; the buffer is requeued at once.

Run as ``python -m drivers.cameras._worker --serve FD`` (by ``_genicam``) or
``python -m drivers.cameras._worker --list CTI [--open]`` (device listing, JSON on stdout).

This module is the serve loop only. The device side is a ``Session`` (``_session``):
``HarvestersSession`` (``_harvesters``) unless the spec says ``backend: pylon``
(``_pylon.PylonSession``); the feature rules both apply are ``_genapi``.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import sendfds
from typing import Any

from config.errors import CameraError
from drivers.cameras._harvesters import HarvestersSession, list_devices
from drivers.cameras._session import Session


class _SharedFrame:
    """A memfd the worker writes frames into; a bigger one is made (and its fd sent) on need."""

    def __init__(self, conn: Connection, sock: socket.socket) -> None:
        self._conn, self._sock = conn, sock
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._size = 0

    def view(self, nbytes: int) -> memoryview:
        if nbytes > self._size or self._map is None:
            fd = os.memfd_create("station-camera-frame", os.MFD_CLOEXEC)
            size = max(nbytes, 1)
            os.ftruncate(fd, size)
            new_map = mmap.mmap(fd, size)
            self._conn.send(("shm", size))
            sendfds(self._sock, [fd])
            self.close()
            self._fd, self._map, self._size = fd, new_map, size
        return memoryview(self._map)[:nbytes]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def serve(fd: int) -> int:
    """Answer the parent's requests on the socket ``fd`` until ``close`` or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    sock = socket.socket(fileno=os.dup(fd))
    shared = _SharedFrame(conn, sock)

    def log(level: str, event: str, **fields: object) -> None:
        conn.send(("log", level, event, {k: str(v) for k, v in fields.items()}))

    session: Session = HarvestersSession(log)

    def do_open(spec: dict[str, Any]) -> dict[str, Any]:
        nonlocal session
        if spec.get("backend") == "pylon":
            try:
                from drivers.cameras._pylon import PylonSession
            except ImportError as exc:
                raise CameraError(
                    f"camera {spec.get('name')}: backend 'pylon' needs pypylon "
                    f"(pip install 'inspection-station[pylon]'): {exc}"
                ) from exc
            session = PylonSession(log)
        return session.open(spec)

    handlers: dict[str, Callable[..., Any]] = {
        "open": do_open, "trigger": lambda: session.trigger(),
        "get": lambda node: session.get(node),
        "set": lambda node, value: session.set(node, value),
        "grab": lambda timeout_s: ("frame", session.grab(float(timeout_s), shared.view)),
    }
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return 0  # the parent went away
            op, args = request[0], request[1:]
            if op == "close":
                session.close()
                conn.send(("ok", None))
                return 0
            try:
                result = handlers[op](*args)
            except CameraError as exc:
                conn.send(("err", type(exc).__name__, str(exc)))
                continue
            except Exception as exc:  # anything untranslated: report, the parent decides
                conn.send(("err", "CameraError",
                           f"camera {session.name}: {op} failed: {type(exc).__name__}: {exc}"))
                continue
            if isinstance(result, tuple) and result and result[0] == "frame":
                conn.send(result)
            else:
                conn.send(("ok", result))
    finally:
        session.close()
        shared.close()
        sock.close()


def main(argv: list[str] | None = None) -> int:
    """``--serve FD`` or ``--list CTI... [--open]``."""
    parser = argparse.ArgumentParser(prog="python -m drivers.cameras._worker")
    parser.add_argument("--serve", type=int, metavar="FD")
    parser.add_argument("--list", nargs="+", metavar="CTI")
    parser.add_argument("--open", action="store_true")
    args = parser.parse_args(argv)
    if args.serve is not None:
        return serve(args.serve)
    if args.list:
        try:
            devices = list_devices(args.list, args.open)
        except Exception as exc:
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
            return 1
        print(json.dumps({"devices": devices}))
        return 0
    parser.error("give --serve FD or --list CTI...")
    return 2


if __name__ == "__main__":
    sys.exit(main())

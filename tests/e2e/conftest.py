"""Fixtures that run ``station run`` as a subprocess, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from station.messaging.client import NoAnswer, request
from station.messaging.curve import ClientCurve


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningStation:
    """A daemon subprocess and how to reach it."""

    proc: subprocess.Popen[bytes]
    command: str
    publish: str
    data_dir: Path
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 10.0) -> tuple[int, float]:
        """SIGTERM; returns (exit code, seconds it took)."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(
                f"daemon did not stop within {timeout_s} s:\n{self.log()}"
            ) from None
        return code, time.monotonic() - t0


def start_station(
    tmp_path: Path, config: str = "default", extra: list[str] | None = None,
    env: dict[str, str] | None = None, ready_timeout_s: float = 120.0,
    curve: ClientCurve | None = None,
) -> RunningStation:
    """Start ``station run`` on free ports with a temporary data dir; wait until it answers
    (``curve``: the keys to ping a station that has CURVE on)."""
    command = f"tcp://127.0.0.1:{free_port()}"
    publish = f"tcp://127.0.0.1:{free_port()}"
    data_dir = tmp_path / "data"
    tmp_path.mkdir(parents=True, exist_ok=True)
    log_path = tmp_path / "station.log"
    args = [
        sys.executable, "-m", "station.cli", "run", "--config", config,
        "--data-dir", str(data_dir),
        "--set", f"messaging.command={command}", "--set", f"messaging.publish={publish}",
        "--set", "messaging.status_interval_s=0.2",
        *(extra or []),
    ]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("STATION_CONFIG", None)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    station = RunningStation(proc, command, publish, data_dir, log_path, args)
    deadline = time.monotonic() + ready_timeout_s
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{station.log()}")
        try:
            request(command, {"command": "ping"}, timeout_s=0.5, curve=curve)
            return station
        except NoAnswer:
            if time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(
                    f"daemon not up in {ready_timeout_s} s:\n{station.log()}"
                ) from None


@pytest.fixture
def run_station(tmp_path: Path) -> Iterator[object]:
    """A factory: ``run_station(config, extra_args, env)``; every daemon is stopped after."""
    started: list[RunningStation] = []

    def factory(config: str = "default", extra: list[str] | None = None,
                env: dict[str, str] | None = None) -> RunningStation:
        st = start_station(tmp_path / f"s{len(started)}", config, extra, env)
        started.append(st)
        return st

    yield factory
    for st in started:
        if st.proc.poll() is None:
            st.proc.kill()
            st.proc.wait(5)

"""Tests of station.health: sd_notify to a socket that plays systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from station.health import Notifier


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1.0)
    yield sock, path
    sock.close()


def test_ready_status_and_stopping_reach_systemd(systemd_socket: tuple[socket.socket, str]) -> None:
    """READY=1, STATUS= and STOPPING=1 arrive as datagrams on NOTIFY_SOCKET."""
    sock, path = systemd_socket
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    n.ready("up")
    assert sock.recv(1024) == b"READY=1\nSTATUS=up"
    n.status("busy")
    assert sock.recv(1024) == b"STATUS=busy"
    n.stopping()
    assert sock.recv(1024) == b"STOPPING=1"
    n.close()


def test_watchdog_pings_at_half_the_period(systemd_socket: tuple[socket.socket, str]) -> None:
    """With WATCHDOG_USEC=2 s the notifier pings once per second of loop time, not more."""
    sock, path = systemd_socket
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000",
                  "WATCHDOG_PID": str(os.getpid())})
    assert n.watchdog_interval_s == 1.0
    assert n.watchdog(now=100.0) is True
    assert sock.recv(1024) == b"WATCHDOG=1"
    assert n.watchdog(now=100.5) is False
    assert n.watchdog(now=101.0) is True
    n.close()


def test_watchdog_for_another_pid_is_ignored() -> None:
    """WATCHDOG_PID naming another process means the watchdog is not ours."""
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval_s is None
    n.close()


def test_without_systemd_nothing_happens() -> None:
    """No NOTIFY_SOCKET: every call is a no-op and never raises."""
    n = Notifier({})
    assert not n.enabled
    n.ready()
    assert n.watchdog() is False
    n.close()


def test_a_vanished_socket_is_logged_not_raised(tmp_path: Path) -> None:
    """If systemd's socket is gone, notify logs a warning naming the message and the error
    instead of raising, and carries on: once the socket is back, the next message arrives."""
    path = tmp_path / "gone"
    n = Notifier({"NOTIFY_SOCKET": str(path)})
    with structlog.testing.capture_logs() as logs:
        n.ready("up")
    assert len(logs) == 1, logs
    assert logs[0]["event"] == "sd_notify failed" and logs[0]["log_level"] == "warning"
    assert logs[0]["message"] == "READY=1\nSTATUS=up"
    assert "No such file or directory" in logs[0]["error"]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    try:
        n.status("back")
        assert sock.recv(1024) == b"STATUS=back"
    finally:
        sock.close()
        n.close()

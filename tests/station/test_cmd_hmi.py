"""``station hmi`` on the command line: it serves, stops cleanly, and refuses bad settings
with the key to change."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from station.cli import main
from tests.e2e.conftest import free_port


def test_serves_and_stops_with_exit_0_on_sigterm(tmp_path: Path) -> None:
    """Started as a user would, it answers /live (even before the station has a store) and
    exits 0 on SIGTERM."""
    port = free_port()
    env = {**os.environ, "STATION_HMI_TOKEN": "0123456789abcdef"}
    env.pop("STATION_CONFIG", None)
    log = tmp_path / "hmi.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "station.cli", "hmi", "--data-dir", str(tmp_path / "data"),
             "--port", str(port), "--set", f"messaging.publish=tcp://127.0.0.1:{free_port()}"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/live", timeout=2) as r:
                    assert r.status == 200 and b"NO VERDICT YET" in r.read()
                    break
            except OSError:
                assert time.monotonic() < deadline, "station hmi did not answer in 60 s"
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_a_taken_port_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The port in use: exit 2, the message says how to choose another."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["hmi", "--data-dir", str(tmp_path), "--port", str(port)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"hmi.port {port} on 127.0.0.1: cannot listen" in err and "--port" in err


def test_bad_settings_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown time zone, a duplicate shift, a short token, a bad host: exit 2 each, the
    value and the fix named."""
    port = str(free_port())
    base = ["hmi", "--data-dir", str(tmp_path), "--port", port]
    assert main([*base, "--set", "hmi.timezone=Mars/Base"]) == 2
    assert "time zone 'Mars/Base' is unknown" in capsys.readouterr().err
    shifts = '[{name: a, start: "06:00"}, {name: a, start: "14:00"}]'
    assert main([*base, "--set", f"hmi.shifts={shifts}"]) == 2
    assert "names must differ; a repeats" in capsys.readouterr().err
    assert main([*base, "--set", 'hmi.shifts=[{name: a, start: "25:00"}]']) == 2
    assert "not a time HH:MM" in capsys.readouterr().err
    monkeypatch.setenv("STATION_HMI_TOKEN", "short")
    assert main(base) == 2
    assert "at least 12" in capsys.readouterr().err
    assert main([*base, "--host", "no-such-host.invalid"]) == 2
    assert "hmi.host 'no-such-host.invalid': not an address here" in capsys.readouterr().err

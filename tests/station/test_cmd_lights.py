"""``station lights`` and ``station lightsim``: real commands against the simulator's pty."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serial
import structlog

from drivers.lights import LightSimulator
from drivers.lights import protocol as p
from station.cli import main


@pytest.fixture(autouse=True)
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Log events captured (off stdout); the commands' own logging setup left out."""
    monkeypatch.setattr("station.logs.setup_logging", lambda *a, **k: None)
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[LightSimulator]:
    """A 4-channel simulator behind tmp_path/lights."""
    s = LightSimulator(channels=4, link=tmp_path / "lights")
    s.start()
    yield s
    s.stop()


def write_config(tmp_path: Path, port: Path | str, backend: str = "serial") -> str:
    """A station config naming ``port``, with short timings."""
    cfg = tmp_path / "station.yaml"
    cfg.write_text(
        "lights:\n"
        f"  backend: {backend}\n"
        f"  port: {port}\n"
        "  reply_timeout_s: 1.0\n"
        "  retries: 0\n"
        "  max_on_s: 5\n"
    )
    return str(cfg)


def test_status_prints_every_channel(
    sim: LightSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status: connection line, then one line per configured channel."""
    assert main(["lights", "-c", write_config(tmp_path, tmp_path / "lights"), "status"]) == 0
    out = capsys.readouterr().out
    assert "backend serial: connected" in out and "LIGHTSIM-4 1.0" in out
    assert "channel 01 top: intensity 0, off, continuous" in out
    assert "channel 02 side:" in out


def test_set_changes_intensity_and_leaves_light_off(
    sim: LightSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """set CH VALUE: the controller holds the value; nothing stays lit."""
    cfg = write_config(tmp_path, tmp_path / "lights")
    assert main(["lights", "-c", cfg, "set", "3", "77"]) == 0
    assert "channel 03 intensity 77" in capsys.readouterr().out
    assert sim.state(3).intensity == 77 and not sim.lit_channels()


def test_on_holds_then_switches_off(
    sim: LightSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """on --for: lit while held, dark when the command returns."""
    cfg = write_config(tmp_path, tmp_path / "lights")
    assert main(["lights", "-c", cfg, "on", "--for", "0.05"]) == 0
    assert [r.data for r in sim.requests if r.command == "L" and r.channel] == ["1", "1"]
    assert not sim.lit_channels()
    out = capsys.readouterr().out
    assert "lights on" in out and out.rstrip().endswith("lights off")


def test_off(
    sim: LightSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    logs: list[dict[str, Any]],
) -> None:
    """off: prints, switches everything off, logs open and close."""
    assert main(["lights", "-c", write_config(tmp_path, tmp_path / "lights"), "off"]) == 0
    assert capsys.readouterr().out.strip() == "lights off"
    assert [e["event"] for e in logs if e["event"].startswith("lights.")] == [
        "lights.opened", "lights.closed"
    ]


def test_controller_refusal_exits_1(
    sim: LightSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A channel the controller lacks: exit 1, NG number and channel on stderr."""
    assert main(["lights", "-c", write_config(tmp_path, tmp_path / "lights"), "set", "9", "1"]) == 1
    err = capsys.readouterr().err
    assert "channel 09" in err and "NG 04 (no such channel)" in err


def test_missing_port_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No controller: exit 1 and the message names the port."""
    assert main(["lights", "-c", write_config(tmp_path, tmp_path / "nothing"), "status"]) == 1
    assert "nothing" in capsys.readouterr().err


def test_none_backend_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """backend none: status says so and exits 0."""
    assert main(["lights", "-c", write_config(tmp_path, "x", backend="none"), "status"]) == 0
    assert "backend none" in capsys.readouterr().out


def test_simulator_backend_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """backend simulator: the in-process simulator answers the real driver."""
    assert main(["lights", "-c", write_config(tmp_path, "x", backend="simulator"), "status"]) == 0
    assert "backend simulator: connected" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["lights", "set", "0", "10"], "channel 0 is outside 1..99"),
        (["lights", "set", "100", "10"], "channel 100 is outside 1..99"),
        (["lights", "set", "one", "10"], "channel 'one' is not a whole number"),
        (["lights", "set", "1", "256"], "intensity 256 is outside 0..255"),
        (["lights", "set", "1", "-1"], "intensity -1 is outside 0..255"),
        (["lights", "set", "1"], "the following arguments are required: VALUE"),
        (["lights"], "the following arguments are required: ACTION"),
        (["lights", "blink"], "invalid choice: 'blink'"),
        (["lights", "on", "--for", "0"], "duration 0.0 s is outside (0, 3600]"),
        (["lights", "on", "--for", "soon"], "duration 'soon' is not a number"),
        (["lightsim", "--fault", "smoke"], "invalid choice: 'smoke'"),
        (["lightsim", "--channels", "0"], "channel count 0 is outside 1..99"),
        (["lightsim", "--fault-code", "100"], "NG error number 100 is outside 0..99"),
        (["lightsim", "--toggle", "none"], "invalid choice: 'none'"),
    ],
)
def test_bad_cli_input_exits_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Malformed arguments: usage error (exit 2) saying what is wrong."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config with an invalid lights section: exit 2 naming the key."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("lights:\n  channels:\n    - {channel: 1}\n    - {channel: 1}\n")
    assert main(["lights", "-c", str(cfg), "status"]) == 2
    assert "more than once" in capsys.readouterr().err


def _ask(path: str, frame: bytes) -> bytes:
    with serial.Serial(path, 9600, timeout=2.0) as ser:
        ser.write(frame)
        line: bytes = ser.read_until(b"\n", p.MAX_FRAME)
        return line


def test_lightsim_process_serves_toggles_and_stops(tmp_path: Path) -> None:
    """station lightsim: prints the link, answers, SIGUSR1 drops the port, SIGUSR2 restores
    it, SIGTERM stops it with exit 0 and removes the link."""
    link = tmp_path / "lights"
    proc = subprocess.Popen(
        [sys.executable, "-m", "station.cli", "lightsim", "--pty", "--link", str(link)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(link)
        assert _ask(str(link), p.identify_request())[:5] == b"@00OK"
        proc.send_signal(signal.SIGUSR1)
        assert _wait(lambda: not link.exists())
        proc.send_signal(signal.SIGUSR2)
        assert _wait(link.exists)
        assert _ask(str(link), p.light_request(1, True)) == p.encode_ok(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert not link.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_lightsim_initial_fault(tmp_path: Path) -> None:
    """--fault ng --fault-code 7 --fault-after 1: one good reply, then NG 07."""
    link = tmp_path / "lights"
    proc = subprocess.Popen(
        [sys.executable, "-m", "station.cli", "lightsim", "--link", str(link),
         "--fault", "ng", "--fault-code", "7", "--fault-after", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == str(link)
        assert _ask(str(link), p.identify_request())[:5] == b"@00OK"
        assert _ask(str(link), p.identify_request()) == p.encode_ng(0, 7)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait(condition: object, timeout: float = 3.0) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return bool(condition())


assert os.name == "posix", "pseudo-terminals need a POSIX system"

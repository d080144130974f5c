"""The controller simulator, spoken to with plain pyserial over its pty (no driver)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from config.errors import LightProtocolError
from drivers.lights import LightSimulator
from drivers.lights import protocol as p


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[LightSimulator]:
    """A 4-channel simulator behind a stable link."""
    s = LightSimulator(channels=4, link=tmp_path / "lights")
    s.start()
    yield s
    s.stop()


@pytest.fixture
def port(sim: LightSimulator) -> Iterator[serial.Serial]:
    """A raw pyserial port on the simulator."""
    assert sim.path is not None
    with serial.Serial(sim.path, 9600, timeout=1.0) as ser:
        yield ser


def ask(ser: serial.Serial, frame: bytes, timeout: float = 1.0) -> bytes:
    """Send one frame, return one reply line (b'' on timeout)."""
    ser.timeout = timeout
    ser.reset_input_buffer()
    ser.write(frame)
    line: bytes = ser.read_until(b"\n", p.MAX_FRAME)
    return line


def test_start_returns_the_link_to_a_pty(sim: LightSimulator, tmp_path: Path) -> None:
    """start() gives the link; it points at a /dev/pts device; stop() removes it."""
    link = tmp_path / "lights"
    assert sim.path == str(link)
    assert os.readlink(link).startswith("/dev/pts/")
    sim.stop()
    assert not link.exists()
    sim.stop()  # twice is fine


def test_without_link_the_pty_itself_is_returned() -> None:
    """With no link, the path is the pty slave."""
    s = LightSimulator(channels=1)
    try:
        assert s.start().startswith("/dev/pts/")
        with pytest.raises(RuntimeError, match="already started"):
            s.start()
    finally:
        s.stop()


def test_commands_change_state(sim: LightSimulator, port: serial.Serial) -> None:
    """F, P, L and S behave as documented; 00 addresses every channel."""
    assert ask(port, p.intensity_request(2, 200)) == p.encode_ok(2)
    assert ask(port, p.pulse_request(2, 1500)) == p.encode_ok(2)
    assert ask(port, p.light_request(0, True)) == p.encode_ok(0)
    assert sim.lit_channels() == {1, 2, 3, 4}
    assert ask(port, p.status_request(2)) == p.encode_ok(2, "200101500")
    assert ask(port, p.light_request(0, False)) == p.encode_ok(0)
    assert sim.lit_channels() == frozenset()
    assert ask(port, p.identify_request()) == p.encode_ok(0, "LIGHTSIM-4 1.0")
    assert sim.state(2) == p.ChannelStatus(2, 200, False, 1500)


@pytest.mark.parametrize(
    ("frame", "reply"),
    [
        (b"@01F18081\r\n", p.encode_ng(1, p.NgCode.CHECKSUM)),
        (p.encode_request(1, p.Command.INTENSITY, "256"), p.encode_ng(1, p.NgCode.BAD_DATA)),
        (p.encode_request(1, p.Command.LIGHT, "2"), p.encode_ng(1, p.NgCode.BAD_DATA)),
        (p.encode_request(1, p.Command.PULSE, "12"), p.encode_ng(1, p.NgCode.BAD_DATA)),
        (p.encode_request(1, p.Command.STATUS, "1"), p.encode_ng(1, p.NgCode.BAD_DATA)),
        (p.frame(b"@01Z"), p.encode_ng(1, p.NgCode.UNKNOWN_COMMAND)),
        (p.light_request(5, True), p.encode_ng(5, p.NgCode.BAD_CHANNEL)),
        (p.status_request(0), p.encode_ng(0, p.NgCode.BAD_CHANNEL)),
        (b"01L1\r\n", p.encode_ng(0, p.NgCode.FRAMING)),
        (b"@01L1" + p.checksum(b"@01L1") + b"\n", p.encode_ng(1, p.NgCode.FRAMING)),
    ],
)
def test_every_error_number(port: serial.Serial, frame: bytes, reply: bytes) -> None:
    """Each malformed or impossible request gets its documented NG number."""
    assert ask(port, frame) == reply


def test_overlong_line_is_refused_once_and_skipped(port: serial.Serial) -> None:
    """More than 64 bytes without LF: one NG 05, the rest up to LF discarded."""
    assert ask(port, b"@" + b"1" * 100) == p.encode_ng(0, p.NgCode.FRAMING)
    port.write(b"1" * 10 + b"\r\n")  # tail of the long line: no reply
    assert ask(port, p.identify_request())[:5] == b"@00OK"


@pytest.mark.parametrize("kind", ["garbled", "bad_checksum"])
def test_reply_faults_still_execute(sim: LightSimulator, port: serial.Serial, kind: str) -> None:
    """garbled and bad_checksum corrupt the reply but the command is carried out."""
    sim.set_fault(kind)
    line = ask(port, p.light_request(1, True))
    assert line.endswith(b"\r\n") and line != p.encode_ok(1)
    with pytest.raises(LightProtocolError):
        p.parse_reply(line)
    assert sim.lit_channels() == {1}


def test_ng_fault_refuses_and_does_nothing(sim: LightSimulator, port: serial.Serial) -> None:
    """ng answers with the configured number and leaves the state alone."""
    sim.set_fault("ng", code=7)
    assert ask(port, p.light_request(1, True)) == p.encode_ng(1, 7)
    assert sim.lit_channels() == frozenset()


def test_no_reply_fault(sim: LightSimulator, port: serial.Serial) -> None:
    """no_reply swallows requests; clearing the fault brings replies back."""
    sim.set_fault("no_reply")
    assert ask(port, p.identify_request(), timeout=0.05) == b""
    sim.set_fault("none")
    assert ask(port, p.identify_request())[:5] == b"@00OK"


def test_fault_after_and_count(sim: LightSimulator, port: serial.Serial) -> None:
    """after=N serves N requests first; count=N limits the fault to N requests."""
    sim.set_fault("ng", code=3, after=1, count=1)
    assert ask(port, p.identify_request())[:5] == b"@00OK"
    assert ask(port, p.identify_request()) == p.encode_ng(0, 3)
    assert ask(port, p.identify_request())[:5] == b"@00OK"
    assert sim.fault == "none"


def test_port_closed_and_back(sim: LightSimulator, port: serial.Serial, tmp_path: Path) -> None:
    """port_closed drops the pty (reads fail) and the link; none restores it, all off."""
    assert ask(port, p.light_request(0, True)) == p.encode_ok(0)
    sim.set_fault("port_closed")
    assert not (tmp_path / "lights").exists()
    assert sim.path is None
    with pytest.raises(serial.SerialException):
        ask(port, p.identify_request())
    sim.set_fault("none")
    assert sim.path is not None
    with serial.Serial(sim.path, 9600, timeout=1.0) as again:
        assert ask(again, p.identify_request())[:5] == b"@00OK"
    assert sim.lit_channels() == frozenset()  # a restored controller powers up dark


def test_reply_delay(tmp_path: Path) -> None:
    """reply_delay_s holds every reply back."""
    s = LightSimulator(channels=1, reply_delay_s=0.1)
    try:
        with serial.Serial(s.start(), 9600, timeout=1.0) as ser:
            started = time.monotonic()
            assert ask(ser, p.identify_request())[:5] == b"@00OK"
            assert time.monotonic() - started >= 0.09
    finally:
        s.stop()


def test_bad_arguments() -> None:
    """Unknown faults, error numbers and channel counts are refused."""
    s = LightSimulator()
    with pytest.raises(ValueError, match="not one of"):
        s.set_fault("smoke")
    with pytest.raises(ValueError, match=r"0\.\.99"):
        s.set_fault("ng", code=100)
    with pytest.raises(ValueError, match=">= 0"):
        s.set_fault("ng", after=-1)
    with pytest.raises(ValueError, match=r"1\.\.99"):
        LightSimulator(channels=0)


def _doc_exchanges() -> list[tuple[bytes, bytes]]:
    """Every (H> request, C< reply) pair in the examples of docs/lighting-protocol.md."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "lighting-protocol.md"
    lines = [ln for ln in doc.read_text().splitlines() if ln.startswith(("H> ", "C< "))]
    pairs = list(zip(lines[::2], lines[1::2], strict=True))
    assert all(h.startswith("H> ") and c.startswith("C< ") for h, c in pairs)
    return [(h[3:].encode() + p.EOL, c[3:].encode() + p.EOL) for h, c in pairs]


def test_documented_examples_replay_exactly(port: serial.Serial, sim: LightSimulator) -> None:
    """Each example exchange of the protocol page, sent to the simulator, gets its reply."""
    pairs = _doc_exchanges()
    assert len(pairs) >= 10
    for request, reply in pairs:
        if reply == p.encode_ng(1, p.NgCode.LUMINAIRE_FAULT):
            sim.set_fault("ng", code=6, count=1)
        assert ask(port, request) == reply, request

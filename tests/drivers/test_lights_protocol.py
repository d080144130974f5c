"""The wire protocol of the luminaire controller: framing, checksum, parsing (no I/O)."""

from __future__ import annotations

import pytest

from config.errors import LightProtocolError
from drivers.lights import protocol as p


def test_checksum_worked_example() -> None:
    """The worked example of docs/lighting-protocol.md: '@01F180' sums to 0x180 -> '80'."""
    body = b"@01F180"
    assert [*body] == [0x40, 0x30, 0x31, 0x46, 0x31, 0x38, 0x30]
    assert sum(body) == 0x180
    assert p.checksum(body) == b"80"
    assert p.intensity_request(1, 180) == b"@01F18080\r\n"
    assert p.encode_ok(1) == b"@01OK3B\r\n"
    assert p.encode_ng(1, 3) == b"@01NG0399\r\n"


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (p.light_request(0, False), b"@00L01C\r\n"),
        (p.light_request(2, True), b"@02L11F\r\n"),
        (p.pulse_request(3, 500), b"@03P00500E8\r\n"),
        (p.status_request(2), b"@02SF5\r\n"),
        (p.identify_request(), b"@00VF6\r\n"),
    ],
)
def test_every_request_frame(frame: bytes, expected: bytes) -> None:
    """Each command encodes to the exact bytes the documentation lists."""
    assert frame == expected


def test_request_round_trip() -> None:
    """A request parses back into channel, letter and data."""
    req = p.parse_request(p.pulse_request(12, 99_999))
    assert req == p.Request(12, "P", "99999")


def test_reply_round_trip_ok_ng_and_status() -> None:
    """OK with data, NG with its number, and the S data decode."""
    status = p.ChannelStatus(2, 120, True, 250)
    reply = p.parse_reply(p.encode_ok(2, status.encode()))
    assert reply == p.Reply(2, True, "120100250")
    assert p.parse_status(2, reply.data) == status
    assert p.parse_reply(p.encode_ng(7, 6)) == p.Reply(7, False, code=6)


def test_lower_case_checksum_is_accepted() -> None:
    """Receivers accept lower-case hex digits in the checksum."""
    assert p.parse_request(b"@01F180" + b"80\r\n").data == "180"
    assert p.parse_reply(b"@00OK" + p.checksum(b"@00OK").lower() + b"\r\n").ok


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"@01OK3B", "CR LF"),
        (b"@01OK3B\n", "CR LF"),
        (b"#01OK3B\r\n", "start with '@'"),
        (b"@01\r\n", "too short"),
        (b"@01OK3C\r\n", "checksum"),
        (b"@0xOK" + p.checksum(b"@0xOK") + b"\r\n", "two digits"),
        (b"@01XY" + p.checksum(b"@01XY") + b"\r\n", "'OK' or 'NG'"),
        (b"@01NG6" + p.checksum(b"@01NG6") + b"\r\n", "not 2 digits"),
        (b"@01OK\x01" + p.checksum(b"@01OK\x01") + b"\r\n", "printable"),
        (b"@01OK" + b"1" * 80 + b"\r\n", "longest"),
    ],
)
def test_malformed_replies_are_refused(line: bytes, fragment: str) -> None:
    """Every framing defect raises LightProtocolError naming what is wrong."""
    with pytest.raises(LightProtocolError, match=fragment):
        p.parse_reply(line)


def test_bad_checksum_is_its_own_error() -> None:
    """A well-framed request with a wrong sum raises ChecksumMismatch (answered NG 01)."""
    with pytest.raises(p.ChecksumMismatch, match="sum to '80'"):
        p.parse_request(b"@01F18081\r\n")


@pytest.mark.parametrize(
    "data", ["", "12010000", "1201000000", "12021000", "256000000", "12x100000"]
)
def test_malformed_status_data(data: str) -> None:
    """S data must be IIILPPPPP with intensity <= 255 and L 0 or 1."""
    with pytest.raises(LightProtocolError, match="channel 04"):
        p.parse_status(4, data)


def test_builders_check_ranges() -> None:
    """Out-of-range values never reach the wire."""
    with pytest.raises(ValueError, match="intensity"):
        p.intensity_request(1, 256)
    with pytest.raises(ValueError, match="pulse"):
        p.pulse_request(1, 100_000)
    with pytest.raises(ValueError, match="channel"):
        p.light_request(100, True)
    with pytest.raises(ValueError, match="NG error number"):
        p.encode_ng(1, 100)
    with pytest.raises(ValueError, match="printable"):
        p.encode_ok(1, "a@b")
    with pytest.raises(ValueError, match="longest"):
        p.encode_ok(1, "x" * 60)


def test_ng_texts() -> None:
    """Every documented error number has a meaning; unknown ones say so."""
    assert {int(c) for c in p.NgCode} == set(range(1, 8))
    assert all(p.ng_text(c) != "unknown error number" for c in p.NgCode)
    assert p.ng_text(42) == "unknown error number"
    assert {p.NgCode.CHECKSUM, p.NgCode.FRAMING} == p.RETRYABLE_NG

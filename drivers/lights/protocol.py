"""The luminaire controller's ASCII protocol: framing, checksum, parsing. No I/O.

The wire format is specified in ``docs/lighting-protocol.md``; this module is its executable
form and is shared by the serial driver and the simulator, so both speak exactly one dialect.

Request::   @ CC K DATA SS CR LF     e.g. b"@01F180" + b"80" + b"\\r\\n"
OK reply::  @ CC O K DATA SS CR LF   e.g. b"@01OK" + b"3B" + b"\\r\\n"
NG reply::  @ CC N G EE SS CR LF     e.g. b"@01NG03" + b"99" + b"\\r\\n"

``CC`` two decimal digits (00 = every channel), ``K`` one command letter, ``SS`` the checksum:
the sum of every byte from ``@`` to the last data byte, modulo 256, as two upper-case hex
digits.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from config.errors import LightProtocolError

START = b"@"
EOL = b"\r\n"
#: Longest frame either side may send, CR LF included [bytes].
MAX_FRAME = 64
#: Channel number that addresses every channel at once.
ALL_CHANNELS = 0
#: Valid ranges of command data.
INTENSITY_MAX = 255
PULSE_MAX_US = 99_999


class Command(enum.StrEnum):
    """Command letters."""

    INTENSITY = "F"  #: data: 3 decimal digits, 000..255
    LIGHT = "L"  #: data: "1" on, "0" off
    PULSE = "P"  #: data: 5 decimal digits, strobe pulse width 00000..99999 µs (0 = continuous)
    STATUS = "S"  #: no data; reply data: IIILPPPPP
    IDENTIFY = "V"  #: no data; reply data: identification text


class NgCode(enum.IntEnum):
    """Error numbers of an NG reply."""

    CHECKSUM = 1  #: the request's checksum was wrong
    UNKNOWN_COMMAND = 2  #: unknown command letter
    BAD_DATA = 3  #: data malformed or out of range
    BAD_CHANNEL = 4  #: channel not fitted (or 00 with S)
    FRAMING = 5  #: line not framed: no '@', no CR, too long, bad characters
    LUMINAIRE_FAULT = 6  #: luminaire open / short / over temperature: refuses to switch on
    LOCAL_MODE = 7  #: controller in front-panel (local) mode: refuses remote commands


#: NG codes caused by line noise: the same request may succeed when sent again.
RETRYABLE_NG = frozenset({NgCode.CHECKSUM, NgCode.FRAMING})

NG_TEXT: dict[int, str] = {
    NgCode.CHECKSUM: "checksum error in the request",
    NgCode.UNKNOWN_COMMAND: "unknown command",
    NgCode.BAD_DATA: "data malformed or out of range",
    NgCode.BAD_CHANNEL: "no such channel",
    NgCode.FRAMING: "framing error",
    NgCode.LUMINAIRE_FAULT: "luminaire fault (open, short or over temperature)",
    NgCode.LOCAL_MODE: "controller in local (front-panel) mode",
}


class ChecksumMismatch(LightProtocolError):
    """A frame whose checksum does not match its bytes (a receiver answers NG 01)."""


def ng_text(code: int) -> str:
    """Human meaning of an NG error number."""
    return NG_TEXT.get(code, "unknown error number")


def checksum(body: bytes) -> bytes:
    """Two upper-case hex digits: the byte sum of ``body`` modulo 256."""
    return b"%02X" % (sum(body) & 0xFF)


def _check_channel(channel: int) -> None:
    if not 0 <= channel <= 99:
        raise ValueError(f"channel must be 0..99, got {channel}")


def _printable(data: bytes) -> bool:
    return all(0x20 <= b <= 0x7E and b != 0x40 for b in data)


def frame(body: bytes) -> bytes:
    """``body`` + checksum + CR LF."""
    out = body + checksum(body) + EOL
    if len(out) > MAX_FRAME:
        raise ValueError(f"frame is {len(out)} bytes, longest allowed is {MAX_FRAME}")
    return out


def encode_request(channel: int, command: Command, data: str = "") -> bytes:
    """A complete request frame."""
    _check_channel(channel)
    raw = data.encode("ascii")
    if not _printable(raw):
        raise ValueError(f"request data {data!r} must be printable ASCII without '@'")
    return frame(b"@%02d%s%s" % (channel, command.value.encode("ascii"), raw))


def intensity_request(channel: int, value: int) -> bytes:
    """Set intensity 0..255."""
    if not 0 <= value <= INTENSITY_MAX:
        raise ValueError(f"intensity must be 0..{INTENSITY_MAX}, got {value}")
    return encode_request(channel, Command.INTENSITY, f"{value:03d}")


def light_request(channel: int, lit: bool) -> bytes:
    """Switch on (True) or off (False)."""
    return encode_request(channel, Command.LIGHT, "1" if lit else "0")


def pulse_request(channel: int, width_us: int) -> bytes:
    """Strobe pulse width in µs, 0 = continuous."""
    if not 0 <= width_us <= PULSE_MAX_US:
        raise ValueError(f"pulse width must be 0..{PULSE_MAX_US} µs, got {width_us}")
    return encode_request(channel, Command.PULSE, f"{width_us:05d}")


def status_request(channel: int) -> bytes:
    """Read one channel's status."""
    return encode_request(channel, Command.STATUS)


def identify_request() -> bytes:
    """Ask the controller who it is (channel 00)."""
    return encode_request(ALL_CHANNELS, Command.IDENTIFY)


def encode_ok(channel: int, data: str = "") -> bytes:
    """An OK reply frame."""
    _check_channel(channel)
    raw = data.encode("ascii")
    if not _printable(raw):
        raise ValueError(f"reply data {data!r} must be printable ASCII without '@'")
    return frame(b"@%02dOK%s" % (channel, raw))


def encode_ng(channel: int, code: int) -> bytes:
    """An NG reply frame."""
    _check_channel(channel)
    if not 0 <= code <= 99:
        raise ValueError(f"NG error number must be 0..99, got {code}")
    return frame(b"@%02dNG%02d" % (channel, code))


def _split(line: bytes, what: str) -> bytes:
    """Check start, end, length, charset and checksum; return the body (``@`` .. data)."""
    if len(line) > MAX_FRAME:
        raise LightProtocolError(f"{what} is {len(line)} bytes, longest allowed is {MAX_FRAME}")
    if not line.endswith(EOL):
        raise LightProtocolError(f"{what} {line!r} does not end with CR LF")
    core = line[: -len(EOL)]
    if not core.startswith(START):
        raise LightProtocolError(f"{what} {line!r} does not start with '@'")
    if len(core) < 6:
        raise LightProtocolError(f"{what} {line!r} is too short for '@', channel, letter, sum")
    if not _printable(core[1:]):
        raise LightProtocolError(f"{what} {line!r} has bytes outside printable ASCII or '@'")
    body, got = core[:-2], core[-2:]
    want = checksum(body)
    if got.upper() != want:
        raise ChecksumMismatch(
            f"{what} {line!r}: checksum {got.decode('ascii', 'replace')!r}, "
            f"the bytes sum to {want.decode('ascii')!r}"
        )
    if not body[1:3].isdigit():
        raise LightProtocolError(f"{what} {line!r}: channel {body[1:3]!r} is not two digits")
    return body


@dataclass(frozen=True)
class Request:
    """A parsed request."""

    channel: int
    command: str
    data: str


@dataclass(frozen=True)
class Reply:
    """A parsed reply: ``ok`` with ``data``, or NG with ``code``."""

    channel: int
    ok: bool
    data: str = ""
    code: int = 0


def parse_request(line: bytes) -> Request:
    """Parse one request frame (CR LF included); ``LightProtocolError`` if malformed.

    A frame that is well formed but whose checksum is wrong raises ``ChecksumMismatch``
    (answered NG 01 by a controller); any other defect raises ``LightProtocolError`` (NG 05).
    """
    body = _split(line, "request")
    return Request(int(body[1:3]), chr(body[3]), body[4:].decode("ascii"))


def parse_reply(line: bytes) -> Reply:
    """Parse one reply frame (CR LF included); ``LightProtocolError`` if malformed."""
    body = _split(line, "reply")
    channel = int(body[1:3])
    kind = body[3:5]
    if kind == b"OK":
        return Reply(channel, True, body[5:].decode("ascii"))
    if kind == b"NG":
        code = body[5:]
        if len(code) != 2 or not code.isdigit():
            raise LightProtocolError(f"reply {line!r}: NG error number {code!r} is not 2 digits")
        return Reply(channel, False, code=int(code))
    raise LightProtocolError(f"reply {line!r}: expected 'OK' or 'NG' after the channel")


@dataclass(frozen=True)
class ChannelStatus:
    """One channel's state, as the S command reports it."""

    channel: int
    intensity: int
    lit: bool
    pulse_us: int

    def encode(self) -> str:
        """The reply data of S: ``IIILPPPPP``."""
        return f"{self.intensity:03d}{int(self.lit)}{self.pulse_us:05d}"


def parse_status(channel: int, data: str) -> ChannelStatus:
    """Decode the data of an S reply; ``LightProtocolError`` if malformed."""
    if len(data) != 9 or not data.isdigit() or data[3] not in "01":
        raise LightProtocolError(
            f"status reply of channel {channel:02d}: data {data!r} is not IIILPPPPP "
            "(3-digit intensity, 0/1, 5-digit pulse width)"
        )
    intensity = int(data[0:3])
    if intensity > INTENSITY_MAX:
        raise LightProtocolError(
            f"status reply of channel {channel:02d}: intensity {intensity} is above "
            f"{INTENSITY_MAX}"
        )
    return ChannelStatus(channel, intensity, data[3] == "1", int(data[4:9]))

"""Turning the frames of one request into a validated request, or into the error reply it gets.

Pure logic, no sockets: the daemon's command loop calls ``read_request`` for every message its
ROUTER socket receives and either dispatches the request or sends back the error reply
unchanged, on the reply route ``read_request`` found. Nothing here raises for any input bytes
(a seeded fuzz test in tests/station/test_requests.py holds it to that), and ``encode`` turns
every reply into one JSON frame whatever it holds.

Framing: a REQ client's message arrives as ``[routing id, b"", body]``; a DEALER client's as
``[routing id, body...]`` (a DEALER that sends ``[b"", body]``, imitating REQ, is answered the
same way). The reply goes back in the client's framing, always as exactly one JSON frame after
the route, so a REQ client never sees a two-frame reply. Clients connect directly; a broker in
between (ROUTER/DEALER proxy) is not supported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from station.messaging import jsonio
from station.messaging.wire import (
    COMMANDS,
    ID_PATTERN,
    MAX_ID_CHARS,
    WIRE_SCHEMA_VERSION,
    ErrorCode,
    ErrorInfo,
    Reply,
    Request,
)

_REQUEST = TypeAdapter(Request)
_ID = re.compile(ID_PATTERN)
# "request_id": "..." anywhere in a frame that cannot be parsed whole (too large, broken).
_SNIFF_ID = re.compile(rb'"request_id"\s*:\s*("(?:[^"\\]|\\.){0,1024}")', re.DOTALL)

#: The reply of last resort, when even a cleaned reply cannot be encoded (never seen; kept so
#: that a bug cannot leave a request without its one reply).
FALLBACK_REPLY = (
    b'{"schema":1,"ok":false,"command":null,"request_id":null,'
    b'"error":{"code":"INTERNAL","message":"the reply could not be encoded"}}'
)


@dataclass
class Incoming:
    """One message from the command socket: its reply route and the request or the refusal."""

    envelope: list[bytes]
    request: Request | None = None
    refusal: Reply | None = None


def error_reply(
    code: ErrorCode, message: str, command: str | None = None, request_id: str | None = None
) -> Reply:
    """A reply with ``ok: false`` and the error's code and message."""
    return Reply(
        ok=False, command=command, request_id=request_id,
        error=ErrorInfo(code=code, message=message),
    )


def ok_reply(command: str, result: dict[str, Any], request_id: str | None = None) -> Reply:
    """A reply with ``ok: true`` and a result."""
    return Reply(ok=True, command=command, request_id=request_id, result=result)


def encode(reply: Reply) -> bytes:
    """The reply as one JSON frame; never raises (unencodable values are replaced)."""
    try:
        return reply.model_dump_json(by_alias=True).encode("utf-8")
    except Exception:  # a lone surrogate, or a value pydantic cannot serialise
        pass
    try:
        return jsonio.dumps(reply.model_dump(by_alias=True, mode="python"))
    except Exception:
        return FALLBACK_REPLY


def valid_request_id(value: object) -> str | None:
    """``value`` if it is a request_id the schema accepts (so it can be echoed), else None."""
    if not isinstance(value, str) or len(value) > MAX_ID_CHARS or not _ID.fullmatch(value):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def sniff_request_id(raw: bytes) -> str | None:
    """The first ``"request_id": "..."`` in a frame that could not be parsed whole, if valid."""
    match = _SNIFF_ID.search(raw)
    if match is None:
        return None
    try:
        return valid_request_id(jsonio.loads(match.group(1)))
    except jsonio.JsonRefused:
        return None


def split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(reply route, body frames) of one message received on the ROUTER socket.

    ``[id, b"", body...]`` (REQ, or a DEALER imitating it): route ``[id, b""]``. Anything else
    (a DEALER): route ``[id]``, every other frame is body, an empty one included.
    """
    if len(frames) >= 3 and frames[1] == b"":
        return frames[:2], frames[2:]
    return frames[:1], frames[1:]


def read_request(frames: list[bytes], max_bytes: int) -> Incoming:
    """The request in ``frames`` (as the ROUTER socket received them), or its refusal."""
    envelope, body = split_envelope(frames)
    if len(body) != 1:
        first = body[0] if body else b""
        return Incoming(envelope, refusal=error_reply(
            "BAD_REQUEST",
            f"a request is exactly one JSON frame; this message has {len(body)} frames",
            request_id=sniff_request_id(first[: 4 * max_bytes]),
        ))
    parsed = parse_request(body[0], max_bytes)
    if isinstance(parsed, Reply):
        return Incoming(envelope, refusal=parsed)
    return Incoming(envelope, request=parsed)


#: Plain words for the validation errors a request can meet (pydantic's type -> text).
_WORDS = {
    "bool_type": "must be true or false (a JSON boolean; no other value stands for one)",
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "string_too_long": f"must be at most {MAX_ID_CHARS} characters",
    "string_pattern_mismatch": "must not contain control characters",
    "extra_forbidden": "unknown field",
}


def _problem(error: Any) -> str:
    where = ".".join(str(p) for p in error["loc"][1:]) or "request"
    if error["type"] == "missing":
        return f"{where}: field required"
    what = _WORDS.get(error["type"], error["msg"])
    return f"{where}: {what} (got {jsonio.printable(error.get('input'))})"


def parse_request(raw: bytes, max_bytes: int) -> Request | Reply:
    """Validate one request frame; return the request, or the error ``Reply`` to send back.

    Types are strict: no value is coerced (``"wait": "yes"``, ``1`` or ``"true"`` is refused;
    only ``true``/``false`` are booleans; ``"schema": true`` or ``1.0`` is not the integer 1).
    """
    if len(raw) > max_bytes:
        return error_reply(
            "TOO_LARGE",
            f"request is {len(raw)} bytes; the limit (messaging.max_request_bytes) is "
            f"{max_bytes} bytes",
            request_id=sniff_request_id(raw),
        )
    if not raw.strip():
        return error_reply(
            "BAD_JSON", 'the request frame is empty; send one JSON object, e.g. {"command": '
            '"ping"}'
        )
    try:
        data = jsonio.loads(raw)
    except jsonio.JsonRefused as exc:
        return error_reply(
            "BAD_JSON", f"request is not valid JSON within the station's limits: {exc}; "
            'send one JSON object, e.g. {"command": "ping"}',
            request_id=sniff_request_id(raw),
        )
    if not isinstance(data, dict):
        return error_reply(
            "BAD_JSON",
            f"request must be a JSON object, got a {_json_type(data)}; "
            'send e.g. {"command": "ping"}',
        )
    request_id = valid_request_id(data.get("request_id"))
    command = data.get("command")
    if "command" not in data:
        return error_reply(
            "BAD_REQUEST",
            f"field 'command' is missing; it must be one of {', '.join(COMMANDS)}",
            request_id=request_id,
        )
    if not isinstance(command, str) or command not in COMMANDS:
        return error_reply(
            "UNKNOWN_COMMAND",
            f"command {jsonio.printable(command)} is not known; known commands: "
            f"{', '.join(COMMANDS)}",
            request_id=request_id,
        )
    if "schema" in data:
        schema = data["schema"]
        if type(schema) is not int:
            return error_reply(
                "BAD_REQUEST",
                f"{command}: schema must be the integer {WIRE_SCHEMA_VERSION}, got the "
                f"{_json_type(schema)} {jsonio.printable(schema)}",
                command, request_id,
            )
        if schema != WIRE_SCHEMA_VERSION:
            return error_reply(
                "UNSUPPORTED_SCHEMA",
                f"schema {schema} is not supported; this station speaks schema "
                f"{WIRE_SCHEMA_VERSION}",
                command=command, request_id=request_id,
            )
    try:
        return _REQUEST.validate_python(data, strict=True)
    except ValidationError as exc:
        problems = "; ".join(_problem(e) for e in exc.errors())
        return error_reply("BAD_REQUEST", f"{command}: {problems}", command, request_id)


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


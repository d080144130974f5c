"""Turning raw request bytes into a validated request, or into the error reply it deserves.

Pure logic, no sockets: the daemon's command loop calls ``parse_request`` for every frame it
receives and either dispatches the request or sends back the error reply unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from station.messaging.wire import (
    COMMANDS,
    WIRE_SCHEMA_VERSION,
    ErrorCode,
    ErrorInfo,
    Reply,
    Request,
)

_REQUEST = TypeAdapter(Request)


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
    """The reply as one JSON frame."""
    return reply.model_dump_json(by_alias=True).encode()


def parse_request(raw: bytes, max_bytes: int) -> Request | Reply:
    """Validate one request frame; return the request, or the error ``Reply`` to send back."""
    if len(raw) > max_bytes:
        return error_reply(
            "TOO_LARGE",
            f"request is {len(raw)} bytes; the limit (messaging.max_request_bytes) is "
            f"{max_bytes} bytes",
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return error_reply(
            "BAD_JSON", f"request is not UTF-8 JSON ({exc}); send e.g. {{\"command\": \"ping\"}}"
        )
    if not isinstance(data, dict):
        return error_reply(
            "BAD_JSON",
            f"request must be a JSON object, got a {type(data).__name__}; "
            'send e.g. {"command": "ping"}',
        )
    request_id = data.get("request_id") if isinstance(data.get("request_id"), str) else None
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
            f"command {command!r} is not known; known commands: {', '.join(COMMANDS)}",
            request_id=request_id,
        )
    schema = data.get("schema", WIRE_SCHEMA_VERSION)
    if schema != WIRE_SCHEMA_VERSION:
        return error_reply(
            "UNSUPPORTED_SCHEMA",
            f"schema {schema!r} is not supported; this station speaks schema "
            f"{WIRE_SCHEMA_VERSION}",
            command=command, request_id=request_id,
        )
    try:
        return _REQUEST.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: "
            f"{'unknown field' if e['type'] == 'extra_forbidden' else e['msg']} "
            f"(got {e.get('input')!r})"
            for e in exc.errors()
        )
        return error_reply("BAD_REQUEST", f"{command}: {problems}", command, request_id)

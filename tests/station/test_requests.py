"""Tests of station.messaging.requests: every malformed request gets the right error reply."""

from __future__ import annotations

import json

import pytest

from station.messaging.requests import encode, error_reply, parse_request
from station.messaging.wire import InspectRequest, PingRequest, Reply, StatusRequest

LIMIT = 1024


@pytest.mark.parametrize(
    ("raw", "code", "needle"),
    [
        (b"{not json", "BAD_JSON", "not UTF-8 JSON"),
        (b"\xff\xfe", "BAD_JSON", "not UTF-8 JSON"),
        (b"[1, 2]", "BAD_JSON", "must be a JSON object, got a list"),
        (b'"ping"', "BAD_JSON", "got a str"),
        (b"{}", "BAD_REQUEST", "'command' is missing"),
        (b'{"command": "explode"}', "UNKNOWN_COMMAND", "known commands: inspect, status, ping"),
        (b'{"command": 7}', "UNKNOWN_COMMAND", "7"),
        (b'{"command": "inspect", "part_id": 12}', "BAD_REQUEST", "part_id"),
        (b'{"command": "inspect", "wait": "later"}', "BAD_REQUEST", "wait"),
        (b'{"command": "ping", "colour": "red"}', "BAD_REQUEST", "colour: unknown field"),
        (b'{"command": "ping", "schema": 99}', "UNSUPPORTED_SCHEMA", "speaks schema 1"),
        (b'{"command": "ping", "pad": "' + b"x" * 2000 + b'"}', "TOO_LARGE", "1024 bytes"),
    ],
)
def test_malformed_requests_get_error_replies(raw: bytes, code: str, needle: str) -> None:
    """Each malformed request becomes a reply with ok false, the code and a useful message."""
    reply = parse_request(raw, LIMIT)
    assert isinstance(reply, Reply)
    assert reply.ok is False
    assert reply.error is not None and reply.error.code == code
    assert needle in reply.error.message


def test_request_id_is_echoed_in_errors() -> None:
    """A client's request_id comes back even when the request is refused."""
    reply = parse_request(b'{"command": "nope", "request_id": "r-1"}', LIMIT)
    assert isinstance(reply, Reply) and reply.request_id == "r-1"


def test_valid_requests_parse() -> None:
    """The three commands parse into their models; schema may be given or omitted."""
    assert isinstance(parse_request(b'{"command": "ping"}', LIMIT), PingRequest)
    assert isinstance(parse_request(b'{"command": "status", "schema": 1}', LIMIT), StatusRequest)
    req = parse_request(b'{"command": "inspect", "part_id": "A-7", "wait": true}', LIMIT)
    assert isinstance(req, InspectRequest) and req.part_id == "A-7" and req.wait


def test_encoded_reply_carries_schema_and_error() -> None:
    """Replies on the wire are JSON with schema, ok and error{code, message}."""
    data = json.loads(encode(error_reply("BUSY", "queue full", "inspect", "r")))
    assert data["schema"] == 1 and data["ok"] is False
    assert data["error"] == {"code": "BUSY", "message": "queue full"}

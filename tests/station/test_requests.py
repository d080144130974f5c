"""Tests of station.messaging.requests: every message gets exactly one valid reply frame.

Includes the hostile corpus of issue 9 (each of which once stopped the daemon) and a seeded
fuzz run of more than 10,000 messages through the pure parsing and reply logic.
"""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any, get_args

import pytest

from station.messaging import jsonio
from station.messaging.requests import (
    FALLBACK_REPLY,
    encode,
    error_reply,
    ok_reply,
    parse_request,
    read_request,
    split_envelope,
)
from station.messaging.wire import ErrorCode, InspectRequest, PingRequest, Reply, StatusRequest

LIMIT = 1024
#: The daemon's default messaging.max_request_bytes, used by the fuzz run.
DEFAULT_LIMIT = 65536
CODES = set(get_args(ErrorCode))


def deep(n: int, inner: bytes = b"1") -> bytes:
    """An array nested ``n`` deep."""
    return b"[" * n + inner + b"]" * n


#: Messages (frames after the routing id) that are hostile, odd or once fatal; each with the
#: error code it must get (None: it is a valid request). The first three stopped the daemon
#: before issue 9 (RecursionError, ValueError of the int limit, an unencodable reply).
HOSTILE_CORPUS: list[tuple[list[bytes], str | None]] = [
    ([b'{"command":"ping","x":' + deep(1000) + b"}"], "BAD_JSON"),
    ([b'{"command":"ping","x":' + b"7" * 4301 + b"}"], "BAD_JSON"),
    ([b'{"command":"ping","request_id":"\\ud800"}'], "BAD_JSON"),
    ([b'{"command":"ping","x":' + deep(100_000 // 2)[:30_000] + b"}"], "BAD_JSON"),
    ([b'{"command":"ping","x":' + b'{"a":' * 500 + b"1" + b"}" * 500 + b"}"], "BAD_JSON"),
    ([b'{"command":"inspect","part_id":' + b"-" + b"9" * 5000 + b"}"], "BAD_JSON"),
    ([b'{"command":"ping","x":1e400}'], "BAD_JSON"),
    ([b'{"command":"ping","x":-1e400}'], "BAD_JSON"),
    ([b'{"command":"ping","x":NaN}'], "BAD_JSON"),
    ([b'{"command":"ping","x":-Infinity}'], "BAD_JSON"),
    ([b'{"command":"inspect","part_id":"\\udfff"}'], "BAD_JSON"),
    ([b'{"\\ud800":1,"command":"ping"}'], "BAD_JSON"),
    ([b'{"command":"\\udc00\\ud800"}'], "BAD_JSON"),
    ([b'{"command":"ping","request_id":"\xed\xa0\x80"}'], "BAD_JSON"),
    ([b'\xef\xbb\xbf{"command":"ping"}'], "BAD_JSON"),
    ([b'{"command":"ping"}\x00'], "BAD_JSON"),
    ([b'{"command":"ping","command":"inspect"}'], "BAD_JSON"),
    ([b""], "BAD_JSON"),
    ([b"   \n"], "BAD_JSON"),
    ([b"null"], "BAD_JSON"),
    ([b"\xc0\xaf"], "BAD_JSON"),
    ([b'{"command":"ping"}', b"", b"x"], "BAD_REQUEST"),
    ([b'{"command":"ping"}'] * 5, "BAD_REQUEST"),
    ([b'{"command":"ping","x":' + deep(30) + b"}"], "BAD_REQUEST"),
    ([b'{"command":["ping"]}'], "UNKNOWN_COMMAND"),
    ([b'{"command":{"$gt":""}}'], "UNKNOWN_COMMAND"),
    ([b'{"command":"ping","request_id":"' + b"r" * 129 + b'"}'], "BAD_REQUEST"),
    ([b'{"command":"inspect","part_id":"A\\u001b[2J"}'], "BAD_REQUEST"),
    ([b'{"command":"ping","pad":"' + b"x" * 70_000 + b'"}'], "TOO_LARGE"),
    ([b'{"command":"ping","request_id":"\\ud83d\\ude00"}'], None),
    ([b"", b'{"command":"ping"}'], None),
    ([b'{"command":"status","schema":1}'], None),
]

#: Values that must not be taken for a boolean ``wait`` (each was once coerced).
NOT_BOOLEANS = ['"yes"', '"true"', '"1"', "1", "1.0", '"no"', '"0"', "-0.0", "0", "null",
                '"on"', '"off"', '"True"', "[]", "{}", '""', '"false"', "0.0", "2"]
#: Values that must not be taken for ``"schema": 1``.
NOT_SCHEMA_ONE = ["true", "1.0", '"1"', "[1]", "null", "false", "1e0"]


@pytest.mark.parametrize(
    ("raw", "code", "needle"),
    [
        (b"{not json", "BAD_JSON", "not valid JSON"),
        (b"\xff\xfe", "BAD_JSON", "not UTF-8"),
        (b"[1, 2]", "BAD_JSON", "must be a JSON object, got a array"),
        (b'"ping"', "BAD_JSON", "got a string"),
        (b"{}", "BAD_REQUEST", "'command' is missing"),
        (b'{"command": "explode"}', "UNKNOWN_COMMAND", "known commands: inspect, status, ping"),
        (b'{"command": 7}', "UNKNOWN_COMMAND", "7"),
        (b'{"command": "inspect", "part_id": 12}', "BAD_REQUEST", "part_id: must be a string"),
        (b'{"command": "inspect", "wait": "later"}', "BAD_REQUEST", "wait: must be true or false"),
        (b'{"command": "ping", "colour": "red"}', "BAD_REQUEST", "colour: unknown field"),
        (b'{"command": "ping", "schema": 99}', "UNSUPPORTED_SCHEMA", "speaks schema 1"),
        (b'{"command": "ping", "pad": "' + b"x" * 2000 + b'"}', "TOO_LARGE", "1024 bytes"),
        (b"", "BAD_JSON", "the request frame is empty"),
        (b'{"command": "ping", "x": ' + deep(40) + b"}", "BAD_JSON", "nest 41 levels deep"),
        (b'{"command": "inspect", "part_id": "a\\nb"}', "BAD_REQUEST",
         "part_id: must not contain control characters"),
    ],
)
def test_malformed_requests_get_error_replies(raw: bytes, code: str, needle: str) -> None:
    """Each malformed request becomes a reply with ok false, the code and a useful message."""
    reply = parse_request(raw, LIMIT)
    assert isinstance(reply, Reply)
    assert reply.ok is False
    assert reply.error is not None and reply.error.code == code
    assert needle in reply.error.message


@pytest.mark.parametrize("value", NOT_BOOLEANS)
def test_wait_must_be_a_json_boolean(value: str) -> None:
    """No string, number or null is coerced into ``wait``: each is BAD_REQUEST naming it."""
    raw = f'{{"command": "inspect", "wait": {value}, "request_id": "w"}}'.encode()
    reply = parse_request(raw, LIMIT)
    assert isinstance(reply, Reply) and reply.error is not None, reply
    assert reply.error.code == "BAD_REQUEST" and "wait" in reply.error.message
    assert reply.request_id == "w"


@pytest.mark.parametrize("value", NOT_SCHEMA_ONE)
def test_schema_must_be_the_integer_one(value: str) -> None:
    """``schema`` is not coerced either: true, 1.0 or "1" are refused, not taken for 1."""
    reply = parse_request(f'{{"command": "ping", "schema": {value}}}'.encode(), LIMIT)
    assert isinstance(reply, Reply) and reply.error is not None, reply
    assert reply.error.code == "BAD_REQUEST" and "schema must be the integer 1" in (
        reply.error.message)


@pytest.mark.parametrize(
    ("field", "value"),
    [("part_id", "12"), ("part_id", "true"), ("part_id", "[]"), ("request_id", "5"),
     ("request_id", "false"), ("request_id", '{"a": 1}')],
)
def test_strings_are_not_coerced(field: str, value: str) -> None:
    """Numbers, booleans and containers are not strings."""
    reply = parse_request(f'{{"command": "inspect", "{field}": {value}}}'.encode(), LIMIT)
    assert isinstance(reply, Reply) and reply.error is not None
    assert reply.error.code == "BAD_REQUEST" and f"{field}: must be a string" in (
        reply.error.message)


def test_request_id_is_echoed_in_errors() -> None:
    """A client's request_id comes back whenever it can be read, whatever the refusal."""
    assert parse_request(b'{"command": "nope", "request_id": "r-1"}', LIMIT).request_id == "r-1"
    big = b'{"command": "ping", "request_id": "r-2", "pad": "' + b"x" * 5000 + b'"}'
    too_large = parse_request(big, LIMIT)
    assert isinstance(too_large, Reply) and too_large.error is not None
    assert too_large.error.code == "TOO_LARGE" and too_large.request_id == "r-2"
    broken = parse_request(b'{"request_id": "r-3", "command": "ping", "x": [1,', LIMIT)
    assert isinstance(broken, Reply) and broken.request_id == "r-3"
    frames = read_request([b"id", b'{"request_id": "r-4", "command": "ping"}', b"x"], LIMIT)
    assert frames.refusal is not None and frames.refusal.request_id == "r-4"


def test_invalid_request_id_is_not_echoed() -> None:
    """A request_id the schema refuses (too long, control characters) is not sent back."""
    for rid in ("r" * 129, "a\\u0000b", "\\ud800"):
        reply = parse_request(f'{{"command": "ping", "request_id": "{rid}"}}'.encode(), LIMIT)
        assert isinstance(reply, Reply) and reply.request_id is None


def test_valid_requests_parse() -> None:
    """The three commands parse into their models; schema may be given or omitted."""
    assert isinstance(parse_request(b'{"command": "ping"}', LIMIT), PingRequest)
    assert isinstance(parse_request(b'{"command": "status", "schema": 1}', LIMIT), StatusRequest)
    req = parse_request(b'{"command": "inspect", "part_id": "A-7", "wait": true}', LIMIT)
    assert isinstance(req, InspectRequest) and req.part_id == "A-7" and req.wait
    req = parse_request(b'{"command": "inspect", "part_id": null, "wait": false}', LIMIT)
    assert isinstance(req, InspectRequest) and req.part_id is None and not req.wait


@pytest.mark.parametrize(
    ("frames", "route", "body"),
    [
        ([b"id", b"", b"{}"], [b"id", b""], [b"{}"]),  # REQ
        ([b"id", b"", b""], [b"id", b""], [b""]),  # REQ sending an empty frame
        ([b"id", b"{}"], [b"id"], [b"{}"]),  # DEALER
        ([b"id", b""], [b"id"], [b""]),  # DEALER sending an empty frame
        ([b"id", b"{}", b""], [b"id"], [b"{}", b""]),  # DEALER, two frames
        ([b"id", b"", b"a", b"b"], [b"id", b""], [b"a", b"b"]),  # REQ-like, two frames
        ([b"id"], [b"id"], []),
    ],
)
def test_reply_route_follows_the_client_framing(
    frames: list[bytes], route: list[bytes], body: list[bytes]
) -> None:
    """The reply goes back as [route..., one JSON frame]: a REQ client that sent an empty
    frame gets one frame, not two."""
    assert split_envelope(frames) == (route, body)


def test_encoded_reply_carries_schema_and_error() -> None:
    """Replies on the wire are JSON with schema, ok and error{code, message}."""
    data = json.loads(encode(error_reply("BUSY", "queue full", "inspect", "r")))
    assert data["schema"] == 1 and data["ok"] is False
    assert data["error"] == {"code": "BUSY", "message": "queue full"}


def test_encode_cannot_fail() -> None:
    """A reply holding what JSON cannot carry (a lone surrogate, NaN) still encodes."""
    reply = ok_reply("status", {"bad": "\ud800", "nan": float("nan")}, "\udfff")
    data = jsonio.loads(encode(reply))
    assert data["ok"] is True and data["result"] == {"bad": "\\ud800", "nan": None}
    assert data["request_id"] == "\\udfff"
    assert jsonio.loads(FALLBACK_REPLY)["error"]["code"] == "INTERNAL"


@pytest.mark.parametrize(("frames", "code"), HOSTILE_CORPUS)
def test_hostile_corpus(frames: list[bytes], code: str | None) -> None:
    """Every message of the corpus gets one valid reply frame with the expected code."""
    incoming = read_request([b"id", *frames], DEFAULT_LIMIT)
    if code is None:
        assert incoming.request is not None and incoming.refusal is None, incoming.refusal
        return
    assert incoming.refusal is not None
    data = jsonio.loads(encode(incoming.refusal))
    assert data["error"]["code"] == code, data


# --- the seeded fuzz run ---------------------------------------------------------------------

KEYS = ["command", "part_id", "wait", "request_id", "schema", "x", "", "\u00e9", "Command"]
COMMAND_WORDS = ["ping", "status", "inspect", "PING", "", "result", "inspect "]


def _fuzz_string(rng: random.Random) -> str:
    """Text as JSON would carry it: ASCII, controls, non-BMP, and lone surrogate escapes."""
    pick = rng.random()
    if pick < 0.5:
        return "".join(rng.choice("abcXYZ-_ 09") for _ in range(rng.randrange(0, 12)))
    if pick < 0.7:
        return rng.choice(COMMAND_WORDS)
    if pick < 0.8:
        return "r" * rng.choice([127, 128, 129, 300])
    return "".join(chr(rng.choice([0, 7, 0x1B, 0x7F, 0x9F, 0xE9, 0x1F600, 0xD800, 0xDFFF,
                                   0xFFFF, 0x10FFFF, 0x41])) for _ in range(rng.randrange(1, 6)))


def _fuzz_value(rng: random.Random, depth: int) -> Any:
    pick = rng.random()
    if depth > 0 and pick < 0.12:
        return [_fuzz_value(rng, depth - 1) for _ in range(rng.randrange(0, 3))]
    if depth > 0 and pick < 0.2:
        return {_fuzz_string(rng): _fuzz_value(rng, depth - 1) for _ in range(rng.randrange(3))}
    if pick < 0.3:
        return rng.choice([True, False, None])
    if pick < 0.45:
        return rng.choice([0, 1, -1, 2**63, -(2**64), 10**19, 1.0, -0.0, 1e308, 0.5])
    return _fuzz_string(rng)


def _fuzz_json(rng: random.Random) -> bytes:
    """A request-like object, encoded as JSON (lone surrogates written as escapes)."""
    obj: dict[str, Any] = {}
    if rng.random() < 0.9:
        obj["command"] = rng.choice(COMMAND_WORDS) if rng.random() < 0.85 else _fuzz_value(
            rng, 2)
    for _ in range(rng.randrange(0, 4)):
        key = rng.choice(KEYS)
        if key == "wait" and rng.random() < 0.5:
            obj[key] = rng.choice([True, False])
        elif key == "schema" and rng.random() < 0.5:
            obj[key] = 1
        else:
            obj[key] = _fuzz_value(rng, rng.choice([0, 1, 3, 40]))
    text = json.dumps(obj, ensure_ascii=True)  # ASCII: lone surrogates become \udXXX escapes
    if rng.random() < 0.05:
        text = text[:-1] + ', "n": ' + "9" * rng.choice([19, 21, 4400]) + "}"
    if rng.random() < 0.05:
        n = rng.choice([31, 33, 1000, 5000])
        text = text[:-1] + ', "d": ' + "[" * n + "]" * n + "}"
    return text.encode()


def _mutate(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randrange(1, 4)):
        op = rng.random()
        pos = rng.randrange(len(data) + 1)
        if op < 0.3 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op < 0.55:
            data[pos:pos] = rng.choice([b"[", b"{", b'"', b"\\", b"\\u", b"\\ud800", b"\x00",
                                        b"\xff", b"\xed\xa0\x80", b",", b"}", b"]", b"1e999"])
        elif op < 0.8:
            del data[pos:pos + rng.randrange(1, 8)]
        else:
            data = data[:pos]
    return bytes(data)


def fuzz_messages(seed: int, n: int) -> list[list[bytes]]:
    """``n`` messages (frame lists after the routing id), the same for the same seed."""
    rng = random.Random(seed)
    out: list[list[bytes]] = []
    for _ in range(n):
        pick = rng.random()
        if pick < 0.55:
            body = _fuzz_json(rng)
        elif pick < 0.85:
            body = _mutate(rng, _fuzz_json(rng))
        elif pick < 0.92:
            body = rng.randbytes(rng.randrange(0, 64))
        elif pick < 0.95:
            body = b'{"command": "ping", "request_id": "big", "x": "' + b"y" * rng.choice(
                [DEFAULT_LIMIT - 80, DEFAULT_LIMIT + 10]) + b'"}'
        else:
            body = b""
        frames = [body]
        if rng.random() < 0.1:
            frames = rng.choice([[b"", body], [body, b""], [b"", body, body], [body] * 3, []])
        out.append(frames)
    return out


ID_OK = re.compile(r"[^\x00-\x1f\x7f-\x9f]{0,128}")


def _echo_expected(frames: list[bytes]) -> str | None:
    """The request_id a reply must echo, judged independently of the module under test: the
    one frame is a JSON object (stdlib json) whose request_id is a valid string."""
    body = frames[1:] if len(frames) >= 2 and frames[0] == b"" else frames
    if len(body) != 1 or len(body[0]) > DEFAULT_LIMIT:
        return None
    try:
        data = json.loads(body[0].decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    rid = data.get("request_id")
    if not isinstance(rid, str) or not ID_OK.fullmatch(rid):
        return None
    try:
        rid.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return rid


def check_one(frames: list[bytes]) -> str:
    """Run one message through the logic the daemon runs; assert the reply's invariants."""
    incoming = read_request([b"peer", *frames], DEFAULT_LIMIT)
    assert (incoming.request is None) != (incoming.refusal is None)
    assert incoming.envelope in ([b"peer"], [b"peer", b""])
    reply = incoming.refusal or ok_reply(incoming.request.command, {"echo": "\ud800"},
                                         incoming.request.request_id)
    data = jsonio.loads(encode(reply))  # strict JSON, valid Unicode, one frame
    Reply.model_validate(data)
    if incoming.refusal is not None:
        assert data["ok"] is False and data["error"]["code"] in CODES, data
        assert data["error"]["message"]
    else:
        request = incoming.request
        if isinstance(request, InspectRequest):
            assert isinstance(request.wait, bool)
    expected = _echo_expected(frames)
    if expected is not None and data["request_id"] != expected:
        # The only refusal allowed to drop a readable request_id: duplicate keys.
        assert data["error"]["code"] == "BAD_JSON" and "more than once" in (
            data["error"]["message"]), (frames, data)
    return str(data["error"]["code"]) if incoming.refusal is not None else "OK"


def test_fuzz_10000_messages_seeded() -> None:
    """10,000+ seeded random and mutated messages (and the corpus): each gets one valid reply
    frame, an error code from the schema, and its request_id back when it is readable."""
    messages = fuzz_messages(seed=9, n=10_000) + [frames for frames, _ in HOSTILE_CORPUS]
    started = time.perf_counter()
    seen: dict[str, int] = {}
    for frames in messages:
        code = check_one(frames)
        seen[code] = seen.get(code, 0) + 1
    took = time.perf_counter() - started
    print(f"fuzz: {len(messages)} messages in {took:.1f} s: {sorted(seen.items())}")
    assert len(messages) >= 10_000
    # The run reaches every path that matters, valid requests included.
    assert {"OK", "BAD_JSON", "BAD_REQUEST", "UNKNOWN_COMMAND", "TOO_LARGE"} <= set(seen), seen

"""Tests of station.messaging.jsonio: bounded parsing and a dumps that cannot fail."""

from __future__ import annotations

import json
import math

import pytest

from station.messaging import jsonio


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"[" * 1000 + b"]" * 1000, "nest 1000 levels deep; at most 32"),
        (b'{"a":' * 33 + b"1" + b"}" * 33, "nest 33 levels deep"),
        (b"[" * 100_000, "nest 100000 levels deep"),
        (b"9" * 5000, "an integer of 5000 digits"),
        (b"-" + b"1" * 21, "an integer of 21 digits"),
        (b"1e999", "out of range"),
        (b"-1e400", "out of range"),
        (b"0." + b"1" * 50, "a number of 52 characters"),
        (b"NaN", "NaN is not JSON"),
        (b"[Infinity]", "Infinity is not JSON"),
        (b'"\\ud800"', "lone UTF-16 surrogate (U+D800"),
        (b'{"\\udfff": 1}', "lone UTF-16 surrogate (U+DFFF"),
        (b'["ok", ["\\udc00\\ud800"]]', "lone UTF-16 surrogate"),
        (b'"\xed\xa0\x80"', "not UTF-8: byte 0xed at offset 1"),
        (b"\xff", "not UTF-8"),
        (b'{"a": 1, "a": 2}', "key \"a\" appears more than once"),
        (b"{nope", "Expecting property name"),
        (b"", "Expecting value"),
    ],
)
def test_out_of_bounds_input_is_refused_with_the_rule(raw: bytes, needle: str) -> None:
    """Each kind of hostile JSON raises JsonRefused naming the rule and the value."""
    with pytest.raises(jsonio.JsonRefused) as info:
        jsonio.loads(raw)
    assert needle in str(info.value)


def test_input_within_bounds_parses_as_json_does() -> None:
    """Depth 32, 20-digit integers, surrogate pairs and brackets inside strings are fine."""
    deep = b"[" * 32 + b"]" * 32
    assert jsonio.loads(deep) == json.loads(deep)
    assert jsonio.loads(b"-12345678901234567890") == -12345678901234567890
    assert jsonio.loads(b'"\\ud83d\\ude00"') == "\U0001f600"
    assert jsonio.loads(b'{"s": "[[[[{{{{\\"]]]"}') == {"s": '[[[[{{{{"]]]'}
    assert jsonio.loads(b"1.5e3") == 1500.0


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    """The pre-scan counts structure, not the text of strings (escaped quotes included)."""
    assert jsonio.nesting_depth(b'{"a": "[[[[", "b": [1, [2]]}') == 3
    assert jsonio.nesting_depth(b'["\\"[[[", 1]') == 1
    assert jsonio.nesting_depth(b"1") == 0


def test_dumps_never_fails() -> None:
    """Lone surrogates, NaN, infinities and foreign objects come out as valid strict JSON."""
    value = {"id": "\ud800x", "\udfffkey": [math.nan, math.inf, -math.inf, 1.5],
             "obj": object(), "t": (1, 2), 3: "int key"}
    out = jsonio.dumps(value)
    data = jsonio.loads(out)
    assert data["id"] == "\\ud800x"
    assert data["\\udfffkey"] == [None, None, None, 1.5]
    assert data["obj"] == "<object>" and data["t"] == [1, 2] and data["3"] == "int key"


def test_dumps_of_plain_values_is_compact_utf8() -> None:
    """Ordinary values are dumped as compact UTF-8 (non-ASCII kept as is)."""
    assert jsonio.dumps({"a": "é", "b": [1, 2.5, None, True]}) == (
        '{"a":"é","b":[1,2.5,null,true]}'.encode()
    )


def test_printable_quotes_json_and_cuts_long_values() -> None:
    """Error messages quote input as JSON text, cut to the limit."""
    assert jsonio.printable(True) == "true"
    assert jsonio.printable("x" * 100, limit=10) == '"xxxxxx...'

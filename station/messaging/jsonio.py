"""JSON in and out of the station's sockets, safe against hostile bytes.

``loads`` parses one request frame with bounds the standard library does not have:

- nesting at most ``MAX_DEPTH`` arrays/objects deep (checked on the bytes before parsing, so a
  frame nested 100,000 deep costs one linear scan, never a recursion);
- integers of at most ``MAX_INT_DIGITS`` digits and numbers of at most ``MAX_NUMBER_CHARS``
  characters (CPython refuses to convert integers over 4,300 digits with a ``ValueError``
  that is not a ``JSONDecodeError``); no ``NaN``/``Infinity`` and no float that overflows;
- strings that are valid Unicode: strict UTF-8 bytes and no lone UTF-16 surrogate written as a
  ``\\ud800`` escape (such a string cannot be encoded again, so a reply echoing it would fail);
- no key twice in one object (which value would count is ambiguous).

Anything else raises ``JsonRefused`` with a message naming the rule, the limit and the value.

``dumps`` never fails: values JSON cannot carry (lone surrogates, NaN, infinities, objects
without a JSON form) are replaced by their text or ``null``, so every reply and publication
can be sent.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

#: Deepest nesting of arrays and objects accepted in a request [levels].
MAX_DEPTH = 32
#: Longest integer literal accepted in a request [digits].
MAX_INT_DIGITS = 20
#: Longest number literal (integer or float) accepted in a request [characters].
MAX_NUMBER_CHARS = 40

# A JSON string token (the alternatives are disjoint, so matching is linear).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
# Every byte except the four brackets, for bytes.translate(None, delete=...).
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
# A \uD800..\uDFFF escape: the only way a lone surrogate gets into a decoded string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonRefused(ValueError):
    """A frame is not JSON within the bounds above; the message says which rule and value."""


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in ``raw``, brackets inside strings not counted.

    Linear in the length of ``raw`` and never recursive. For malformed input (an unterminated
    string) the count may be too high, never too low.
    """
    brackets = _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    opens = brackets.count(b"[") + brackets.count(b"{")
    if opens <= 1:
        return opens
    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1)
    return int(steps.cumsum().max())


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JsonRefused(
            f"an integer of {digits} digits ({text[:12]}...); at most {MAX_INT_DIGITS} digits "
            "are accepted"
        )
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise JsonRefused(
            f"a number of {len(text)} characters ({text[:12]}...); at most "
            f"{MAX_NUMBER_CHARS} are accepted"
        )
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"the number {text} is out of range (it overflows a double)")
    return value


def _parse_constant(text: str) -> Any:
    raise JsonRefused(f"{text} is not JSON (NaN and Infinity are not numbers in JSON)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonRefused(f"key {printable(key)} appears more than once in one object")
        out[key] = value
    return out


def _check_strings(value: Any) -> None:
    """Raise on a string (or key) holding a lone surrogate; ``value`` is at most MAX_DEPTH deep."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _encodable(item)
        elif isinstance(item, dict):
            for key, val in item.items():
                _encodable(key)
                stack.append(val)
        elif isinstance(item, list):
            stack.extend(item)


def _encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JsonRefused(
            f"a string holds a lone UTF-16 surrogate (U+{ord(text[exc.start]):04X} at "
            f"character {exc.start}); strings must be valid Unicode"
        ) from None


def loads(raw: bytes) -> Any:
    """Parse ``raw`` (UTF-8 JSON) within the bounds of this module, or raise ``JsonRefused``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused(
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start} cannot be decoded"
        ) from None
    depth = nesting_depth(raw)
    if depth > MAX_DEPTH:
        raise JsonRefused(
            f"arrays/objects nest {depth} levels deep; at most {MAX_DEPTH} are accepted"
        )
    try:
        data = json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float,
            parse_constant=_parse_constant, object_pairs_hook=_object,
        )
    except JsonRefused:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        raise JsonRefused(str(exc)) from None
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(data)
    return data


def printable(value: Any, limit: int = 60) -> str:
    """``value`` as JSON text cut to ``limit`` characters, for messages that quote input."""
    text = dumps(value).decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clean(value: Any, depth: int = 0) -> Any:
    """``value`` with everything JSON cannot carry replaced (see ``dumps``)."""
    if depth > 2 * MAX_DEPTH + 64:
        return None
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {str(_clean(k if isinstance(k, str) else str(k), depth + 1)): _clean(v, depth + 1)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v, depth + 1) for v in value]
    return f"<{type(value).__name__}>"


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON; never raises (see the module docstring)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":")).encode("utf-8")
    except (ValueError, TypeError, RecursionError):
        pass
    return json.dumps(_clean(value), ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")).encode("utf-8")

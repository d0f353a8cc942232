"""Find the top-level ``"model"`` of a JSON object without parsing the object.

A request body can be hundreds of megabytes (images, audio, long prompts); building the
whole document to read one key costs several times the body in memory, and deep nesting
exhausts the recursion limit. ``model_span`` walks the top-level object with a few regular
expressions instead: nested values are skipped by counting brackets (strings, with their
escapes, are skipped whole), nothing is built, nothing recurses, and the only copy made is
of the ``model`` value itself. It checks the top level's structure (keys, colons, commas,
braces) and the balance of brackets below it; what lies inside nested values is left for
the backend to judge.
"""

from __future__ import annotations

import json
import re

from llamactl.errors import InvalidInput

__all__ = ["is_streamed", "model_span", "string_value", "value_span"]

# Possessive quantifiers throughout: the matcher then keeps no backtracking state, so a
# value of millions of strings or escapes is skipped in constant memory.
_SPACE = re.compile(rb"[ \t\r\n]*+")
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_SCALAR = re.compile(rb"-?[0-9][0-9.eE+-]*+|true|false|null")
# Inside a nested value: everything up to the next bracket, strings included whole.
_NESTED = re.compile(rb'(?:[^"\[\]{}\\]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+', re.DOTALL)
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


def model_span(body: bytes) -> tuple[int, int] | None:
    """Where the value of the top-level ``"model"`` key lies in ``body`` (the last one, as
    a JSON parser would keep); ``None`` if the object has no such key. ``InvalidInput`` when
    ``body`` is not a JSON object."""
    return value_span(body, "model")


def is_streamed(body: bytes) -> bool:
    """Whether ``body`` is a JSON object whose top-level ``stream`` is ``true``; ``False``
    for anything else, a body that is not JSON included. A body without the bytes
    ``"stream"`` is not scanned at all."""
    if b'"stream"' not in body:
        return False
    try:
        span = value_span(body, "stream")
    except InvalidInput:
        return False
    return span is not None and body[span[0] : span[1]] == b"true"


def value_span(body: bytes, name: str) -> tuple[int, int] | None:
    """Where the value of the top-level key ``name`` lies in ``body``, as ``model_span``."""
    key_bytes = json.dumps(name).encode()
    pos = _skip_space(body, 0)
    if pos >= len(body) or body[pos] != ord("{"):
        raise InvalidInput("the request body must be a JSON object")
    pos = _skip_space(body, pos + 1)
    if pos < len(body) and body[pos] == ord("}"):
        return _end(body, pos + 1, None)
    found: tuple[int, int] | None = None
    while True:
        key = _STRING.match(body, pos)
        if key is None:
            raise _invalid("expected a key string", pos)
        pos = _skip_space(body, key.end())
        if pos >= len(body) or body[pos] != ord(":"):
            raise _invalid("expected ':' after a key", pos)
        start = _skip_space(body, pos + 1)
        end = _skip_value(body, start)
        if _is_key(body, key.start(), key.end(), key_bytes, name):
            found = (start, end)
        pos = _skip_space(body, end)
        if pos < len(body) and body[pos] == ord(","):
            pos = _skip_space(body, pos + 1)
            continue
        if pos < len(body) and body[pos] == ord("}"):
            return _end(body, pos + 1, found)
        raise _invalid("expected ',' or '}'", pos)


def string_value(body: bytes, span: tuple[int, int]) -> str | None:
    """The text of the JSON string at ``span``; ``None`` if the value is not a string."""
    start, end = span
    if body[start] != ord('"'):
        return None
    try:
        value = json.loads(body[start:end])
    except (ValueError, UnicodeDecodeError) as exc:
        raise _invalid(f"bad string ({exc})", start) from None
    return value if isinstance(value, str) else None


def _is_key(body: bytes, start: int, end: int, key: bytes, name: str) -> bool:
    if end - start == len(key):
        return body.startswith(key, start)
    if body.find(b"\\", start, end) == -1:
        return False
    return string_value(body, (start, end)) == name  # an escaped spelling of it


def _skip_space(body: bytes, pos: int) -> int:
    match = _SPACE.match(body, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _skip_value(body: bytes, pos: int) -> int:
    """The end of the JSON value starting at ``pos``."""
    if pos >= len(body):
        raise _invalid("expected a value", pos)
    first = body[pos]
    if first == ord('"'):
        match = _STRING.match(body, pos)
        if match is None:
            raise _invalid("unterminated string", pos)
        return match.end()
    if first in _OPEN:
        return _skip_nested(body, pos)
    scalar = _SCALAR.match(body, pos)
    if scalar is None:
        raise _invalid("expected a value", pos)
    return scalar.end()


def _skip_nested(body: bytes, pos: int) -> int:
    """The end of the array or object at ``pos``, counting brackets (no recursion)."""
    depth = 0
    size = len(body)
    while pos < size:
        char = body[pos]
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
            if depth == 0:
                return pos + 1
        else:
            raise _invalid("unterminated string or stray backslash", pos)
        match = _NESTED.match(body, pos + 1)
        assert match is not None  # the pattern matches the empty string
        pos = match.end()
    raise _invalid("unterminated array or object", pos)


def _end(body: bytes, pos: int, found: tuple[int, int] | None) -> tuple[int, int] | None:
    if _skip_space(body, pos) != len(body):
        raise _invalid("unexpected data after the object", pos)
    return found


def _invalid(what: str, pos: int) -> InvalidInput:
    return InvalidInput(f"the request body is not valid JSON: {what} at byte {pos}")

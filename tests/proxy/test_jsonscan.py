"""The bounded scan for a JSON body's top-level ``model``: what json.loads would read."""

from __future__ import annotations

import json

import pytest

from llamactl.errors import InvalidInput
from llamactl.proxy import jsonscan
from llamactl.proxy.jsonscan import model_span, string_value


def model_of(body: bytes) -> str | None:
    span = model_span(body)
    return None if span is None else string_value(body, span)


@pytest.mark.parametrize(
    "document",
    [
        {"model": "a", "messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"model": "inner", "x": [[], {}, "]}"]}], "model": "b"},
        {"stream": True, "n": -1.5e3, "stop": None, "model": "caf\u00e9 \U0001f600"},
        {"prompt": 'say "model": "x" \\ done', "model": "c"},
        {"model": "first", "x": 1, "model ": "not it"},
        {"x": {"model": "nested only"}},
        {},
    ],
)
def test_the_scan_reads_what_json_loads_reads(document: dict[str, object]) -> None:
    for body in (json.dumps(document), json.dumps(document, indent=2, ensure_ascii=False)):
        assert model_of(body.encode()) == json.loads(body).get("model")


def test_the_last_duplicate_and_escaped_keys_count_as_json_loads_has_it() -> None:
    body = b'{"model": "one", "mod\\u0065l": "two"}'
    assert model_of(body) == json.loads(body)["model"] == "two"


def test_a_non_string_model_has_no_value() -> None:
    assert model_of(b'{"model": 3}') is None
    assert model_of(b'{"model": ["a"]}') is None


def test_the_span_is_the_value_as_written() -> None:
    body = b'{ "model" :\t"vl" , "x": 1}'
    start, end = model_span(body)  # type: ignore[misc]
    assert body[start:end] == b'"vl"'


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'"model"',
        b"[" * 100_000,
        b'{"model": "a", "x": ' + b"[" * 100_000,
        b'{"model": "a"',
        b'{"model" "a"}',
        b'{"model": "a",}',
        b'{"model": "a"} trailing',
        b'{"model": "unterminated}',
        b'{"x": ["unterminated]}',
        b'{"x": [\\]}',
        b"{model: 1}",
        b'{"x": nope}',
        b'\xef\xbb\xbf{"model": "bom"}',
        b"--b\r\nContent-Disposition: form-data\r\n",
    ],
)
def test_what_is_not_a_json_object_is_invalid_json(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        model_of(body)


def test_deep_nesting_below_the_top_level_is_skipped_without_recursion() -> None:
    body = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b', "model": "deep"}'
    assert model_of(body) == "deep"


@pytest.mark.parametrize(
    ("body", "streamed"),
    [
        (b'{"model": "m", "stream": true}', True),
        (b'{"stream":true,"model":"m"}', True),
        (b'{"str\\u0065am": true}', False),  # not looked for: no progress, no harm
        (b'{"stream": false}', False),
        (b'{"stream": "true"}', False),
        (b'{"stream": true, "stream": false}', False),  # the last one counts, as in JSON
        (b'{"options": {"stream": true}}', False),  # not at the top level
        (b'{"prompt": "\\"stream\\": true"}', False),
        (b'{"model": "m"}', False),
        (b'not json "stream": true', False),
        (b'{"stream": true', False),
        (b"", False),
    ],
)
def test_is_streamed(body: bytes, streamed: bool) -> None:
    assert jsonscan.is_streamed(body) is streamed

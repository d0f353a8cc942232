"""The model of a body is the same whether it is parsed whole (small) or scanned (large)."""

from __future__ import annotations

import pytest

from llamactl.errors import InvalidInput
from llamactl.proxy import jsonscan
from llamactl.proxy.app import _PARSED_WHOLE, _model_of

JSON_SCOPE = {"headers": [(b"content-type", b"application/json")]}
BODIES = [
    b'{"model": "a", "messages": []}',
    b'{"model": "a", "model": "b"}',
    b'{"mod\\u0065l": "esc"}',
    b'{"messages": [1, 2, {"model": "nested"}], "model": "top"}',
    b'{"model": "a", "messages": [tru]}',  # nested value not valid JSON: the scan decides
]


def _padded(body: bytes) -> bytes:
    """``body`` with a filler key making it larger than what is parsed whole."""
    return b'{"pad": "' + b"x" * (_PARSED_WHOLE + 1) + b'", ' + body[1:]


@pytest.mark.parametrize("body", BODIES)
def test_small_and_large_bodies_name_the_same_model(body: bytes) -> None:
    span = jsonscan.model_span(body)
    assert span is not None
    expected = jsonscan.string_value(body, span)
    assert _model_of(JSON_SCOPE, body) == (expected, True)
    assert _model_of(JSON_SCOPE, _padded(body)) == (expected, True)


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'{"model": 3}', b'{"model": ""}', b"{", b"[" * 10_000]
)
def test_no_model_string_is_refused_either_way(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        _model_of(JSON_SCOPE, body)

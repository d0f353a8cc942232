"""Reading ``usage`` from the last pieces of a response, never parsing the body."""

from __future__ import annotations

import json

import pytest

from llamactl.observe import usage_of


def openai_body(prompt: int, completion: int) -> bytes:
    return json.dumps(
        {
            "choices": [{"message": {"content": 'a "usage" in quotes: \\"usage\\"'}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
        }
    ).encode()


def test_a_whole_response() -> None:
    body = openai_body(12, 34)
    assert usage_of(body, None, body) == (12, 34)


def test_no_usage_reported() -> None:
    body = b'{"choices": [{"message": {"content": "hi"}}]}'
    assert usage_of(body, None, body) == (None, None)


def test_a_stream_whose_last_event_carries_it_before_done() -> None:
    first = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\n'
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}\n\n'
    done = b"data: [DONE]\n\n"
    assert usage_of(first, usage, done) == (5, 7)  # [DONE] came in a piece of its own
    assert usage_of(first, first, usage + done) == (5, 7)


def test_usage_split_across_the_last_two_pieces() -> None:
    body = openai_body(3, 4)
    cut = body.index(b'"completion_tokens"') + 5
    assert usage_of(body[:cut], body[:cut], body[cut:]) == (3, 4)


def test_an_anthropic_stream_counts_input_first_and_output_last() -> None:
    start = (
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
        b'{"input_tokens":21,"output_tokens":1}}}\n\n'
    )
    delta = (
        b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":15}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert usage_of(start, None, delta) == (21, 15)


@pytest.mark.parametrize("spacing", [b":", b": ", b" : "])
def test_spacing_around_the_colon(spacing: bytes) -> None:
    body = b'{"usage": {"input_tokens"' + spacing + b'8, "output_tokens"' + spacing + b"9}}"
    assert usage_of(body, None, body) == (8, 9)


def test_a_stream_is_searched_in_its_last_two_events_only() -> None:
    first = b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
    early = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}\n\n'
    events = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n' * 40
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}\n\n'
    done = b"data: [DONE]\n\n"
    assert usage_of(first, None, early + events + done, streamed=False) == (1, 2)
    assert usage_of(first, None, early + events + done, streamed=True) == (None, None)
    assert usage_of(first, None, early + events + usage + done, streamed=True) == (5, 7)
    assert usage_of(first, events + usage, done, streamed=True) == (5, 7)

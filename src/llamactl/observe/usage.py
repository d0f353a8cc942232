"""The token counts a response reports in its ``usage``, read from its last pieces.

OpenAI-shaped responses report ``prompt_tokens`` / ``completion_tokens``, Anthropic-shaped
ones ``input_tokens`` / ``output_tokens``; a stream carries them in its last event (OpenAI
with ``stream_options.include_usage``, Anthropic's ``message_delta``), and Anthropic's
input count in its first (``message_start``). Only the pieces kept by the tally are looked
at, with a regular expression from the last ``"usage"`` on: the body is never parsed.
"""

from __future__ import annotations

import re

__all__ = ["usage_of"]

_USAGE = b'"usage"'
_PROMPT = re.compile(rb'"(?:prompt_tokens|input_tokens)"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"(?:completion_tokens|output_tokens)"\s*:\s*(\d+)')


# The common shapes, read in one match where the last ``"usage"`` starts: OpenAI's order
# of the two counts, and llama-server's (completion first).
_PROMPT_FIRST = re.compile(
    rb'"usage"\s*:\s*\{\s*"prompt_tokens"\s*:\s*(\d+)\s*,\s*"completion_tokens"\s*:\s*(\d+)'
)
_COMPLETION_FIRST = re.compile(
    rb'"usage"\s*:\s*\{\s*"completion_tokens"\s*:\s*(\d+)\s*,\s*"prompt_tokens"\s*:\s*(\d+)'
)


def usage_of(
    first: bytes | None, previous: bytes | None, last: bytes | None, streamed: bool = False
) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` from a response's first, next-to-last and
    last body pieces (each ``None`` if there was none); ``None`` for what is not reported.
    ``streamed``: the body is an event stream, whose ``usage`` is in one of its last two
    events (the one before ``[DONE]`` or ``message_stop``), so only those are searched."""
    if last is None:
        return None, None
    tail = last
    start = _last_usage(last, streamed)
    if start >= 0:
        match = _PROMPT_FIRST.match(last, start)
        if match is not None:
            return int(match.group(1)), int(match.group(2))
        match = _COMPLETION_FIRST.match(last, start)
        if match is not None:
            return int(match.group(2)), int(match.group(1))
    elif previous is not None:
        tail = previous + last  # the usage may be cut between the two
        start = _last_usage(tail, streamed)
    prompt = completion = None
    if start >= 0:
        prompt = _number(_PROMPT, tail, start)
        completion = _number(_COMPLETION, tail, start)
    if prompt is None and first is not None and first is not last:
        start = first.find(_USAGE)
        if start >= 0:
            prompt = _number(_PROMPT, first, start)
    return prompt, completion


def _last_usage(data: bytes, streamed: bool) -> int:
    """Where the last ``"usage"`` of ``data`` starts (-1: none); in a stream, from the
    start of its next-to-last event on."""
    low = 0
    if streamed:
        low = max(data.rfind(b"data:", 0, data.rfind(b"data:")), 0)
    return data.rfind(_USAGE, low)


def _number(pattern: re.Pattern[bytes], text: bytes, start: int) -> int | None:
    match = pattern.search(text, start, start + 400)  # a usage object is short
    return int(match.group(1)) if match else None

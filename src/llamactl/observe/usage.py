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
    first: bytes | None, previous: bytes | None, last: bytes | None
) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` from a response's first, next-to-last and
    last body pieces (each ``None`` if there was none); ``None`` for what is not reported."""
    if last is not None:
        start = last.rfind(_USAGE)
        if start >= 0:
            match = _PROMPT_FIRST.match(last, start)
            if match is not None:
                return int(match.group(1)), int(match.group(2))
            match = _COMPLETION_FIRST.match(last, start)
            if match is not None:
                return int(match.group(2)), int(match.group(1))
    tail = _usage_tail(previous, last)
    prompt = completion = None
    if tail is not None:
        prompt = _number(_PROMPT, tail)
        completion = _number(_COMPLETION, tail)
    if prompt is None and first is not None and first is not last:
        start = first.find(_USAGE)
        if start >= 0:
            prompt = _number(_PROMPT, first[start:])
    return prompt, completion


def _usage_tail(previous: bytes | None, last: bytes | None) -> bytes | None:
    """The bytes from the last ``"usage"`` on, in the last piece or across the last two."""
    if last is None:
        return None
    start = last.rfind(_USAGE)
    if start >= 0:
        return last[start:]
    if previous is None:
        return None
    both = previous + last
    start = both.rfind(_USAGE)
    return both[start:] if start >= 0 else None


def _number(pattern: re.Pattern[bytes], text: bytes) -> int | None:
    match = pattern.search(text, 0, 400)  # a usage object is short
    return int(match.group(1)) if match else None

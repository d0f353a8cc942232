"""Durations written as a number and a unit, repeated: ``"300ms"``, ``"90s"``, ``"1h30m"``.

Owns parsing and formatting only. Negative durations are refused because no setting
that takes a duration has a meaning for them.
"""

from __future__ import annotations

import datetime
import re
from fractions import Fraction

__all__ = ["format_duration", "parse_duration"]

_MICROS_PER_UNIT: dict[str, Fraction] = {
    "ns": Fraction(1, 1000),
    "us": Fraction(1),
    "µs": Fraction(1),  # U+00B5 MICRO SIGN
    "μs": Fraction(1),  # U+03BC GREEK SMALL LETTER MU
    "ms": Fraction(1000),
    "s": Fraction(1_000_000),
    "m": Fraction(60_000_000),
    "h": Fraction(3_600_000_000),
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_EXAMPLES = 'e.g. "300ms", "90s", "5m", "1h30m"'


def parse_duration(text: str) -> datetime.timedelta:
    """Parse a duration such as ``"1h30m"``; raise ``ValueError`` saying what is wrong.

    Sub-microsecond precision is rounded to the nearest microsecond.
    """
    body = text.strip()
    if body.startswith("-"):
        raise ValueError("must not be negative")
    body = body.removeprefix("+")
    if body == "0":
        return datetime.timedelta(0)
    if not body:
        raise ValueError(f"expected a duration ({_EXAMPLES})")
    micros = Fraction(0)
    position = 0
    while position < len(body):
        match = _PART.match(body, position)
        if match is None:
            raise ValueError(f"expected a duration with units ns, us, ms, s, m, h ({_EXAMPLES})")
        micros += Fraction(match.group(1)) * _MICROS_PER_UNIT[match.group(2)]
        position = match.end()
    return datetime.timedelta(microseconds=round(micros))


def format_duration(value: datetime.timedelta) -> str:
    """Render a duration compactly so that ``parse_duration`` reads it back unchanged."""
    total = value // datetime.timedelta(microseconds=1)
    if total < 0:
        return "-" + format_duration(-value)
    if total == 0:
        return "0s"
    if total < 1_000_000:
        return f"{total // 1000}ms" if total % 1000 == 0 else f"{total}us"
    hours, rest = divmod(total, 3_600_000_000)
    minutes, micros = divmod(rest, 60_000_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if micros:
        text += _format_seconds(micros)
    return text


def _format_seconds(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    if fraction == 0:
        return f"{seconds}s"
    return f"{seconds}.{fraction:06d}".rstrip("0") + "s"

"""Strict checks for values that arrive as decoded JSON, and the errors they raise.

Every check takes the key it is checking (as the user spelled it) so that the
``InvalidOptions`` it raises names that key and the offending value in one sentence:
``gpu_layers: expected an integer, got 'lots'``. Nothing here does I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from llamactl.errors import InvalidOptions

__all__ = [
    "check_bool",
    "check_float",
    "check_int",
    "check_str",
    "check_str_list",
    "check_str_map",
    "describe",
    "expected",
    "invalid",
    "nested",
    "stringify",
]


def describe(value: object) -> str:
    """Render a decoded JSON value the way a user typed it: strings quoted, ``true``, ``null``."""
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def invalid(field: str, detail: str, value: object) -> InvalidOptions:
    """Build the error for ``field``: the message is ``"<field>: <detail>"``."""
    return InvalidOptions(f"{field}: {detail}", field=field, value=value)


def expected(field: str, what: str, value: object) -> InvalidOptions:
    """Build the error saying that ``field`` expected ``what`` and got ``value``."""
    return invalid(field, f"expected {what}, got {describe(value)}", value)


def nested(exc: InvalidOptions, prefix: str) -> InvalidOptions:
    """Re-raise-able copy of ``exc`` with its field moved under ``prefix`` (dotted path)."""
    if not exc.field:
        return invalid(prefix, exc.message, exc.value)
    detail = exc.message.removeprefix(f"{exc.field}: ")
    return invalid(f"{prefix}.{exc.field}", detail, exc.value)


def check_bool(field: str, value: object) -> bool:
    """Accept only a JSON boolean."""
    if isinstance(value, bool):
        return value
    raise expected(field, "true or false", value)


def check_int(field: str, value: object) -> int:
    """Accept a JSON integer (or a float without a fractional part); never a bool or string."""
    if isinstance(value, bool):
        raise expected(field, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise expected(field, "an integer", value)


def check_float(field: str, value: object) -> float:
    """Accept a finite JSON number (integers included); never a bool or string."""
    if type(value) is float and math.isfinite(value):  # the common case, checked first
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise expected(field, "a number", value)
    number = float(value)
    if not math.isfinite(number):
        raise expected(field, "a finite number", value)
    return number


def check_str(field: str, value: object) -> str:
    """Accept a JSON string that can be passed as a process argument (no NUL)."""
    if not isinstance(value, str):
        raise expected(field, "a string", value)
    if "\x00" in value:
        raise expected(field, "a string without NUL characters", value)
    return value


def check_str_list(field: str, value: object) -> list[str]:
    """Accept a JSON array of strings."""
    if not isinstance(value, list | tuple):
        raise expected(field, "a list of strings", value)
    return [check_str(f"{field}[{index}]", item) for index, item in enumerate(value)]


def check_str_map(field: str, value: object) -> dict[str, str]:
    """Accept a JSON object whose values are all strings."""
    if not isinstance(value, Mapping):
        raise expected(field, "an object of strings", value)
    result: dict[str, str] = {}
    for key, item in value.items():
        name = check_str(field, key)
        result[name] = check_str(f"{field}.{name}", item)
    return result


def stringify(field: str, value: object) -> str:
    """Turn a scalar JSON value into its command-line spelling (for unknown backend keys).

    ``True`` → ``"true"``, ``4`` → ``"4"``, ``0.5`` → ``"0.5"``, ``1e6`` → ``"1000000.0"``
    (Python's shortest round-trip form). Lists, objects and null have no single spelling.
    """
    if isinstance(value, str):
        return check_str(field, value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(check_float(field, value))
    raise expected(field, "a string, number or boolean for an unknown option", value)

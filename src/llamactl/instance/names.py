"""The instance naming rule. No I/O.

A name is 1 to 50 characters of ASCII letters, digits, ``_``, ``-`` and ``.``, and does not
start with ``.``. That keeps every name usable as a file name, a URL path segment and a
model id without escaping, and rules out ``.``, ``..`` and hidden files.
"""

from __future__ import annotations

import re

from llamactl.errors import InvalidInstanceName

__all__ = ["MAX_NAME_LENGTH", "NAME_RULE", "validate_name"]

MAX_NAME_LENGTH = 50
NAME_RULE = (
    f"a name is 1 to {MAX_NAME_LENGTH} characters of letters, digits, '_', '-' and '.', "
    "and does not start with '.'"
)
_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")


def validate_name(name: str) -> str:
    """Return ``name`` unchanged if it follows the rule; raise ``InvalidInstanceName`` if not."""
    if not isinstance(name, str):
        raise InvalidInstanceName(f"Invalid instance name {name!r}: it must be a string.")
    if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise InvalidInstanceName(f"Invalid instance name {name!r}: {NAME_RULE}.")
    return name

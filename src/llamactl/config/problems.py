"""The one-line messages of configuration errors."""

from __future__ import annotations

from llamactl.errors import ConfigError

__all__ = ["PREFIX", "file_problem", "invalid_value", "one_line"]

PREFIX = "invalid configuration: "
_MAX_VALUE_CHARS = 80


def one_line(text: str) -> str:
    """Collapse whitespace runs (newlines included) so a message stays on one line."""
    return " ".join(text.split())


def _shown(value: object) -> str:
    text = one_line(repr(value))
    if len(text) > _MAX_VALUE_CHARS:
        return text[: _MAX_VALUE_CHARS - 3] + "..."
    return text


def invalid_value(key: str, value: object, source: str, reason: str) -> ConfigError:
    """``invalid configuration: <key> = <value> (<source>): <reason>``."""
    message = f"{PREFIX}{key} = {_shown(value)} ({source}): {one_line(reason)}"
    return ConfigError(message, key=key, value=value, source=source)


def file_problem(
    reason: str, *, key: str = "", value: object = None, source: str = ""
) -> ConfigError:
    """A problem with a whole file rather than one value (missing, unreadable, bad syntax)."""
    return ConfigError(PREFIX + one_line(reason), key=key, value=value, source=source)

"""The exit codes of ``llamactl``: one table, and the one place a failure gets its code.

``ExitCode`` is the table (the README's "Exit codes" lists it; a test holds the two
equal). ``exit_code`` maps a failure to its code, and ``reports_failures`` is how every
command fails: a ``LlamactlError`` becomes one line on stderr (``llamactl: MESSAGE``, then
the details of a server's error indented) and that code. No command calls ``sys.exit`` or
returns a number of its own.

click's own errors keep click's codes, which the table names (a test pins them):
``click.UsageError`` (an unknown command or option, a bad value, a missing argument, and
what the commands raise before any request) exits with ``USAGE``, ``click.Abort`` (a
declined confirmation, Ctrl-C) with ``ERROR``. This module knows no command: what a
failure says is the caller's ``describe``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from enum import IntEnum
from typing import ParamSpec, TypeVar

import click

from llamactl.errors import ApiError, LlamactlError, Unreachable

__all__ = ["ExitCode", "exit_code", "reports_failures"]

P = ParamSpec("P")
R = TypeVar("R")

# What a failed command says: the message for the error, given the command's parameters.
Describe = Callable[[LlamactlError, Mapping[str, object]], str]


class ExitCode(IntEnum):
    """How a ``llamactl`` command ended; ``meaning`` is the README's text for it."""

    meaning: str

    def __new__(cls, value: int, meaning: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.meaning = meaning
        return member

    OK = 0, "done (`logs -f` too, when Ctrl-C ends it)"
    ERROR = (
        1,
        "the command failed: the server refused it (unknown instance, name taken, wrong key,"
        " invalid options, a backend that failed to start), something local failed (the"
        " configuration, the database, a port in use), or a confirmation was declined or"
        " Ctrl-C pressed",
    )
    USAGE = (
        2,
        "usage error: an unknown command or option, a missing argument, a bad value or key",
    )
    UNREACHABLE = (
        3,
        "the server cannot be reached: connection refused, unknown host, timeout, the"
        " connection cut (also when the stream of `logs -f` ends)",
    )


def exit_code(exc: LlamactlError) -> ExitCode:
    """The code a command exits with when it fails with ``exc``.

    Only ``Unreachable`` has a code of its own: whatever error status the server answers
    with (401, 404, 409, 422, 5xx), and whatever fails locally, is ``ERROR``.
    """
    if isinstance(exc, Unreachable):
        return ExitCode.UNREACHABLE
    return ExitCode.ERROR


def _report(message: str, details: tuple[str, ...]) -> None:
    """``llamactl: MESSAGE`` on stderr, then the error's details indented."""
    click.echo(f"llamactl: {message}", err=True)
    for line in details:
        click.echo(f"  {line}", err=True)


def _message(exc: LlamactlError, params: Mapping[str, object]) -> str:
    return exc.message


def reports_failures(
    describe: Describe = _message,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a command exit with its code for every ``LlamactlError`` it raises.

    ``describe`` gets the error and the command's keyword arguments (an instance ``name``,
    a ``url``) and says what happened; by default the error's own message.
    """

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return command(*args, **kwargs)
            except LlamactlError as exc:
                _report(describe(exc, kwargs), exc.details if isinstance(exc, ApiError) else ())
                sys.exit(exit_code(exc))

        return wrapper

    return decorate

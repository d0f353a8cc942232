"""How the client commands print and ask: ``--json``, lines, a confirmation.

``--json`` prints the server's JSON as it came, indented for reading; people get lines
(made by ``tables``). A command that deletes asks first, on a terminal only: off one it
needs ``--yes``, so that a script never hangs on a question nobody sees. Only click is
imported.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import TypeVar

import click

__all__ = [
    "confirm",
    "echo_lines",
    "ensure_can_ask",
    "json_option",
    "print_json",
    "stdin_is_terminal",
]

F = TypeVar("F", bound=Callable[..., object])


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")(command)


def print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2))


def echo_lines(lines: Iterable[str]) -> None:
    click.echo("\n".join(lines))


def stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def ensure_can_ask() -> None:
    """A usage error that asks for ``--yes`` when stdin is not a terminal, so that a
    command can find out before it makes a request."""
    if not stdin_is_terminal():
        raise click.UsageError("stdin is not a terminal: pass --yes to delete without asking")


def confirm(question: str) -> None:
    """Ask ``question`` on a terminal (no is ``click.Abort``); off one, ``ensure_can_ask``'s
    usage error."""
    ensure_can_ask()
    click.confirm(question, abort=True)

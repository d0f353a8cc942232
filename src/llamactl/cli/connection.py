"""Which server a client command talks to, with which key: ``--url`` and ``--api-key``.

Both flags are accepted on the ``instances`` group (before the command name) and on each
command (after it); the command's own flag wins, then the group's, then the environment
(``LLAMACTL_URL``, ``LLAMACTL_API_KEY``) and the defaults of ``llamactl.client``: a local
server's URL and its generated key file. ``client`` makes the ``ApiClient``. The client
module is imported only when a command runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from llamactl.cli.context import config_path
from llamactl.errors import LlamactlError

if TYPE_CHECKING:
    from llamactl.client import ApiClient

__all__ = [
    "DEFAULT_URL_HELP",
    "check_url",
    "client",
    "connection_options",
    "group_connection_options",
    "remember_connection",
    "server_url",
]

F = TypeVar("F", bound=Callable[..., object])

DEFAULT_URL_HELP = "http://$LLAMACTL_HOST:$LLAMACTL_PORT, else http://127.0.0.1:8080"

# Where the group keeps ``--url`` / ``--api-key`` given before the command name.
_GROUP_CONNECTION = "llamactl.instances.connection"


def check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A click callback: ``value`` if it is an http(s) URL with a host."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise click.BadParameter(f"expected http://HOST:PORT, got {value!r}")
    return value


def connection_options(command: F) -> F:
    """``--url`` and ``--api-key``, also read from LLAMACTL_URL and LLAMACTL_API_KEY."""
    command = click.option(
        "--api-key",
        envvar="LLAMACTL_API_KEY",
        help="Management key [env: LLAMACTL_API_KEY; default: a local server's key file].",
    )(command)
    return click.option(
        "--url",
        envvar="LLAMACTL_URL",
        callback=check_url,
        help=f"The llamactl server [env: LLAMACTL_URL; default: {DEFAULT_URL_HELP}].",
    )(command)


def group_connection_options(group: F) -> F:
    """``--url`` and ``--api-key`` of a group (``instances``, ``keys``), for every command
    in it; the group passes them to ``remember_connection``."""
    group = click.option(
        "--api-key", help="Management key, for every command. Also accepted after it."
    )(group)
    return click.option(
        "--url",
        callback=check_url,
        help="The llamactl server, for every command [env: LLAMACTL_URL; default: "
        f"{DEFAULT_URL_HELP}]. Also accepted after the command.",
    )(group)


def remember_connection(ctx: click.Context, url: str | None, api_key: str | None) -> None:
    """Keep the group's ``--url`` and ``--api-key`` for the command after it."""
    ctx.meta[_GROUP_CONNECTION] = {"url": url, "api_key": api_key}


def _given(name: str, value: str | None) -> str | None:
    """The value of option ``name`` after the group's: the command's own flag wins, then
    the group's (``llamactl instances --url X list``), then the environment or default."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return value
    if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
        return value
    group: dict[str, str | None] = ctx.meta.get(_GROUP_CONNECTION, {})
    return group.get(name) or value


def server_url(url: object) -> str | None:
    """The URL a command talks to (``None`` if that cannot be told, e.g. a bad variable)."""
    from llamactl.client import default_url

    try:
        return _given("url", url if isinstance(url, str) else None) or default_url(os.environ)
    except LlamactlError:
        return None


@contextmanager
def client(url: str | None, api_key: str | None) -> Iterator[ApiClient]:
    """The ``ApiClient`` for a command's ``--url`` and ``--api-key``."""
    from llamactl.client import ApiClient, default_api_key, default_url, likely_api_key

    url = _given("url", url) or default_url(os.environ)
    key = _given("api_key", api_key)
    path = config_path()

    def configured_key() -> str | None:
        return default_api_key(url, os.environ, path)

    fallback = None
    if not key:
        key = likely_api_key(url, os.environ, path)
        fallback = configured_key if key else None
        key = key or configured_key()
    with ApiClient(url, key, key_fallback=fallback) as api:
        yield api

"""``llamactl serve`` (and ``llamactl`` alone): run the server on this machine.

The command parses ``--host`` and ``--port``, loads the configuration and hands it to
``server.runner.serve``; it holds no rule of its own. The server's stack is imported only
when it runs, so that ``--help`` and the client commands do not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from llamactl.cli.context import load_config
from llamactl.cli.exits import reports_failures

if TYPE_CHECKING:
    from llamactl.config import AppConfig

__all__ = ["address_options", "remember_address", "serve"]

F = TypeVar("F", bound=Callable[..., object])

# Where ``llamactl --host H --port P`` keeps its address for ``serve``.
_ADDRESS = "llamactl.address"


def address_options(command: F) -> F:
    """``--host`` and ``--port`` of the server, over the configuration's."""
    command = click.option(
        "--port",
        type=click.IntRange(1, 65535),
        help="Port to listen on [default: server.port, env LLAMACTL_PORT, else 8080].",
    )(command)
    return click.option(
        "--host", help="Address to listen on [default: server.host, env LLAMACTL_HOST]."
    )(command)


def remember_address(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Keep the address given before the command name (``llamactl --port P serve``)."""
    ctx.meta[_ADDRESS] = {"host": host, "port": port}


@click.command()
@address_options
@click.pass_context
@reports_failures()
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Start the server (the default command)."""
    import logging

    from llamactl import __version__
    from llamactl.server.runner import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    given = ctx.meta.get(_ADDRESS, {})
    config = _with_address(load_config(), host or given.get("host"), port or given.get("port"))
    click.echo(
        f"llamactl {__version__}: data in {config.data_dir}, database {config.database.shown}"
    )
    run_server(config)


def _with_address(config: AppConfig, host: str | None, port: int | None) -> AppConfig:
    """``config`` listening on ``host`` and ``port`` where they are given."""
    changes: dict[str, object] = {}
    if host is not None:
        changes["host"] = host
    if port is not None:
        changes["port"] = port
    if not changes:
        return config
    return config.model_copy(update={"server": config.server.model_copy(update=changes)})

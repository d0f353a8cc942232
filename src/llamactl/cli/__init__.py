"""The ``llamactl`` command: a thin shell over the Python API.

``llamactl`` alone starts the server. Subcommands show the configuration and manage the
database. Every ``LlamactlError`` becomes one line on stderr and exit code 1; usage errors
exit with 2.

Only click is imported with this module: the configuration, the database layer, the
server and Rich are imported by the commands that use them, so that ``--help`` and the
client commands do not pay for SQLAlchemy, FastAPI or uvicorn.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from llamactl.cli.instances import instances_group, ps_command
from llamactl.errors import LlamactlError

if TYPE_CHECKING:
    from llamactl import database
    from llamactl.config import AppConfig

__all__ = ["main"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., object])

EXIT_ERROR = 1


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a ``LlamactlError`` into one line on stderr and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except LlamactlError as exc:
            click.echo(f"llamactl: {exc.message}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper


def _config(ctx: click.Context) -> AppConfig:
    from llamactl.config import load_config

    path: str | None = ctx.obj
    return load_config(path, os.environ)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from llamactl import __version__

    click.echo(f"llamactl version: {__version__}")
    ctx.exit()


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


# Where ``llamactl --host H --port P`` keeps its address for ``serve``.
_ADDRESS = "llamactl.address"


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Configuration file (default: $LLAMACTL_CONFIG_PATH, ./llamactl.yaml, ...).",
)
@address_options
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and exit.",
)
@click.pass_context
def main(ctx: click.Context, config_path: str | None, host: str | None, port: int | None) -> None:
    """Start, supervise and route requests to local LLM inference servers.

    Without a command, starts the server.
    """
    ctx.obj = config_path
    ctx.meta[_ADDRESS] = {"host": host, "port": port}
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, host=host, port=port)


@main.command()
@address_options
@click.pass_context
@reports_errors
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Start the server (the default command)."""
    import logging

    from llamactl import __version__
    from llamactl.server.runner import serve as run_server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    given = ctx.meta.get(_ADDRESS, {})
    config = _with_address(_config(ctx), host or given.get("host"), port or given.get("port"))
    click.echo(
        f"llamactl {__version__}: data in {config.data_dir}, database {config.database.path}"
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


@main.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
@reports_errors
def config_show(ctx: click.Context, as_json: bool) -> None:
    """Print the effective configuration and where each value came from (secrets masked)."""
    from rich.console import Console
    from rich.table import Table

    from llamactl.config import describe_config

    config = _config(ctx)
    rows = describe_config(config)
    if as_json:
        listing = [{"key": row.key, "value": row.value, "source": row.source} for row in rows]
        click.echo(json.dumps(listing, indent=2))
        return
    table = Table(title=f"configuration file: {config.config_path or 'none (defaults)'}")
    for heading in ("key", "value", "source"):
        table.add_column(heading, overflow="fold")
    for row in rows:
        table.add_row(row.key, row.value, row.source)
    Console(width=max(120, Console().width)).print(table)


@main.group("db")
def db_group() -> None:
    """Manage the database schema and the legacy JSON import."""


def _open(config: AppConfig) -> database.DB:
    from llamactl import database
    from llamactl.server.lifecycle import create_data_dir

    create_data_dir(config)  # instances/ and logs/ are the server's, made when it starts
    return database.open(database.DatabaseSettings.from_config(config.database))


@db_group.command("upgrade")
@click.argument("revision", default="head")
@click.pass_context
@reports_errors
def db_upgrade(ctx: click.Context, revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from llamactl import database

    with _open(_config(ctx)) as db:
        database.upgrade(db, revision)
        click.echo(f"database at revision {database.current_revision(db)}")


@db_group.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@reports_errors
def db_downgrade(ctx: click.Context, revision: str, yes: bool) -> None:
    """Revert migrations down to REVISION (``base`` drops every llamactl table)."""
    from llamactl import database

    config = _config(ctx)
    if not yes:
        click.confirm(
            f"Downgrade {config.database.path} to {revision}? Data in removed tables is lost",
            abort=True,
        )
    with _open(config) as db:
        database.downgrade(db, revision)
        click.echo(f"database at revision {database.current_revision(db) or 'base'}")


@db_group.command("current")
@click.pass_context
@reports_errors
def db_current(ctx: click.Context) -> None:
    """Print the database's schema revision and the newest one this llamactl knows."""
    from llamactl import database

    with _open(_config(ctx)) as db:
        current = database.current_revision(db) or "base (empty)"
        click.echo(f"current: {current}\nnewest:  {database.head_revision()}")


@db_group.command("import-json")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
@reports_errors
def db_import_json(ctx: click.Context, directory: Path | None) -> None:
    """Import legacy instance JSON files (default: instances_dir) into an empty database."""
    from llamactl.server.lifecycle import import_legacy, open_database

    config = _config(ctx)
    with open_database(config) as db:
        result = import_legacy(config, db, directory)
    if result.count:
        click.echo(f"imported {result.count} instances: {', '.join(result.imported)}")
    else:
        click.echo(f"nothing imported: {result.skipped_reason}")


main.add_command(instances_group)
main.add_command(ps_command)

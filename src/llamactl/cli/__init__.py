"""The ``llamactl`` command: a thin shell over the Python API.

``llamactl`` alone starts the server (``serve``). ``config`` and ``db`` work on this
machine's configuration and database; ``instances``, ``ps``, ``nodes`` and ``keys`` talk
to a running server through ``llamactl.client``. Every command ends with a code of the one
table in ``exits``. The modules, from the top down (an import-linter contract holds the
order):

    __init__     the group: --config, --host/--port, --version; the commands
    serve        serve: run the server
    config, db   config show; db upgrade|downgrade|current|import-json
    instances    instances list|get|create|edit|start|stop|restart|delete|logs, ps
    nodes        nodes [NAME]: the nodes a server knows and their health
    keys         keys create|list|show|edit|delete: the server's stored inference keys
    messages     what a failed client command says: what happened, what to do
    connection   --url and --api-key, and the ApiClient they make
    options      what --set, --extra and --unset change
    output       --json, printed lines, the confirmation before a delete
    tables       the aligned columns of list, get, ps, nodes and keys
    key_options  what the flags of keys create|edit ask for: instances, expiry, limits
    context      the --config file kept for every command
    exits        the exit codes, and the one place a failure gets its code

Only click is imported with this package: the configuration, the database layer, the
server and Rich are imported by the commands that use them, so that ``--help`` and the
client commands do not pay for SQLAlchemy, FastAPI or uvicorn.
"""

from __future__ import annotations

import click

from llamactl.cli.config import config_group
from llamactl.cli.context import remember_config_path
from llamactl.cli.db import db_group
from llamactl.cli.exits import ExitCode
from llamactl.cli.instances import instances_group, ps_command
from llamactl.cli.keys import keys_group
from llamactl.cli.nodes import nodes_command
from llamactl.cli.serve import address_options, remember_address, serve

__all__ = ["main"]


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from llamactl import __version__

    click.echo(f"llamactl version: {__version__}")
    ctx.exit(ExitCode.OK)


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
    remember_config_path(ctx, config_path)
    remember_address(ctx, host, port)
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve, host=host, port=port)


main.add_command(serve)
main.add_command(config_group)
main.add_command(db_group)
main.add_command(instances_group)
main.add_command(ps_command)
main.add_command(nodes_command)
main.add_command(keys_group)

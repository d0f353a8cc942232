"""``llamactl config ...``: the effective configuration, read on this machine.

Rich and the configuration are imported when the command runs.
"""

from __future__ import annotations

import json

import click

from llamactl.cli.context import load_config
from llamactl.cli.exits import reports_failures

__all__ = ["config_group"]


@click.group("config")
def config_group() -> None:
    """Inspect the configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@reports_failures()
def config_show(as_json: bool) -> None:
    """Print the effective configuration and where each value came from (secrets masked)."""
    from rich.console import Console
    from rich.table import Table

    from llamactl.config import describe_config

    config = load_config()
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

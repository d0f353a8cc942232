"""``llamactl db ...``: the schema of the local database and the legacy JSON import.

Each command opens the database the configuration names, calls ``llamactl.database`` or
``server.lifecycle`` and prints one line; SQLAlchemy and Alembic are imported when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from llamactl.cli.context import load_config
from llamactl.cli.exits import reports_failures

if TYPE_CHECKING:
    from llamactl import database
    from llamactl.config import AppConfig

__all__ = ["db_group"]


@click.group("db")
def db_group() -> None:
    """Manage the database schema and the legacy JSON import."""


def _open(config: AppConfig) -> database.DB:
    from llamactl import database
    from llamactl.server.lifecycle import create_data_dir

    create_data_dir(config)  # instances/ and logs/ are the server's, made when it starts
    return database.open(database.DatabaseSettings.from_config(config.database))


@db_group.command("upgrade")
@click.argument("revision", default="head")
@reports_failures()
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from llamactl import database

    with _open(load_config()) as db:
        database.upgrade(db, revision)
        click.echo(f"database at revision {database.current_revision(db)}")


@db_group.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_failures()
def db_downgrade(revision: str, yes: bool) -> None:
    """Revert migrations down to REVISION (``base`` drops every llamactl table)."""
    from llamactl import database

    config = load_config()
    if not yes:
        click.confirm(
            f"Downgrade {config.database.shown} to {revision}? Data in removed tables is lost",
            abort=True,
        )
    with _open(config) as db:
        database.downgrade(db, revision)
        click.echo(f"database at revision {database.current_revision(db) or 'base'}")


@db_group.command("current")
@reports_failures()
def db_current() -> None:
    """Print the database's schema revision and the newest one this llamactl knows."""
    from llamactl import database

    with _open(load_config()) as db:
        current = database.current_revision(db) or "base (empty)"
        click.echo(f"current: {current}\nnewest:  {database.head_revision()}")


@db_group.command("import-json")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
@reports_failures()
def db_import_json(directory: Path | None) -> None:
    """Import legacy instance JSON files (default: instances_dir) into an empty database."""
    from llamactl.server.lifecycle import import_legacy, open_database

    config = load_config()
    with open_database(config) as db:
        result = import_legacy(config, db, directory)
    if result.count:
        click.echo(f"imported {result.count} instances: {', '.join(result.imported)}")
    else:
        click.echo(f"nothing imported: {result.skipped_reason}")

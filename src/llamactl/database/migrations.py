"""Schema migrations over the Alembic scripts shipped inside the package.

``run_migrations`` brings a database to the newest revision this code knows. It refuses,
and leaves the database untouched, when the database is newer than the code or holds
tables that llamactl did not create. A database made by an earlier llamactl that kept
its schema version in ``schema_migrations`` (version 1, the same ``instances`` table) is
adopted by recording revision 0001.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from llamactl.database.database import DB
from llamactl.database.ownership import (
    LEGACY_VERSION_TABLE,
    VERSION_TABLE,
    foreign_database,
    is_legacy_version_one,
)
from llamactl.errors import DatabaseError, MigrationError

__all__ = ["current_revision", "downgrade", "head_revision", "run_migrations", "upgrade"]

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "llamactl.database:migrations"
OWN_TABLES = frozenset({"instances", VERSION_TABLE})


def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(None))


def _config(connection: Connection | None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code ships."""
    head = _script_directory().get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def current_revision(db: DB) -> str | None:
    """The revision the database is at; ``None`` for a database without llamactl's schema."""
    with _connection(db) as connection:
        return MigrationContext.configure(connection).get_current_revision()


def run_migrations(db: DB) -> None:
    """Bring the database to the newest revision, or refuse without changing anything."""
    upgrade(db, "head")


def upgrade(db: DB, revision: str = "head") -> None:
    with _connection(db) as connection:
        _check_upgradable(connection)
        command.upgrade(_config(connection), revision)


def downgrade(db: DB, revision: str) -> None:
    """Go back to ``revision`` (``base`` removes every llamactl table)."""
    with _connection(db) as connection:
        _check_known_revision(connection)
        command.downgrade(_config(connection), revision)
        if revision == "base":
            connection.execute(text(f"DROP TABLE IF EXISTS {VERSION_TABLE}"))
            connection.commit()


# PostgreSQL advisory lock held while migrating: replicas started together over one
# empty database take turns, and the second finds the schema made.
MIGRATION_LOCK = 0x6C6C616D61637401


@contextmanager
def _connection(db: DB) -> Iterator[Connection]:
    try:
        with db.engine.connect() as connection, _migrating_alone(connection):
            yield connection
    except SQLAlchemyError as exc:
        raise DatabaseError(f"migration failed: {getattr(exc, 'orig', None) or exc}") from exc


@contextmanager
def _migrating_alone(connection: Connection) -> Iterator[None]:
    """Hold the migration lock on ``connection`` (PostgreSQL; SQLite's writers already
    take turns)."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
    connection.commit()
    try:
        yield
    finally:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
        connection.commit()


def _user_tables(connection: Connection) -> set[str]:
    names = inspect(connection).get_table_names()
    connection.rollback()  # end the read transaction before Alembic begins its own
    return {name for name in names if not name.startswith("sqlite_")}


def _check_upgradable(connection: Connection) -> None:
    tables = _user_tables(connection)
    if VERSION_TABLE in tables:
        _check_known_revision(connection)
        return
    if not tables:
        return
    if _is_legacy_version_one(connection, tables):
        _adopt_legacy(connection)
        return
    raise foreign_database(tables)


def _check_known_revision(connection: Connection) -> None:
    revision = MigrationContext.configure(connection).get_current_revision()
    connection.rollback()
    if revision is None:
        return
    known = {script.revision for script in _script_directory().walk_revisions()}
    if revision not in known:
        raise MigrationError(
            f"the database is at schema revision {revision}, newer than this llamactl "
            f"knows (newest: {head_revision()}); upgrade llamactl or use another database"
        )


def _is_legacy_version_one(connection: Connection, tables: set[str]) -> bool:
    if tables != {"instances", LEGACY_VERSION_TABLE}:
        return False
    rows = connection.execute(text(f"SELECT version, dirty FROM {LEGACY_VERSION_TABLE}")).all()
    columns = {column["name"] for column in inspect(connection).get_columns("instances")}
    connection.rollback()
    return is_legacy_version_one(tables, [tuple(row) for row in rows], columns)


def _adopt_legacy(connection: Connection) -> None:
    logger.info("adopting a database of schema version 1 as revision 0001")
    command.stamp(_config(connection), "0001")
    connection.commit()

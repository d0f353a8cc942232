"""Whether an SQLite file is llamactl's, decided read-only before anything writes to it.

Opening a database sets pragmas that change the file (``journal_mode=WAL`` rewrites its
header), so a file that is not llamactl's is refused first, through a read-only
connection that leaves it byte for byte as it was. The same rules decide in
``migrations.py`` for databases reached through a URL.

A database is llamactl's when it is empty, holds ``alembic_version`` (with at most
llamactl's own tables besides), or is a version-1 database of an earlier llamactl: the
spec's ``instances`` table and a clean ``schema_migrations`` at version 1.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Set
from pathlib import Path
from urllib.parse import quote

from llamactl.database.instances import BEYOND_SPEC
from llamactl.database.instances import instances as instances_table
from llamactl.errors import DatabaseError, NotALlamactlDatabase

__all__ = [
    "LEGACY_VERSION_TABLE",
    "SPEC_COLUMNS",
    "VERSION_TABLE",
    "check_file",
    "foreign_database",
    "is_legacy_version_one",
]

VERSION_TABLE = "alembic_version"
LEGACY_VERSION_TABLE = "schema_migrations"
# The columns of the spec's instances table, which a legacy version-1 database must have.
# The columns of the spec's instances table, which a legacy version-1 database must have.
SPEC_COLUMNS = frozenset(
    column.name for column in instances_table.columns if column.name not in BEYOND_SPEC
)


def is_legacy_version_one(
    tables: Set[str], version_rows: list[tuple[object, ...]], columns: Set[str]
) -> bool:
    """Whether the tables, the rows of ``schema_migrations`` and the columns of
    ``instances`` are those of an earlier llamactl at schema version 1."""
    return (
        tables == {"instances", LEGACY_VERSION_TABLE}
        and len(version_rows) == 1
        and version_rows[0][0] == 1
        and not version_rows[0][1]
        and columns == SPEC_COLUMNS
    )


def foreign_database(tables: Set[str]) -> NotALlamactlDatabase:
    """The refusal of a database holding ``tables`` and no llamactl schema version."""
    return NotALlamactlDatabase(
        "the database is not a llamactl database (it has the tables "
        f"{', '.join(sorted(tables))} and no llamactl schema version); "
        "point database.path at a new file"
    )


def check_file(path: Path) -> None:
    """Refuse ``path`` if it is an SQLite file that is not llamactl's; never write to it.

    A missing or empty file is llamactl's to create. Raises ``NotALlamactlDatabase`` for
    another program's database and ``DatabaseError`` for a file SQLite cannot read.
    """
    try:
        if path.stat().st_size == 0:
            return
    except FileNotFoundError:
        return
    except OSError as exc:
        raise DatabaseError(f"cannot open database {path}: {exc.strerror}") from exc
    try:
        connection = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    try:
        _check_tables(connection)
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    finally:
        connection.close()


def _check_tables(connection: sqlite3.Connection) -> None:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    tables = {str(name) for (name,) in rows if not str(name).startswith("sqlite_")}
    if not tables or VERSION_TABLE in tables:
        return
    if tables == {"instances", LEGACY_VERSION_TABLE}:
        version_rows = connection.execute(
            f"SELECT version, dirty FROM {LEGACY_VERSION_TABLE}"
        ).fetchall()
        columns = {str(row[1]) for row in connection.execute("PRAGMA table_info(instances)")}
        if is_legacy_version_one(tables, version_rows, columns):
            return
    raise foreign_database(tables)

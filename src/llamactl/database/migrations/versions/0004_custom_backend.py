"""The ``custom`` backend type: the ``backend_type`` CHECK also accepts ``'custom'``.

SQLite cannot change a CHECK in place, so the table is rebuilt from its own CREATE
statement with only that CHECK widened: every column, DEFAULT, NOT NULL, the other CHECK,
the UNIQUE and AUTOINCREMENT stay as they are (a database adopted from the Go original,
whose CHECKs are written on the columns, keeps its spelling too). The rows are copied with
their ids, the AUTOINCREMENT counter is kept, the three indexes are made again, and the
``instance_processes`` rows, which dropping the old table deletes by cascade, are put back.
Other databases alter the named constraint.

The downgrade refuses while an instance uses the custom backend: its row would break the
narrower CHECK.

Revision ID: 0004
Revises: 0003
"""

import re

import sqlalchemy as sa
from alembic import op

from llamactl.errors import MigrationError

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NARROW = "backend_type IN ('llama_cpp', 'mlx_lm', 'vllm')"
WIDE = "backend_type IN ('llama_cpp', 'mlx_lm', 'vllm', 'custom')"
CONSTRAINT = "ck_instances_backend_type"
REBUILT = "instances_rebuilt"
INDEXES = (
    "CREATE UNIQUE INDEX idx_instances_name ON instances (name)",
    "CREATE INDEX idx_instances_status ON instances (status)",
    "CREATE INDEX idx_instances_backend_type ON instances (backend_type)",
)
_TABLE_NAME = re.compile(r'^(\s*CREATE\s+TABLE\s+)("instances"|instances)(\s*\()', re.IGNORECASE)


def upgrade() -> None:
    _change_check(NARROW, WIDE)


def downgrade() -> None:
    names = [
        row[0]
        for row in op.get_bind().execute(
            sa.text("SELECT name FROM instances WHERE backend_type = 'custom' ORDER BY name")
        )
    ]
    if names:
        raise MigrationError(
            f"cannot go back below revision 0004: {len(names)} instance(s) use the custom "
            f"backend ({', '.join(names)}); delete them first"
        )
    _change_check(WIDE, NARROW)


def _change_check(old: str, new: str) -> None:
    connection = op.get_bind()
    if connection.dialect.name != "sqlite":
        op.drop_constraint(CONSTRAINT, "instances", type_="check")
        op.create_check_constraint(CONSTRAINT, "instances", new)
        return
    _rebuild(connection, _create_statement(connection, old, new))


def _create_statement(connection: sa.Connection, old: str, new: str) -> str:
    """The table's CREATE statement with the CHECK ``old`` made ``new``, under REBUILT."""
    sql = connection.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'instances'")
    ).scalar_one()
    if sql.count(old) != 1 or _TABLE_NAME.match(sql) is None:
        raise MigrationError(f"the instances table does not have the expected CHECK ({old})")
    return _TABLE_NAME.sub(rf"\g<1>{REBUILT}\g<3>", sql.replace(old, new), count=1)


def _rebuild(connection: sa.Connection, create: str) -> None:
    processes = connection.execute(sa.text("SELECT * FROM instance_processes")).mappings().all()
    counter = connection.execute(
        sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'instances'")
    ).scalar()
    columns = ", ".join(
        f'"{row[1]}"' for row in connection.execute(sa.text("PRAGMA table_info(instances)"))
    )
    connection.execute(sa.text(create))
    connection.execute(
        sa.text(f"INSERT INTO {REBUILT} ({columns}) SELECT {columns} FROM instances")
    )
    connection.execute(sa.text("DROP TABLE instances"))  # cascades to instance_processes
    connection.execute(sa.text(f"ALTER TABLE {REBUILT} RENAME TO instances"))
    for statement in INDEXES:
        connection.execute(sa.text(statement))
    if counter is not None:
        _keep_counter(connection, counter)
    if processes:
        connection.execute(
            sa.text(
                "INSERT INTO instance_processes (instance_name, pid, start_ticks, started_at) "
                "VALUES (:instance_name, :pid, :start_ticks, :started_at)"
            ),
            [dict(row) for row in processes],
        )


def _keep_counter(connection: sa.Connection, counter: int) -> None:
    """AUTOINCREMENT never hands out an id again: the old table's counter carries over."""
    updated = connection.execute(
        sa.text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = 'instances'"),
        {"seq": counter},
    )
    if updated.rowcount == 0:  # no row was copied, so the new table has no counter yet
        connection.execute(
            sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES ('instances', :seq)"),
            {"seq": counter},
        )

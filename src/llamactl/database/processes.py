"""Every statement that touches ``instance_processes``: the backends llamactl has running.

A row is written when a backend starts and removed when it ends; rows left after a crash
of llamactl name the processes to reap at the next start.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Column, Connection, Integer, MetaData, Table, Text, delete, insert, select

__all__ = ["ProcessRecord", "forget", "record", "select_all"]

_metadata = MetaData()
processes = Table(
    "instance_processes",
    _metadata,
    Column("instance_name", Text, primary_key=True),
    Column("pid", Integer, nullable=False),
    Column("start_ticks", Integer),
    Column("started_at", Integer, nullable=False),
)


@dataclass(frozen=True)
class ProcessRecord:
    """A backend process as recorded when it started."""

    instance_name: str
    pid: int
    start_ticks: int | None
    started_at: int


def record(connection: Connection, entry: ProcessRecord) -> None:
    connection.execute(delete(processes).where(processes.c.instance_name == entry.instance_name))
    connection.execute(
        insert(processes).values(
            instance_name=entry.instance_name,
            pid=entry.pid,
            start_ticks=entry.start_ticks,
            started_at=entry.started_at,
        )
    )


def forget(connection: Connection, name: str) -> None:
    connection.execute(delete(processes).where(processes.c.instance_name == name))


def select_all(connection: Connection) -> list[ProcessRecord]:
    rows = connection.execute(select(processes).order_by(processes.c.instance_name))
    return [ProcessRecord(*row) for row in rows]

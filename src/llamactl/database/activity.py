"""Every statement that touches ``activity`` (migration 0006): the request log.

Rows are added in batches (one transaction for many requests), read newest first with
filters and an id cursor, and pruned by age and by count. Callers give and get
``Activity`` values, never rows.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Connection,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    delete,
    func,
    select,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.sql.elements import ColumnElement

__all__ = [
    "COLUMNS",
    "Activity",
    "ActivityQuery",
    "insert_rows",
    "prune_activity",
    "select_activity",
    "select_samples",
]

_metadata = MetaData()
activity = Table(
    "activity",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("time", Float, nullable=False),
    Column("instance", Text),
    Column("node", Text),
    Column("route", Text, nullable=False),
    Column("status", Integer, nullable=False),
    Column("duration", Float, nullable=False),
    Column("ttfb", Float),
    Column("queue_wait", Float),
    Column("cold_start", Integer, nullable=False),
    Column("streamed", Integer, nullable=False),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("tokens_per_second", Float),
    Column("key_id", Integer),
    Column("key_name", Text),
)


@dataclass(frozen=True, slots=True)
class Activity:
    """One request as the log keeps it (``id`` is 0 until it is stored)."""

    time: float
    instance: str | None
    route: str
    status: int
    duration: float
    ttfb: float | None = None
    queue_wait: float | None = None
    cold_start: bool = False
    streamed: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_per_second: float | None = None
    key_id: int | None = None
    key_name: str | None = None
    node: str | None = None
    id: int = 0

    def as_row(self) -> tuple[object, ...]:
        """The values of ``COLUMNS``, in order (what ``insert_rows`` takes)."""
        return tuple(getattr(self, column) for column in COLUMNS)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "time": self.time,
            "instance": self.instance,
            "node": self.node,
            "route": self.route,
            "status": self.status,
            "duration": self.duration,
            "ttfb": self.ttfb,
            "queue_wait": self.queue_wait,
            "cold_start": self.cold_start,
            "streamed": self.streamed,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "tokens_per_second": self.tokens_per_second,
            "key_id": self.key_id,
            "key_name": self.key_name,
        }


@dataclass(frozen=True)
class ActivityQuery:
    """Which rows to read: all filters are optional; newest first, at most ``limit``.

    ``statuses`` is an inclusive range of status codes; ``after`` / ``before`` are row
    ids (exclusive), for live updates and for paging back.
    """

    instance: str | None = None
    statuses: tuple[int, int] | None = None
    since: float | None = None
    until: float | None = None
    after: int | None = None
    before: int | None = None
    limit: int = 100


# Rows in one INSERT: 15 values each stay below SQLite's 32,766 bound variables.
_ROWS_PER_INSERT = 2000
# The columns of a row tuple, in order (what ``insert_rows`` takes).
COLUMNS = (
    "time", "instance", "node", "route", "status", "duration", "ttfb", "queue_wait",
    "cold_start", "streamed", "prompt_tokens", "completion_tokens", "tokens_per_second",
    "key_id", "key_name",
)  # fmt: skip


def insert_rows(connection: Connection, rows: Sequence[Sequence[object]]) -> None:
    """Add rows given as tuples in the order of ``COLUMNS``: up to ``_ROWS_PER_INSERT`` of
    them in each ``INSERT ... VALUES (...), (...)``, so that the driver binds a statement's
    values in one call and runs it in one step (a row at a time, ``executemany`` would
    hand the interpreter's lock back and forth with the event loop for every row)."""
    if not rows:
        return
    sqlite = connection.dialect.name == "sqlite"
    step = _ROWS_PER_INSERT
    if sqlite and sqlite3.sqlite_version_info < (3, 32, 0):
        step = 999 // len(COLUMNS)  # the bound variables of an older SQLite
    one = _row_markers(connection.dialect.paramstyle)
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        values = tuple(itertools.chain.from_iterable(part))
        markers = ", ".join([one] * len(part))
        if sqlite:
            # The driver binds a number or a string in a few tens of nanoseconds, and
            # None or a bool in several hundred, with the interpreter's lock held: they
            # go as -1, 0 and 1, and the statement turns -1 back into NULL.
            statement = f"{_SQLITE_INSERT} (VALUES {markers})"
            values = tuple(map(_AS_NUMBER.get, values, values))
        else:
            statement = f"INSERT INTO activity ({', '.join(COLUMNS)}) VALUES {markers}"
        connection.exec_driver_sql(statement, values)


_FLAGS = frozenset({"cold_start", "streamed"})  # integer columns the rows give as bools
# How SQLite is given None and the bools (``dict.get(value, value)`` leaves the rest; the
# 0 and 1 that the bools' keys also match stay 0 and 1). No value of a nullable column is
# ever -1: times, durations, counts and ids are not negative.
_AS_NUMBER: dict[object, object] = {None: -1, False: 0, True: 1}
_SQLITE_INSERT = (
    f"INSERT INTO activity ({', '.join(COLUMNS)}) SELECT "
    + ", ".join(
        f"nullif(column{i}, -1)" if activity.c[column].nullable else f"column{i}"
        for i, column in enumerate(COLUMNS, start=1)
    )
    + " FROM"
)


def _row_markers(paramstyle: str) -> str:
    """``(?, ?, ...)`` for one row; PostgreSQL takes a bool for an integer column only
    cast."""
    if paramstyle == "qmark":
        return f"({', '.join(['?'] * len(COLUMNS))})"
    markers = ("%s::integer" if column in _FLAGS else "%s" for column in COLUMNS)
    return f"({', '.join(markers)})"


def select_activity(connection: Connection, query: ActivityQuery) -> list[Activity]:
    statement = select(activity).order_by(activity.c.id.desc()).limit(query.limit)
    conditions = _conditions(query)
    if conditions:
        statement = statement.where(and_(*conditions))
    return [_activity(row) for row in connection.execute(statement).mappings()]


def select_samples(
    connection: Connection, instance: str, since: float, limit: int
) -> list[Activity]:
    """The newest ``limit`` rows of ``instance`` since ``since``, oldest first, with only
    what the charts draw (time, status, TTFB, tokens/s, cold start and its wait)."""
    c = activity.c
    statement = (
        select(c.id, c.time, c.status, c.ttfb, c.tokens_per_second, c.cold_start, c.queue_wait)
        .where(and_(c.instance == instance, c.time >= since))
        .order_by(c.id.desc())
        .limit(limit)
    )
    rows = connection.execute(statement).all()
    return [
        Activity(
            id=row.id,
            time=row.time,
            instance=instance,
            route="",
            status=row.status,
            duration=0.0,
            ttfb=row.ttfb,
            tokens_per_second=row.tokens_per_second,
            cold_start=bool(row.cold_start),
            queue_wait=row.queue_wait,
        )
        for row in reversed(rows)
    ]


def prune_activity(connection: Connection, older_than: float | None, max_rows: int) -> int:
    """Delete the rows from before ``older_than`` (unix seconds), then all but the newest
    ``max_rows``; how many went."""
    removed = 0
    if older_than is not None:
        # The first row young enough, from the oldest up (rows come in time order): the
        # scan stops there, having read only the rows that go.
        first = connection.execute(
            select(activity.c.id)
            .where(activity.c.time >= older_than)
            .order_by(activity.c.id)
            .limit(1)
        ).scalar()
        old = activity.c.id < first if first is not None else activity.c.id.is_not(None)
        removed += connection.execute(delete(activity).where(old)).rowcount
    newest = connection.execute(select(func.max(activity.c.id))).scalar()
    if newest is not None:
        removed += connection.execute(
            delete(activity).where(activity.c.id <= newest - max_rows)
        ).rowcount
    return removed


def _conditions(query: ActivityQuery) -> list[ColumnElement[bool]]:
    c = activity.c
    conditions: list[ColumnElement[bool]] = []
    if query.instance is not None:
        conditions.append(c.instance == query.instance)
    if query.statuses is not None:
        low, high = query.statuses
        conditions.append(c.status.between(low, high))
    if query.since is not None:
        conditions.append(c.time >= query.since)
    if query.until is not None:
        conditions.append(c.time < query.until)
    if query.after is not None:
        conditions.append(c.id > query.after)
    if query.before is not None:
        conditions.append(c.id < query.before)
    return conditions


def _activity(row: RowMapping) -> Activity:
    return Activity(
        id=row["id"],
        time=row["time"],
        instance=row["instance"],
        node=row["node"],
        route=row["route"],
        status=row["status"],
        duration=row["duration"],
        ttfb=row["ttfb"],
        queue_wait=row["queue_wait"],
        cold_start=bool(row["cold_start"]),
        streamed=bool(row["streamed"]),
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        tokens_per_second=row["tokens_per_second"],
        key_id=row["key_id"],
        key_name=row["key_name"],
    )

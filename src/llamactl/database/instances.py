"""Every statement that touches the ``instances`` table, and the row <-> Instance mapping.

The mapping is the spec's "Data Mapping": booleans as 0/1, integers as INTEGER, options
left unset take the column DEFAULT, ``nodes`` a sorted JSON array, ``environment`` a JSON
object, the typed backend options serialised into ``backend_config_json``, ``created_at``
and ``updated_at`` in unix seconds. Beyond the spec (migration 0003), the last failure:
``failure_reason`` and ``failure_output`` (its last output lines, a JSON array), both NULL
when there is none; and (migration 0007) ``loading_progress``, 0/1, or NULL for an
instance that leaves it to the configuration. Callers never see a row.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple, cast

from sqlalchemy import (
    BindParameter,
    ClauseElement,
    Column,
    Connection,
    Dialect,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    func,
    select,
)
from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine.interfaces import DBAPICursor
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler

from llamactl.backends import BackendType, parse_backend_options
from llamactl.errors import DatabaseError, InstanceExists, InstanceNotFound, LlamactlError
from llamactl.instance import Failure, Instance, Options, Status

__all__ = ["count", "delete", "insert", "select_all", "select_one", "update", "upsert"]

metadata = MetaData()

# The table as queries see it. Migrations 0001 and 0003 own the DDL; this mirrors them.
instances = Table(
    "instances",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("backend_type", Text, nullable=False),
    Column("backend_config_json", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
    Column("auto_restart", Integer, nullable=False),
    Column("max_restarts", Integer, nullable=False),
    Column("restart_delay", Integer, nullable=False),
    Column("on_demand_start", Integer, nullable=False),
    Column("idle_timeout", Integer, nullable=False),
    Column("docker_enabled", Integer, nullable=False),
    Column("command_override", Text),
    Column("nodes", Text),
    Column("environment", Text),
    Column("owner_user_id", Text),
    Column("failure_reason", Text),
    Column("failure_output", Text),
    Column("loading_progress", Integer),
)

# The columns later migrations added to the spec's table (0003: the last failure; 0007:
# the instance's loading progress).
BEYOND_SPEC = ("failure_reason", "failure_output", "loading_progress")

# The column DEFAULTs of the spec's schema: what an option left unset is stored as.
COLUMN_DEFAULTS: dict[str, int] = {
    "auto_restart": 0,
    "max_restarts": -1,
    "restart_delay": 0,
    "on_demand_start": 0,
    "idle_timeout": 0,
    "docker_enabled": 0,
}
_BOOLEAN_OPTIONS = ("auto_restart", "on_demand_start", "docker_enabled")
_INTEGER_OPTIONS = ("max_restarts", "restart_delay", "idle_timeout")
_WRITTEN = [c.name for c in instances.columns if c.name not in ("id", "owner_user_id")]
_UPDATED = [name for name in _WRITTEN if name not in ("name", "created_at")]


def _row_values(inst: Instance, now: int) -> dict[str, Any]:
    """The column values for one instance; an unset option gets its column DEFAULT."""
    options = inst.options
    values: dict[str, Any] = {
        "name": inst.name,
        "backend_type": options.backend_type.value,
        "backend_config_json": json.dumps(options.backend_options.to_json(), separators=(",", ":")),
        "status": inst.status.value,
        "created_at": inst.created or now,
        "updated_at": now,
        "command_override": options.command_override or None,
        "nodes": json.dumps(sorted(options.nodes)) if options.nodes else None,
        "environment": json.dumps(dict(options.environment)) if options.environment else None,
        **_failure_values(inst.failure),
        "loading_progress": _flag_or_null(options.loading_progress),
    }
    for name in _BOOLEAN_OPTIONS:
        flag = getattr(options, name)
        values[name] = COLUMN_DEFAULTS[name] if flag is None else int(flag)
    for name in _INTEGER_OPTIONS:
        number = getattr(options, name)
        values[name] = COLUMN_DEFAULTS[name] if number is None else number
    return values


def _flag_or_null(flag: bool | None) -> int | None:
    return None if flag is None else int(flag)


def _failure_values(failure: Failure | None) -> dict[str, str | None]:
    if failure is None:
        return {"failure_reason": None, "failure_output": None}
    output = json.dumps(list(failure.last_lines)) if failure.last_lines else None
    return {"failure_reason": failure.reason, "failure_output": output}


class _Prepared:
    """A statement built and compiled once per dialect, then run on the driver's cursor.

    Building, compiling and executing an INSERT ... ON CONFLICT through SQLAlchemy costs
    several times more than running it; the statements here are fixed, so they are compiled
    once and run on the DBAPI cursor of the SQLAlchemy connection (inside its transaction).
    Callers pass parameters by bind name. Driver errors come out as SQLAlchemy's.
    """

    def __init__(self, build: Callable[[str], ClauseElement]) -> None:
        self._build = build
        self._compiled: dict[str, tuple[str, tuple[str, ...] | None]] = {}

    def __call__(self, connection: Connection, parameters: Mapping[str, Any]) -> DBAPICursor:
        sql, order = self._compile(connection.dialect)
        arguments = dict(parameters) if order is None else tuple(parameters[n] for n in order)
        cursor = connection.connection.cursor()
        try:
            cursor.execute(sql, arguments)
        except connection.dialect.loaded_dbapi.Error as exc:
            cursor.close()
            raise DBAPIError.instance(
                sql, arguments, exc, connection.dialect.loaded_dbapi.Error
            ) from exc
        return cursor

    def _compile(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = cast(SQLCompiler, self._build(dialect.name).compile(dialect=dialect))
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            found = self._compiled[dialect.name] = (compiled.string, order)
        return found


def _binds(names: Iterable[str]) -> dict[str, BindParameter[Any]]:
    return {name: bindparam(name) for name in names}


def _build_upsert(dialect: str) -> ClauseElement:
    insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(instances)
    statement = insert_.values(_binds(_WRITTEN))
    changes = {name: statement.excluded[name] for name in _UPDATED}
    return statement.on_conflict_do_update(index_elements=["name"], set_=changes)


_upsert = _Prepared(_build_upsert)
def _build_insert(dialect: str) -> ClauseElement:
    """An insert that skips a taken name (``rowcount`` 0): PostgreSQL would abort the
    whole transaction on the unique violation."""
    insert_ = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(instances)
    return insert_.values(_binds(_WRITTEN)).on_conflict_do_nothing(index_elements=["name"])


_insert = _Prepared(_build_insert)
_update = _Prepared(
    lambda _dialect: (
        sa_update(instances)
        .where(instances.c.name == bindparam("match_name"))
        .values(_binds(_UPDATED))
    )
)
_STATUS_COLUMNS = ("status", "failure_reason", "failure_output", "updated_at")
_update_status = _Prepared(
    lambda _dialect: (
        sa_update(instances)
        .where(instances.c.name == bindparam("match_name"))
        .values(_binds(_STATUS_COLUMNS))
    )
)
_delete = _Prepared(
    lambda _dialect: sa_delete(instances).where(instances.c.name == bindparam("name"))
)
_SELECT = select(*(instances.c[name] for name in _WRITTEN), instances.c.id)
_select_one = _Prepared(lambda _dialect: _SELECT.where(instances.c.name == bindparam("name")))
_select_all = _Prepared(lambda _dialect: _SELECT.order_by(instances.c.name))
_count = _Prepared(lambda _dialect: select(func.count()).select_from(instances))


def upsert(connection: Connection, inst: Instance, now: int) -> None:
    """Insert the instance, or update its row (but not ``created_at``), in one statement."""
    _upsert(connection, _row_values(inst, now)).close()


def insert(connection: Connection, inst: Instance, now: int) -> None:
    if _changed(_insert(connection, _row_values(inst, now))) == 0:
        raise InstanceExists(inst.name)


def update(connection: Connection, inst: Instance, now: int) -> None:
    if _changed(_update(connection, {"match_name": inst.name, **_row_values(inst, now)})) == 0:
        raise InstanceNotFound(inst.name)


def update_status(connection: Connection, inst: Instance, now: int) -> bool:
    """Write only the status and the last failure of ``inst`` (its options stay as the
    row has them, whoever wrote them); whether the row is there."""
    values = {
        "match_name": inst.name,
        "status": inst.status.value,
        "updated_at": now,
        **_failure_values(inst.failure),
    }
    return _changed(_update_status(connection, values)) > 0


def delete(connection: Connection, name: str) -> None:
    if _changed(_delete(connection, {"name": name})) == 0:
        raise InstanceNotFound(name)


def count(connection: Connection) -> int:
    cursor = _count(connection, {})
    try:
        (found,) = cursor.fetchone() or (0,)
        return int(found)
    finally:
        cursor.close()


def select_one(connection: Connection, name: str) -> Instance:
    row = _fetch_one(connection, name)
    if row is None:
        raise InstanceNotFound(name)
    return _to_instance(_Row._make(row))


def select_all(connection: Connection) -> list[Instance]:
    with _cyclic_gc_paused():
        cursor = _select_all(connection, {})
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return [_to_instance(_Row._make(row)) for row in rows]


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Hold off the cycle collector while a bulk of rows becomes objects.

    Each row becomes about ten container objects, none of them in a reference cycle, so
    the collector finds nothing; but their number alone makes it walk the whole heap
    several times during a large load (a third of ``load_all`` on 10,000 rows). It runs
    again, as usual, as soon as the block ends. If it was off already it stays off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _fetch_one(connection: Connection, name: str) -> Any:
    cursor = _select_one(connection, {"name": name})
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


def _changed(cursor: DBAPICursor) -> int:
    try:
        return int(cursor.rowcount)
    finally:
        cursor.close()


class _Row(NamedTuple):
    """A row of ``_SELECT``: the written columns, in table order, then the id."""

    name: str
    backend_type: str
    backend_config_json: str
    status: str
    created_at: int
    updated_at: int
    auto_restart: int
    max_restarts: int
    restart_delay: int
    on_demand_start: int
    idle_timeout: int
    docker_enabled: int
    command_override: str | None
    nodes: str | None
    environment: str | None
    failure_reason: str | None
    failure_output: str | None
    loading_progress: int | None
    id: int


# Enum members by stored value: a dict lookup costs a tenth of calling the enum.
_STATUSES: Mapping[str, Status] = {member.value: member for member in Status}
_BACKEND_TYPES: Mapping[str, BackendType] = {member.value: member for member in BackendType}


def _to_instance(row: _Row) -> Instance:
    """Rebuild an Instance from a row; a row that does not validate is a DatabaseError."""
    try:
        return Instance(
            name=row.name,
            id=row.id,
            created=row.created_at,
            status=_STATUSES.get(row.status) or Status(row.status),
            options=_to_options(row),
            failure=_to_failure(row),
        )
    except (LlamactlError, ValueError, TypeError) as exc:
        message = getattr(exc, "message", str(exc))
        raise DatabaseError(f"stored instance {row.name!r} is invalid: {message}") from exc


def _to_options(row: _Row) -> Options:
    backend_type = _BACKEND_TYPES.get(row.backend_type) or BackendType(row.backend_type)
    backend_options = parse_backend_options(backend_type, json.loads(row.backend_config_json))
    return Options(
        backend_type=backend_type,
        backend_options=backend_options,
        auto_restart=bool(row.auto_restart),
        max_restarts=row.max_restarts,
        restart_delay=row.restart_delay,
        on_demand_start=bool(row.on_demand_start),
        idle_timeout=row.idle_timeout,
        loading_progress=None if row.loading_progress is None else bool(row.loading_progress),
        docker_enabled=bool(row.docker_enabled),
        command_override=row.command_override,
        nodes=tuple(json.loads(row.nodes)) if row.nodes else (),
        environment=json.loads(row.environment) if row.environment else {},
    )


def _to_failure(row: _Row) -> Failure | None:
    if row.failure_reason is None:
        return None
    lines = json.loads(row.failure_output) if row.failure_output else []
    if not isinstance(lines, list):
        raise ValueError(f"failure_output is not a JSON array: {row.failure_output!r}")
    return Failure(row.failure_reason, tuple(str(line) for line in lines))

"""Every statement that touches the ``instances`` table, and the row <-> Instance mapping.

The mapping is the spec's "Data Mapping": booleans as 0/1, integers as INTEGER, options
left unset take the column DEFAULT, ``nodes`` a sorted JSON array, ``environment`` a JSON
object, the typed backend options serialised into ``backend_config_json``, ``created_at``
and ``updated_at`` in unix seconds. Callers never see a row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Insert,
    Integer,
    MetaData,
    Row,
    Table,
    Text,
    bindparam,
    delete as sa_delete,
    func,
    select,
    update as sa_update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from llamactl.backends import BackendType, parse_backend_options
from llamactl.errors import DatabaseError, InstanceExists, InstanceNotFound, LlamactlError
from llamactl.instance import Instance, Options, Status

__all__ = ["count", "delete", "insert", "select_all", "select_one", "update", "upsert"]

metadata = MetaData()

# The table as queries see it. Migration 0001 owns the DDL; this mirrors its columns.
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
)

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
    """The column values for one instance. Unset options are left out (column DEFAULT)."""
    options = inst.options
    values: dict[str, Any] = {
        "name": inst.name,
        "backend_type": options.backend_type.value,
        "backend_config_json": json.dumps(
            options.backend_options.to_json(), separators=(",", ":")
        ),
        "status": inst.status.value,
        "created_at": inst.created or now,
        "updated_at": now,
        "command_override": options.command_override or None,
        "nodes": json.dumps(sorted(options.nodes)) if options.nodes else None,
        "environment": json.dumps(dict(options.environment)) if options.environment else None,
    }
    for name in _BOOLEAN_OPTIONS:
        flag = getattr(options, name)
        values[name] = COLUMN_DEFAULTS[name] if flag is None else int(flag)
    for name in _INTEGER_OPTIONS:
        number = getattr(options, name)
        values[name] = COLUMN_DEFAULTS[name] if number is None else number
    return values


def _insert_values(inst: Instance, now: int) -> dict[str, Any]:
    """Like ``_row_values`` but without the unset options, so INSERT applies the DEFAULT."""
    values = _row_values(inst, now)
    for name in COLUMN_DEFAULTS:
        if getattr(inst.options, name) is None:
            del values[name]
    return values


def _dialect_insert(connection: Connection) -> Any:
    """An INSERT that supports ON CONFLICT for the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(instances)
    return sqlite.insert(instances)


def _upsert_statement(connection: Connection, values: Mapping[str, Any]) -> Insert:
    statement = _dialect_insert(connection).values(values)
    excluded = statement.excluded
    changes = {name: excluded[name] for name in _UPDATED if name in values}
    changes.update({name: default for name, default in COLUMN_DEFAULTS.items() if name not in values})
    return statement.on_conflict_do_update(index_elements=["name"], set_=changes)  # type: ignore[no-any-return]


def upsert(connection: Connection, inst: Instance, now: int) -> None:
    """Insert the instance, or update its row (but not ``created_at``), in one statement."""
    values = _insert_values(inst, now)
    connection.execute(_upsert_statement(connection, values))


def insert(connection: Connection, inst: Instance, now: int) -> None:
    values = _insert_values(inst, now)
    try:
        connection.execute(instances.insert().values(values))
    except IntegrityError as exc:
        if _exists(connection, inst.name):
            raise InstanceExists(inst.name) from exc
        raise


_UPDATE_BY_NAME = (
    sa_update(instances)
    .where(instances.c.name == bindparam("match_name"))
    .values({name: bindparam(name) for name in _UPDATED})
)


def update(connection: Connection, inst: Instance, now: int) -> None:
    values = _row_values(inst, now)
    parameters = {name: values[name] for name in _UPDATED}
    result = connection.execute(_UPDATE_BY_NAME, {"match_name": inst.name, **parameters})
    if result.rowcount == 0:
        raise InstanceNotFound(inst.name)


def delete(connection: Connection, name: str) -> None:
    result = connection.execute(sa_delete(instances).where(instances.c.name == name))
    if result.rowcount == 0:
        raise InstanceNotFound(name)


def count(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(instances)).scalar_one())


def _exists(connection: Connection, name: str) -> bool:
    found = connection.execute(select(instances.c.id).where(instances.c.name == name))
    return found.first() is not None


_SELECT = select(*(instances.c[name] for name in _WRITTEN))


def select_one(connection: Connection, name: str) -> Instance:
    row = connection.execute(_SELECT.where(instances.c.name == name)).first()
    if row is None:
        raise InstanceNotFound(name)
    return _to_instance(row)


def select_all(connection: Connection) -> list[Instance]:
    rows = connection.execute(_SELECT.order_by(instances.c.name))
    return [_to_instance(row) for row in rows]


def _to_instance(row: Row[Any]) -> Instance:
    """Rebuild an Instance from a row; a row that does not validate is a DatabaseError."""
    try:
        return Instance(
            name=row.name,
            created=row.created_at,
            status=Status(row.status),
            options=_to_options(row),
        )
    except (LlamactlError, ValueError, TypeError) as exc:
        message = getattr(exc, "message", str(exc))
        raise DatabaseError(f"stored instance {row.name!r} is invalid: {message}") from exc


def _to_options(row: Row[Any]) -> Options:
    backend_type = BackendType(row.backend_type)
    backend_options = parse_backend_options(backend_type, json.loads(row.backend_config_json))
    return Options(
        backend_type=backend_type,
        backend_options=backend_options,
        auto_restart=bool(row.auto_restart),
        max_restarts=row.max_restarts,
        restart_delay=row.restart_delay,
        on_demand_start=bool(row.on_demand_start),
        idle_timeout=row.idle_timeout,
        docker_enabled=bool(row.docker_enabled),
        command_override=row.command_override,
        nodes=tuple(json.loads(row.nodes)) if row.nodes else (),
        environment=json.loads(row.environment) if row.environment else {},
    )

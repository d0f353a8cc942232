"""Every statement that touches ``api_keys`` and ``key_permissions`` (migration 0005).

A key row holds the key's keyed hash, never the key. Permissions name instances by their
row id; reads join the instances for their names. Times are unix seconds. Callers never
see a row: they get ``KeyRecord`` and give ``NewKey`` / ``KeyChanges``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from llamactl.database.instances import instances
from llamactl.errors import InvalidInput, KeyNotFound

__all__ = [
    "KeyChanges",
    "KeyPermission",
    "KeyRecord",
    "NewKey",
    "delete_key",
    "insert_key",
    "instance_ids",
    "instance_names",
    "record_use",
    "select_key",
    "select_keys",
    "update_key",
]

_metadata = MetaData()
_instances = Table("instances", _metadata, Column("id", Integer, primary_key=True))
api_keys = Table(
    "api_keys",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("key_hash", Text, nullable=False),
    Column("prefix", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("permission_mode", Text, nullable=False),
    Column("max_concurrent", Integer),
    Column("requests_per_minute", Integer),
    Column("expires_at", Integer),
    Column("disabled", Integer, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
    Column("last_used_at", Integer),
    Column("requests", Integer, nullable=False),
)
key_permissions = Table(
    "key_permissions",
    _metadata,
    Column("key_id", Integer, ForeignKey("api_keys.id"), primary_key=True),
    Column("instance_id", Integer, ForeignKey(_instances.c.id), primary_key=True),
    Column("can_start", Integer, nullable=False),
    Column("can_evict", Integer, nullable=False),
)


@dataclass(frozen=True)
class KeyPermission:
    """What a ``per_instance`` key may do with one instance."""

    instance_id: int
    instance_name: str = ""
    can_start: bool = True
    can_evict: bool = True


@dataclass(frozen=True)
class NewKey:
    """A key to store: its hash and display prefix, and everything it is allowed."""

    name: str
    key_hash: str
    prefix: str
    permission_mode: str
    permissions: tuple[KeyPermission, ...] = ()
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    expires_at: int | None = None
    disabled: bool = False
    owner: str = "system"


@dataclass(frozen=True)
class KeyChanges:
    """What an update replaces: the fields given (``None``: kept); ``clear`` names the
    optional fields to set to NULL (no limit, no expiry)."""

    name: str | None = None
    permission_mode: str | None = None
    permissions: tuple[KeyPermission, ...] | None = None
    max_concurrent: int | None = None
    requests_per_minute: int | None = None
    expires_at: int | None = None
    disabled: bool | None = None
    clear: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class KeyRecord:
    """A stored key as the API shows it, and its hash for the lookup."""

    id: int
    name: str
    key_hash: str
    prefix: str
    owner: str
    permission_mode: str
    max_concurrent: int | None
    requests_per_minute: int | None
    expires_at: int | None
    disabled: bool
    created_at: int
    updated_at: int
    last_used_at: int | None
    requests: int
    permissions: tuple[KeyPermission, ...] = ()


def insert_key(connection: Connection, key: NewKey, now: int) -> int:
    """Store ``key``; its id."""
    result = connection.execute(
        insert(api_keys).values(
            name=key.name,
            key_hash=key.key_hash,
            prefix=key.prefix,
            owner=key.owner,
            permission_mode=key.permission_mode,
            max_concurrent=key.max_concurrent,
            requests_per_minute=key.requests_per_minute,
            expires_at=key.expires_at,
            disabled=int(key.disabled),
            created_at=now,
            updated_at=now,
            requests=0,
        )
    )
    inserted = result.inserted_primary_key
    assert inserted is not None
    key_id = inserted[0]
    assert isinstance(key_id, int)
    _write_permissions(connection, key_id, key.permissions)
    return key_id


def select_keys(connection: Connection) -> list[KeyRecord]:
    """Every stored key with its permissions, by id."""
    permissions = _permissions(connection, None)
    rows = connection.execute(select(api_keys).order_by(api_keys.c.id)).mappings()
    return [_record(row, permissions.get(row["id"], ())) for row in rows]


def select_key(connection: Connection, key_id: int) -> KeyRecord:
    """The key with ``key_id``; ``KeyNotFound`` if there is none."""
    row = connection.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
    if row is None:
        raise KeyNotFound(f"key not found: {key_id}")
    return _record(row, _permissions(connection, key_id).get(key_id, ()))


def update_key(connection: Connection, key_id: int, changes: KeyChanges, now: int) -> None:
    """Apply ``changes`` to the key with ``key_id``; ``KeyNotFound`` if there is none."""
    values: dict[str, Any] = {"updated_at": now}
    for name in ("name", "permission_mode", "max_concurrent", "requests_per_minute",
                 "expires_at"):  # fmt: skip
        value = getattr(changes, name)
        if value is not None:
            values[name] = value
    for name in changes.clear:
        values[name] = None
    if changes.disabled is not None:
        values["disabled"] = int(changes.disabled)
    result = connection.execute(update(api_keys).where(api_keys.c.id == key_id).values(values))
    if result.rowcount == 0:
        raise KeyNotFound(f"key not found: {key_id}")
    if changes.permissions is not None:
        connection.execute(delete(key_permissions).where(key_permissions.c.key_id == key_id))
        _write_permissions(connection, key_id, changes.permissions)


def delete_key(connection: Connection, key_id: int) -> None:
    """Delete the key with ``key_id`` and its permissions; ``KeyNotFound`` if none."""
    connection.execute(delete(key_permissions).where(key_permissions.c.key_id == key_id))
    result = connection.execute(delete(api_keys).where(api_keys.c.id == key_id))
    if result.rowcount == 0:
        raise KeyNotFound(f"key not found: {key_id}")


def record_use(connection: Connection, uses: Mapping[int, tuple[int, int]]) -> None:
    """Add to each key's request count and set its last use: ``{id: (last_used_at,
    requests)}``. A key deleted meanwhile is passed over."""
    for key_id, (last_used, count) in uses.items():
        connection.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(last_used_at=last_used, requests=api_keys.c.requests + count)
        )


def instance_ids(connection: Connection, names: Iterable[str]) -> dict[str, int]:
    """The row ids of the instances called ``names`` (those that exist)."""
    return dict(_pairs(connection, instances.c.name, instances.c.id, list(names)))


def instance_names(connection: Connection, ids: Iterable[int]) -> dict[int, str]:
    """The names of the instances with the row ids ``ids`` (those that exist)."""
    return dict(_pairs(connection, instances.c.id, instances.c.name, list(ids)))


def _pairs(
    connection: Connection, by: Column[Any], of: Column[Any], wanted: list[Any]
) -> list[tuple[Any, Any]]:
    if not wanted:
        return []
    rows = connection.execute(select(by, of).where(by.in_(wanted)))
    return [(key, value) for key, value in rows]


def _write_permissions(
    connection: Connection, key_id: int, permissions: Sequence[KeyPermission]
) -> None:
    if not permissions:
        return
    try:
        connection.execute(
            insert(key_permissions),
            [
                {
                    "key_id": key_id,
                    "instance_id": permission.instance_id,
                    "can_start": int(permission.can_start),
                    "can_evict": int(permission.can_evict),
                }
                for permission in permissions
            ],
        )
    except IntegrityError as exc:
        raise InvalidInput("permissions name an instance that does not exist") from exc


def _permissions(
    connection: Connection, key_id: int | None
) -> dict[int, tuple[KeyPermission, ...]]:
    query = (
        select(
            key_permissions.c.key_id,
            key_permissions.c.instance_id,
            instances.c.name,
            key_permissions.c.can_start,
            key_permissions.c.can_evict,
        )
        .join(instances, instances.c.id == key_permissions.c.instance_id)
        .order_by(key_permissions.c.key_id, instances.c.name)
    )
    if key_id is not None:
        query = query.where(key_permissions.c.key_id == key_id)
    found: dict[int, list[KeyPermission]] = {}
    for owner, instance_id, name, can_start, can_evict in connection.execute(query):
        found.setdefault(owner, []).append(
            KeyPermission(instance_id, name, bool(can_start), bool(can_evict))
        )
    return {owner: tuple(permissions) for owner, permissions in found.items()}


def _record(row: RowMapping, permissions: tuple[KeyPermission, ...]) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        owner=row["owner"],
        permission_mode=row["permission_mode"],
        max_concurrent=row["max_concurrent"],
        requests_per_minute=row["requests_per_minute"],
        expires_at=row["expires_at"],
        disabled=bool(row["disabled"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        last_used_at=row["last_used_at"],
        requests=row["requests"],
        permissions=permissions,
    )

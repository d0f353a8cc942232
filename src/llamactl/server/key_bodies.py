"""Stored API keys as the management API reads and writes them.

``new_key_from`` and ``changes_from`` check a request body field by field (a clear 400
naming the field and the value) and give what the database takes; ``key_body`` is a
stored key as the API shows it: never its hash, and never the key itself, which only the
answer to its creation carries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llamactl.auth.stored import display_prefix
from llamactl.database.keys import KeyChanges, KeyPermission, KeyRecord, NewKey
from llamactl.errors import InvalidInput

__all__ = ["Resolver", "changes_from", "key_body", "new_key_from", "permissions_body"]

_MODES = ("allow_all", "per_instance")
_FIELDS = (
    "name", "permission_mode", "permissions", "instance_ids", "expires_at",
    "max_concurrent", "requests_per_minute", "disabled",
)  # fmt: skip
_OPTIONAL = ("expires_at", "max_concurrent", "requests_per_minute")
_PERMISSION_FIELDS = ("instance_id", "instance", "can_start", "can_evict")
_NAME_MOST = 100

# Instance ids by name and names by id, from the database: (names, ids) -> (by name, by id).
Resolver = Callable[[Sequence[str], Sequence[int]], tuple[dict[str, int], dict[int, str]]]


def key_body(record: KeyRecord) -> dict[str, object]:
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "user_id": record.owner,
        "permission_mode": record.permission_mode,
        "permissions": [_permission_body(p) for p in record.permissions],
        "max_concurrent": record.max_concurrent,
        "requests_per_minute": record.requests_per_minute,
        "expires_at": record.expires_at,
        "disabled": record.disabled,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "last_used_at": record.last_used_at,
        "requests": record.requests,
    }


def permissions_body(record: KeyRecord) -> list[dict[str, object]]:
    return [_permission_body(p) for p in record.permissions]


def _permission_body(permission: KeyPermission) -> dict[str, object]:
    return {
        "instance_id": permission.instance_id,
        "instance_name": permission.instance_name,
        "can_start": permission.can_start,
        "can_evict": permission.can_evict,
    }


def new_key_from(body: Mapping[str, object], key: str, key_hash: str, resolve: Resolver) -> NewKey:
    """The key a create request asks for (``key`` is the new plaintext key)."""
    _known(body, _FIELDS, "")
    mode = _mode(body.get("permission_mode", "allow_all"))
    permissions = _permissions(body, resolve)
    _check_mode(mode, permissions)
    return NewKey(
        name=_name(body.get("name")),
        key_hash=key_hash,
        prefix=display_prefix(key),
        permission_mode=mode,
        permissions=permissions or (),
        max_concurrent=_positive(body, "max_concurrent"),
        requests_per_minute=_positive(body, "requests_per_minute"),
        expires_at=_expiry(body.get("expires_at")),
        disabled=_flag(body, "disabled", default=False),
    )


def changes_from(body: Mapping[str, object], current: KeyRecord, resolve: Resolver) -> KeyChanges:
    """What an update request changes; fields left out stay, ``null`` clears a limit or
    the expiry."""
    _known(body, _FIELDS, "")
    if not body:
        raise InvalidInput(f"the update names nothing to change: give one of {', '.join(_FIELDS)}")
    mode = _mode(body["permission_mode"]) if "permission_mode" in body else None
    permissions = _permissions(body, resolve)
    kept = current.permissions if permissions is None else permissions
    _check_mode(mode or current.permission_mode, kept)
    cleared = frozenset(name for name in _OPTIONAL if name in body and body[name] is None)
    return KeyChanges(
        name=_name(body["name"]) if "name" in body else None,
        permission_mode=mode,
        permissions=permissions,
        max_concurrent=_positive(body, "max_concurrent"),
        requests_per_minute=_positive(body, "requests_per_minute"),
        expires_at=_expiry(body.get("expires_at")),
        disabled=_flag(body, "disabled", default=None),
        clear=cleared,
    )


def _known(body: Mapping[str, object], fields: Sequence[str], where: str) -> None:
    for field in body:
        if field not in fields:
            raise InvalidInput(
                f"{where}{field}: unknown field (value {_shown(body[field])}); "
                f"known: {', '.join(fields)}"
            )


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(
            f"name: expected a name of 1 to {_NAME_MOST} characters, got {_shown(value)}"
        )
    if len(value) > _NAME_MOST:
        raise InvalidInput(f"name: {len(value)} characters, at most {_NAME_MOST}")
    return value


def _mode(value: object) -> str:
    if value not in _MODES:
        raise InvalidInput(
            f"permission_mode: expected one of {', '.join(_MODES)}, got {_shown(value)}"
        )
    return str(value)


def _check_mode(mode: str, permissions: Sequence[KeyPermission] | None) -> None:
    if mode == "per_instance" and not permissions:
        raise InvalidInput("permissions: a per_instance key needs at least one instance it may use")


def _positive(body: Mapping[str, object], field: str) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{field}: expected a whole number from 1, or null, got {_shown(value)}")
    return value


def _expiry(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"expires_at: expected unix seconds, or null, got {_shown(value)}")
    if value <= time.time():
        raise InvalidInput(f"expires_at: {value} is in the past; give a time to come")
    return value


def _flag(body: Mapping[str, object], field: str, *, default: bool | None) -> Any:
    value = body.get(field, default)
    if value is not default and not isinstance(value, bool):
        raise InvalidInput(f"{field}: expected true or false, got {_shown(value)}")
    return value


def _permissions(body: Mapping[str, object], resolve: Resolver) -> tuple[KeyPermission, ...] | None:
    """The permissions of ``permissions`` (or of the shorter ``instance_ids``), each
    naming an instance that exists; ``None`` when the body gives neither."""
    if "permissions" in body and "instance_ids" in body:
        raise InvalidInput("give permissions or instance_ids, not both")
    if "instance_ids" in body:
        ids = body["instance_ids"]
        if not isinstance(ids, list):
            raise InvalidInput(f"instance_ids: expected a list of instance ids, got {_shown(ids)}")
        entries: list[object] = [{"instance_id": item} for item in ids]
    elif "permissions" in body:
        given = body["permissions"]
        if not isinstance(given, list):
            raise InvalidInput(f"permissions: expected a list, got {_shown(given)}")
        entries = list(given)
    else:
        return None
    wanted = [_permission(index, entry) for index, entry in enumerate(entries)]
    names = [name for _index, name, _id, _start, _evict in wanted if name is not None]
    ids = [row_id for _index, _name, row_id, _start, _evict in wanted if row_id is not None]
    by_name, by_id = resolve(names, ids)
    found: dict[int, KeyPermission] = {}
    for index, name, row_id, can_start, can_evict in wanted:
        if name is not None and name not in by_name:
            raise InvalidInput(f"permissions[{index}].instance: no instance is called {name!r}")
        if row_id is not None and row_id not in by_id:
            raise InvalidInput(f"permissions[{index}].instance_id: no instance has the id {row_id}")
        instance_id = by_name[name] if name is not None else row_id
        assert instance_id is not None
        found[instance_id] = KeyPermission(instance_id, "", can_start, can_evict)
    return tuple(found.values())


def _permission(index: int, entry: object) -> tuple[int, str | None, int | None, bool, bool]:
    where = f"permissions[{index}]"
    if not isinstance(entry, dict):
        raise InvalidInput(f"{where}: expected an object, got {_shown(entry)}")
    _known(entry, _PERMISSION_FIELDS, f"{where}.")
    name, row_id = entry.get("instance"), entry.get("instance_id")
    if (name is None) == (row_id is None):
        raise InvalidInput(f"{where}: give the instance's instance_id or its name (instance)")
    if name is not None and not isinstance(name, str):
        raise InvalidInput(f"{where}.instance: expected an instance name, got {_shown(name)}")
    if row_id is not None and (isinstance(row_id, bool) or not isinstance(row_id, int)):
        raise InvalidInput(f"{where}.instance_id: expected an instance id, got {_shown(row_id)}")
    flags = []
    for flag in ("can_start", "can_evict"):
        value = entry.get(flag, True)
        if not isinstance(value, bool):
            raise InvalidInput(f"{where}.{flag}: expected true or false, got {_shown(value)}")
        flags.append(value)
    return index, name, row_id, flags[0], flags[1]


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

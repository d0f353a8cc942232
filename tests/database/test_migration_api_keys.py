"""Migration 0005: the api_keys and key_permissions tables; instances stay as they were."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.revisions import at_revision, downgraded
from tests.support.schema import describe_table

KEY = (
    "INSERT INTO api_keys (name, key_hash, prefix, permission_mode, created_at, updated_at) "
    "VALUES (?, ?, 'llamactl-ab12', ?, 1, 1)"
)


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


def run(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    connection = connect(path)
    try:
        with connection:
            return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


@pytest.fixture
def upgraded(tmp_path: Path) -> Path:
    """A 0004 database with two instances, then upgraded to 0005."""
    path = tmp_path / "llamactl.db"
    at_revision(path, "0004")
    for name in ("one", "two"):
        run(
            path,
            "INSERT INTO instances (name, backend_type, backend_config_json, created_at, "
            "updated_at) VALUES (?, 'llama_cpp', '{}', 1, 2)",
            name,
        )
    at_revision(path, "0005")
    return path


def test_the_upgrade_keeps_every_instance_and_adds_the_two_tables(upgraded: Path) -> None:
    assert run(upgraded, "SELECT id, name FROM instances ORDER BY id") == [(1, "one"), (2, "two")]
    connection = sqlite3.connect(upgraded)
    try:
        keys = describe_table(connection, "api_keys")
        permissions = describe_table(connection, "key_permissions")
    finally:
        connection.close()
    assert [column.name for column in keys.columns] == [
        "id", "name", "key_hash", "prefix", "owner", "permission_mode", "max_concurrent",
        "requests_per_minute", "expires_at", "disabled", "created_at", "updated_at",
        "last_used_at", "requests",
    ]  # fmt: skip
    assert keys.autoincrement
    assert {index.name for index in keys.indexes} == {"idx_api_keys_key_hash"}
    assert [column.name for column in permissions.columns] == [
        "key_id", "instance_id", "can_start", "can_evict",
    ]  # fmt: skip
    assert {index.name for index in permissions.indexes} >= {"idx_key_permissions_instance_id"}


@pytest.mark.parametrize(("name", "mode"), [("", "allow_all"), ("x" * 101, "allow_all"),
                                            ("ok", "everything")])  # fmt: skip
def test_the_checks_refuse_a_key_no_key_may_be(upgraded: Path, name: str, mode: str) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        run(upgraded, KEY, name, "hash-1", mode)
    assert run(upgraded, "SELECT count(*) FROM api_keys") == [(0,)]


@pytest.mark.parametrize(
    "change", ["disabled = 2", "max_concurrent = 0", "requests_per_minute = -1"]
)
def test_the_checks_refuse_a_value_no_key_may_have(upgraded: Path, change: str) -> None:
    run(upgraded, KEY, "ok", "hash-1", "allow_all")
    with pytest.raises(sqlite3.IntegrityError):
        run(upgraded, f"UPDATE api_keys SET {change}")
    assert run(upgraded, "SELECT disabled, max_concurrent, requests_per_minute FROM api_keys") == [
        (0, None, None)
    ]


def test_a_hash_is_stored_once(upgraded: Path) -> None:
    run(upgraded, KEY, "first", "same-hash", "allow_all")
    with pytest.raises(sqlite3.IntegrityError):
        run(upgraded, KEY, "second", "same-hash", "allow_all")
    assert run(upgraded, "SELECT name, owner, disabled, requests FROM api_keys") == [
        ("first", "system", 0, 0)
    ]


def test_permissions_go_with_their_key_and_with_their_instance(upgraded: Path) -> None:
    run(upgraded, KEY, "scoped", "hash-1", "per_instance")
    run(upgraded, KEY, "other", "hash-2", "per_instance")
    for key_id, instance_id in ((1, 1), (1, 2), (2, 1)):
        run(
            upgraded,
            "INSERT INTO key_permissions (key_id, instance_id) VALUES (?, ?)",
            key_id,
            instance_id,
        )
    assert run(upgraded, "SELECT can_start, can_evict FROM key_permissions LIMIT 1") == [(1, 1)]
    with pytest.raises(sqlite3.IntegrityError):  # no such instance
        run(upgraded, "INSERT INTO key_permissions (key_id, instance_id) VALUES (1, 99)")
    run(upgraded, "DELETE FROM instances WHERE name = 'one'")
    assert run(upgraded, "SELECT key_id, instance_id FROM key_permissions") == [(1, 2)]
    run(upgraded, "DELETE FROM api_keys WHERE id = 1")
    assert run(upgraded, "SELECT count(*) FROM key_permissions") == [(0,)]


def test_the_downgrade_drops_the_keys_and_keeps_the_instances(upgraded: Path) -> None:
    run(upgraded, KEY, "gone", "hash-1", "allow_all")
    downgraded(upgraded, "0004")
    tables = {row[0] for row in run(upgraded, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "api_keys" not in tables and "key_permissions" not in tables
    assert run(upgraded, "SELECT name FROM instances ORDER BY id") == [("one",), ("two",)]
    at_revision(upgraded, "0005")  # and up again
    assert run(upgraded, "SELECT count(*) FROM api_keys") == [(0,)]

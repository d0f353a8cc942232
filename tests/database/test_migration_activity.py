"""Migration 0006: the activity table; instances and keys stay as they were."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.revisions import at_revision, downgraded
from tests.support.schema import describe_table

ROW = (
    "INSERT INTO activity (time, route, status, duration) "
    "VALUES (1.5, '/v1/chat/completions', ?, ?)"
)


def run(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        with connection:
            return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


@pytest.fixture
def upgraded(tmp_path: Path) -> Path:
    """A 0005 database with an instance, then upgraded to 0006."""
    path = tmp_path / "llamactl.db"
    at_revision(path, "0005")
    run(
        path,
        "INSERT INTO instances (name, backend_type, backend_config_json, created_at, "
        "updated_at) VALUES ('one', 'llama_cpp', '{}', 1, 2)",
    )
    at_revision(path, "0006")
    return path


def test_the_upgrade_keeps_the_instances_and_adds_the_table(upgraded: Path) -> None:
    assert run(upgraded, "SELECT name FROM instances") == [("one",)]
    connection = sqlite3.connect(upgraded)
    try:
        table = describe_table(connection, "activity")
    finally:
        connection.close()
    assert [column.name for column in table.columns] == [
        "id", "time", "instance", "node", "route", "status", "duration", "ttfb", "queue_wait",
        "cold_start", "streamed", "prompt_tokens", "completion_tokens", "tokens_per_second",
        "key_id", "key_name",
    ]  # fmt: skip
    assert table.autoincrement
    assert table.indexes == frozenset()  # writes cost one B-tree insert and delete per request


def test_a_row_gets_its_defaults(upgraded: Path) -> None:
    run(upgraded, ROW, 200, 0.25)
    assert run(upgraded, "SELECT id, cold_start, streamed, instance, ttfb FROM activity") == [
        (1, 0, 0, None, None)
    ]


@pytest.mark.parametrize(("status", "duration"), [(99, 0.1), (600, 0.1), (200, -0.5)])
def test_the_checks_refuse_what_no_request_is(upgraded: Path, status: int, duration: float) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        run(upgraded, ROW, status, duration)
    assert run(upgraded, "SELECT count(*) FROM activity") == [(0,)]


@pytest.mark.parametrize("change", ["cold_start = 2", "ttfb = -1", "prompt_tokens = -3"])
def test_the_checks_refuse_a_value_no_row_may_have(upgraded: Path, change: str) -> None:
    run(upgraded, ROW, 200, 0.25)
    with pytest.raises(sqlite3.IntegrityError):
        run(upgraded, f"UPDATE activity SET {change}")


def test_the_downgrade_drops_the_log_and_keeps_the_rest(upgraded: Path) -> None:
    run(upgraded, ROW, 200, 0.25)
    downgraded(upgraded, "0005")
    tables = {row[0] for row in run(upgraded, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert "activity" not in tables and "api_keys" in tables
    assert run(upgraded, "SELECT name FROM instances") == [("one",)]
    at_revision(upgraded, "0006")
    assert run(upgraded, "SELECT count(*) FROM activity") == [(0,)]

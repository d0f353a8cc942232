"""Migration 0007: an instance's ``loading_progress`` column; everything else as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.support.revisions import at_revision, downgraded

INSERT = (
    "INSERT INTO instances (name, backend_type, backend_config_json, created_at, updated_at) "
    "VALUES (?, 'llama_cpp', '{}', 1, 2)"
)


def run(path: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        with connection:
            return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def columns(path: Path) -> list[str]:
    return [str(row[1]) for row in run(path, "PRAGMA table_info(instances)")]


@pytest.fixture
def upgraded(tmp_path: Path) -> Path:
    """A 0006 database with an instance, then upgraded to 0007."""
    path = tmp_path / "llamactl.db"
    at_revision(path, "0006")
    run(path, INSERT, "one")
    at_revision(path, "0007")
    return path


def test_the_upgrade_keeps_the_rows_which_inherit(upgraded: Path) -> None:
    assert run(upgraded, "SELECT name, loading_progress FROM instances") == [("one", None)]
    assert columns(upgraded)[-1] == "loading_progress"


def test_the_downgrade_drops_only_the_column(upgraded: Path) -> None:
    before = columns(upgraded)
    run(upgraded, "UPDATE instances SET loading_progress = 0")
    downgraded(upgraded, "0006")
    assert columns(upgraded) == before[:-1]
    assert run(upgraded, "SELECT name FROM instances") == [("one",)]
    at_revision(upgraded, "0007")
    assert run(upgraded, "SELECT loading_progress FROM instances") == [(None,)]

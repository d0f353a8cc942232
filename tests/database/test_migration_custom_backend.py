"""Migration 0004: the backend_type CHECK takes 'custom'; rows, indexes and counters stay."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llamactl.errors import MigrationError
from tests.support.revisions import at_revision, downgraded
from tests.support.schema import Index, TableSchema, describe_table, spec_schema

NARROW_CHECK = "backend_typein('llama_cpp','mlx_lm','vllm')"
WIDE_CHECK = "backend_typein('llama_cpp','mlx_lm','vllm','custom')"


def execute(path: Path, *statements: str) -> None:
    connection = sqlite3.connect(path)
    try:
        with connection:
            for statement in statements:
                connection.execute(statement)
    finally:
        connection.close()


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def table(path: Path) -> TableSchema:
    connection = sqlite3.connect(path)
    try:
        return describe_table(connection, "instances")
    finally:
        connection.close()


def insert(name: str, backend_type: str = "llama_cpp", status: str = "stopped") -> str:
    return (
        "INSERT INTO instances (name, backend_type, backend_config_json, status, created_at,"
        " updated_at, auto_restart, max_restarts, nodes, environment) VALUES"
        f" ('{name}', '{backend_type}', '{{\"model\": \"/m/{name}\"}}', '{status}', 10, 20,"
        ' 1, 3, \'["main"]\', \'{"A": "1"}\')'
    )


@pytest.fixture
def at_0003(tmp_path: Path) -> Path:
    """A database at 0003 with rows of every built-in type, a process record and a gap
    in the ids (the last instance was deleted)."""
    path = tmp_path / "llamactl.db"
    at_revision(path, "0003")
    execute(
        path,
        insert("a"),
        insert("b", "mlx_lm", "running"),
        insert("c", "vllm", "failed"),
        insert("gone"),
        "DELETE FROM instances WHERE name = 'gone'",
        "UPDATE instances SET failure_reason = 'exited with status 1' WHERE name = 'c'",
        "INSERT INTO instance_processes VALUES ('b', 4242, 77, 1000)",
    )
    return path


def test_upgrade_keeps_every_row_index_and_other_check(at_0003: Path) -> None:
    before = rows(at_0003, "SELECT * FROM instances ORDER BY id")
    processes = rows(at_0003, "SELECT * FROM instance_processes")
    old = table(at_0003)
    at_revision(at_0003, "0004")
    new = table(at_0003)
    assert rows(at_0003, "SELECT * FROM instances ORDER BY id") == before
    assert len(before) == 3
    assert rows(at_0003, "SELECT * FROM instance_processes") == processes == [("b", 4242, 77, 1000)]
    assert new.columns == old.columns
    assert new.indexes == old.indexes == spec_schema().indexes | _autoindex(old)
    assert new.checks == (old.checks - {NARROW_CHECK}) | {WIDE_CHECK}
    assert new.autoincrement
    # The id of the deleted instance is not handed out again.
    execute(at_0003, insert("d"))
    assert rows(at_0003, "SELECT id FROM instances WHERE name = 'd'") == [(5,)]


def _autoindex(schema: TableSchema) -> frozenset[Index]:
    """The index SQLite makes for the UNIQUE name column, beside the spec's three."""
    return frozenset(
        index for index in schema.indexes if index.name.startswith("sqlite_autoindex_")
    )


def test_the_check_takes_custom_and_refuses_an_unknown_type(at_0003: Path) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        execute(at_0003, insert("x", "custom"))
    at_revision(at_0003, "0004")
    execute(at_0003, insert("x", "custom"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        execute(at_0003, insert("y", "sglang"))
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        execute(at_0003, "UPDATE instances SET status = 'sleeping' WHERE name = 'a'")
    assert rows(at_0003, "SELECT name FROM instances WHERE backend_type = 'custom'") == [("x",)]


def test_downgrade_refuses_while_custom_instances_exist(at_0003: Path) -> None:
    at_revision(at_0003, "0004")
    execute(at_0003, insert("sg", "custom"), insert("tabby", "custom"))
    before = rows(at_0003, "SELECT * FROM instances ORDER BY id")
    with pytest.raises(
        MigrationError, match=r"2 instance\(s\) use the custom backend \(sg, tabby\)"
    ):
        downgraded(at_0003, "0003")
    assert rows(at_0003, "SELECT * FROM instances ORDER BY id") == before
    assert rows(at_0003, "SELECT version_num FROM alembic_version") == [("0004",)]
    assert WIDE_CHECK in table(at_0003).checks


def test_downgrade_without_custom_instances_restores_the_spec_check(at_0003: Path) -> None:
    before = rows(at_0003, "SELECT * FROM instances ORDER BY id")
    old = table(at_0003)
    at_revision(at_0003, "0004")
    execute(at_0003, insert("sg", "custom"), "DELETE FROM instances WHERE name = 'sg'")
    downgraded(at_0003, "0003")
    assert rows(at_0003, "SELECT version_num FROM alembic_version") == [("0003",)]
    assert rows(at_0003, "SELECT * FROM instances ORDER BY id") == before
    assert rows(at_0003, "SELECT * FROM instance_processes") == [("b", 4242, 77, 1000)]
    assert table(at_0003) == old
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        execute(at_0003, insert("x", "custom"))


def test_a_legacy_database_keeps_its_checks_on_the_columns(tmp_path: Path) -> None:
    """A database of the Go original writes its CHECKs on the columns: they keep that form."""
    from tests.support.schema import SPEC_DDL

    path = tmp_path / "legacy.db"
    connection = sqlite3.connect(path)
    try:
        connection.executescript(SPEC_DDL)
        connection.execute("CREATE TABLE schema_migrations (version INTEGER, dirty INTEGER)")
        connection.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        connection.commit()
    finally:
        connection.close()
    execute(path, insert("old"))
    at_revision(path, "head")
    assert WIDE_CHECK in table(path).checks
    assert rows(path, "SELECT name, backend_type FROM instances") == [("old", "llama_cpp")]
    (sql,) = rows(path, "SELECT sql FROM sqlite_master WHERE name = 'instances'")[0]
    assert "CHECK(backend_type IN ('llama_cpp', 'mlx_lm', 'vllm', 'custom'))" in str(sql)

"""Migrations: revision 0001 is the spec's schema exactly; refusals leave the database as it was."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.errors import MigrationError, NotALlamactlDatabase
from tests.support.schema import SPEC_DDL, Column, describe_table, spec_schema, user_tables

SPEC_DOCUMENT = Path(__file__).parents[3] / "shared" / "spec" / "sqlite-persistence.md"
# What migration 0003 adds after the spec's columns: nullable, no default.
FAILURE_COLUMNS = (
    Column("failure_reason", "TEXT", False, None, False),
    Column("failure_output", "TEXT", False, None, False),
)
# What migration 0007 adds after them: the instance's loading progress, nullable.
LOADING_COLUMN = Column("loading_progress", "INTEGER", False, None, False)
LATER_COLUMNS = (*FAILURE_COLUMNS, LOADING_COLUMN)


# Migration 0004 widens the spec's backend_type CHECK to the custom backend; nothing else.
NARROW_CHECK = "backend_typein('llama_cpp','mlx_lm','vllm')"
WIDE_CHECK = "backend_typein('llama_cpp','mlx_lm','vllm','custom')"


def widened(checks: frozenset[str]) -> frozenset[str]:
    assert NARROW_CHECK in checks
    return (checks - {NARROW_CHECK}) | {WIDE_CHECK}


def open_file_db(path: Path) -> database.DB:
    return database.open(DatabaseSettings(path=str(path)))


def migrated(path: Path) -> None:
    db = open_file_db(path)
    try:
        database.run_migrations(db)
    finally:
        db.close()


def insert_raw_row(path: Path, name: str) -> None:
    """A minimal instances row written with sqlite3 alone (columns with DEFAULTs left out)."""
    connection = sqlite3.connect(path)
    try:
        with connection:
            connection.execute(
                "INSERT INTO instances (name, backend_type, backend_config_json, created_at, "
                "updated_at) VALUES (?, 'llama_cpp', '{}', 1, 2)",
                (name,),
            )
    finally:
        connection.close()


def snapshot(path: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """The schema objects and every row of every table: what 'untouched' compares."""
    connection = sqlite3.connect(path)
    try:
        schema = connection.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
        rows = [
            (table, *row)
            for table in sorted(user_tables(connection))
            for row in connection.execute(f"SELECT * FROM {table} ORDER BY 1")
        ]
        return schema, rows
    finally:
        connection.close()


def test_fixture_matches_the_spec_document() -> None:
    if not SPEC_DOCUMENT.is_file():
        pytest.skip(f"spec document not found at {SPEC_DOCUMENT}")
    ddl = re.search(r"```sql\n(.*?)```", SPEC_DOCUMENT.read_text(), re.DOTALL)
    assert ddl is not None
    assert ddl.group(1) == SPEC_DDL


def test_upgrade_creates_exactly_the_spec_schema(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    migrated(path)
    connection = sqlite3.connect(path)
    try:
        built = describe_table(connection, "instances")
        assert user_tables(connection) == {
            "instances",
            "instance_processes",
            "api_keys",
            "key_permissions",
            "activity",
            "alembic_version",
        }
    finally:
        connection.close()
    expected = spec_schema()
    spec_count = len(expected.columns)
    assert built.columns[:spec_count] == expected.columns
    assert built.columns[spec_count:] == LATER_COLUMNS
    assert built.checks == widened(expected.checks)
    assert built.indexes == expected.indexes
    assert built.autoincrement and expected.autoincrement


def test_spec_schema_description_is_not_vacuous() -> None:
    expected = spec_schema()
    assert [column.name for column in expected.columns][:3] == ["id", "name", "backend_type"]
    assert len(expected.checks) == 2
    assert {index.name for index in expected.indexes} >= {
        "idx_instances_name",
        "idx_instances_status",
        "idx_instances_backend_type",
    }
    status = next(column for column in expected.columns if column.name == "status")
    assert status.default == "'stopped'" and status.not_null


def test_downgrade_to_base_then_upgrade_again(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    migrated(path)
    db = open_file_db(path)
    try:
        database.downgrade(db, "base")
        assert database.current_revision(db) is None
    finally:
        db.close()
    connection = sqlite3.connect(path)
    try:
        assert user_tables(connection) == set()
        assert connection.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' "
            "AND name LIKE 'idx_instances_%'"
        ).fetchone() == (0,)
    finally:
        connection.close()
    migrated(path)
    connection = sqlite3.connect(path)
    try:
        columns = describe_table(connection, "instances").columns
        assert columns == spec_schema().columns + LATER_COLUMNS
    finally:
        connection.close()


def test_second_upgrade_is_a_no_op(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    migrated(path)
    insert_raw_row(path, "kept")
    before = snapshot(path)
    migrated(path)
    assert snapshot(path) == before


def test_current_and_head_revision(tmp_path: Path) -> None:
    db = open_file_db(tmp_path / "llamactl.db")
    try:
        assert database.current_revision(db) is None
        database.run_migrations(db)
        assert database.current_revision(db) == database.head_revision() == "0009"
    finally:
        db.close()


def test_migrations_run_from_any_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    migrated(tmp_path / "llamactl.db")
    assert list(elsewhere.iterdir()) == []


def test_database_newer_than_the_code_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    migrated(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    connection.close()
    before = snapshot(path)
    with pytest.raises(MigrationError, match=r"revision 9999, newer than this llamactl"):
        migrated(path)
    assert snapshot(path) == before


def test_foreign_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        connection.execute("INSERT INTO invoices (total) VALUES (9.5)")
    connection.close()
    before = snapshot(path)
    with pytest.raises(NotALlamactlDatabase, match="invoices"):
        migrated(path)
    assert snapshot(path) == before


def test_schema_version_one_database_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(SPEC_DDL)
        connection.execute("CREATE TABLE schema_migrations (version uint64, dirty bool)")
        connection.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        connection.execute(
            "INSERT INTO instances (name, backend_type, backend_config_json, status, "
            "created_at, updated_at, auto_restart, max_restarts) VALUES "
            "('old', 'llama_cpp', '{\"model\":\"/m/x.gguf\"}', 'running', 100, 200, 1, 3)"
        )
    connection.close()
    db = open_file_db(path)
    try:
        database.run_migrations(db)
        assert database.current_revision(db) == database.head_revision()
        (inst,) = db.load_all()
    finally:
        db.close()
    assert (inst.name, inst.created, inst.status.value) == ("old", 100, "running")
    assert inst.options.backend_options.model == "/m/x.gguf"


def test_dirty_schema_version_one_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(SPEC_DDL)
        connection.execute("CREATE TABLE schema_migrations (version uint64, dirty bool)")
        connection.execute("INSERT INTO schema_migrations VALUES (1, 1)")
    connection.close()
    before = snapshot(path)
    with pytest.raises(NotALlamactlDatabase):
        migrated(path)
    assert snapshot(path) == before


def test_memory_database_shares_one_connection() -> None:
    db = database.open(DatabaseSettings(path=":memory:"))
    try:
        database.run_migrations(db)
        assert database.current_revision(db) == database.head_revision()
        assert db.count() == 0
    finally:
        db.close()


def test_downgrade_to_0001_keeps_the_instances(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    migrated(path)
    insert_raw_row(path, "kept")
    db = open_file_db(path)
    try:
        database.downgrade(db, "0001")
        assert database.current_revision(db) == "0001"
    finally:
        db.close()
    connection = sqlite3.connect(path)
    try:
        assert user_tables(connection) == {"instances", "alembic_version"}
        assert connection.execute("SELECT name FROM instances").fetchall() == [("kept",)]
        assert describe_table(connection, "instances") == spec_schema()
    finally:
        connection.close()


def test_process_records_go_with_their_instance(tmp_path: Path) -> None:
    from llamactl.database.processes import ProcessRecord

    path = tmp_path / "llamactl.db"
    migrated(path)
    insert_raw_row(path, "a")
    db = open_file_db(path)
    try:
        db.record_process(ProcessRecord("a", 4242, 77, 1000))
        db.record_process(ProcessRecord("a", 4343, None, 1001))
        assert db.recorded_processes() == [ProcessRecord("a", 4343, None, 1001)]
        db.delete("a")
        assert db.recorded_processes() == []
    finally:
        db.close()


def test_upgrade_from_0002_keeps_the_rows_and_adds_empty_failures(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    db = open_file_db(path)
    try:
        database.upgrade(db, "0002")
        assert database.current_revision(db) == "0002"
    finally:
        db.close()
    insert_raw_row(path, "older")
    migrated(path)
    connection = sqlite3.connect(path)
    try:
        (row,) = connection.execute(
            "SELECT name, status, failure_reason, failure_output FROM instances"
        ).fetchall()
        table = describe_table(connection, "instances")
    finally:
        connection.close()
    assert row == ("older", "stopped", None, None)
    expected = spec_schema()
    assert (table.checks, table.indexes) == (widened(expected.checks), expected.indexes)
    db = open_file_db(path)
    try:
        (inst,) = db.load_all()
    finally:
        db.close()
    assert (inst.name, inst.failure) == ("older", None)


def test_downgrade_to_0002_drops_only_the_failure_columns(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    migrated(path)
    insert_raw_row(path, "kept")
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE instances SET failure_reason = 'exited with status 1'")
    connection.close()
    db = open_file_db(path)
    try:
        database.downgrade(db, "0002")
        assert database.current_revision(db) == "0002"
    finally:
        db.close()
    connection = sqlite3.connect(path)
    try:
        assert describe_table(connection, "instances") == spec_schema()
        assert connection.execute("SELECT name FROM instances").fetchall() == [("kept",)]
    finally:
        connection.close()

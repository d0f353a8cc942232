"""Migrations on PostgreSQL: the newest revision is the equivalent of the SQLite schema,
every revision goes down and up again keeping the rows, and refusals leave the database
as it was."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.errors import MigrationError, NotALlamactlDatabase
from tests.support.pg_schema import EQUIVALENT_DDL, describe
from tests.support.postgres import PostgresServer

REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009")


class Target:
    """One empty database on the test server: its SQLAlchemy URL and libpq DSN."""

    def __init__(self, server: PostgresServer, name: str) -> None:
        self.url = server.url(name)
        self.dsn = server.dsn(name)

    def open(self) -> database.DB:
        return database.open(DatabaseSettings(path=self.url))

    def upgrade(self, revision: str = "head") -> None:
        db = self.open()
        try:
            database.upgrade(db, revision)
        finally:
            db.close()

    def downgrade(self, revision: str) -> None:
        db = self.open()
        try:
            database.downgrade(db, revision)
        finally:
            db.close()

    def revision(self) -> str | None:
        db = self.open()
        try:
            return database.current_revision(db)
        finally:
            db.close()

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.dsn) as connection:
            cursor = connection.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def make_target(server: PostgresServer) -> Iterator[Target]:
    with server.fresh_database() as name:
        yield Target(server, name)


@pytest.fixture
def target(postgres: PostgresServer) -> Iterator[Target]:
    yield from make_target(postgres)


@pytest.fixture
def reference(postgres: PostgresServer) -> Iterator[Target]:
    yield from make_target(postgres)


def test_the_newest_revision_is_the_equivalent_schema(target: Target, reference: Target) -> None:
    target.upgrade()
    with psycopg.connect(reference.dsn) as connection:
        connection.execute(EQUIVALENT_DDL)  # type: ignore[arg-type]
    built, expected = describe(target.dsn), describe(reference.dsn)
    assert built.tables() == expected.tables() == {
        "instances", "instance_processes", "api_keys", "key_permissions", "activity",
    }  # fmt: skip
    assert built.columns == expected.columns
    assert built.constraints == expected.constraints
    assert built.indexes == expected.indexes
    assert built.sequences == expected.sequences
    # Beyond the equivalent schema, PostgreSQL only: the change notices of 0009.
    assert expected.triggers == frozenset()
    assert {(row[0], row[1]) for row in built.triggers} == {
        ("instances", "llamactl_instance_written"),
        ("instances", "llamactl_instance_configured"),
        ("api_keys", "llamactl_key_written"),
        ("api_keys", "llamactl_key_configured"),
        ("key_permissions", "llamactl_permissions_written"),
    }


def test_the_schema_description_is_not_vacuous(reference: Target) -> None:
    with psycopg.connect(reference.dsn) as connection:
        connection.execute(EQUIVALENT_DDL)  # type: ignore[arg-type]
    schema = describe(reference.dsn)
    columns = {(row[0], row[1]): row for row in schema.columns}
    assert columns["instances", "id"][2:] == ("bigint", True, None, "d")
    assert columns["instances", "status"][2:] == ("text", True, "'stopped'::text", "")
    assert columns["activity", "time"][2] == "double precision"
    kinds = {row[2] for row in schema.constraints}
    assert kinds == {"p", "u", "c", "f"}
    assert len([row for row in schema.constraints if row[2] == "c"]) == 18
    assert {row[1] for row in schema.indexes} == {
        "idx_instances_name", "idx_instances_status", "idx_instances_backend_type",
        "idx_api_keys_key_hash", "idx_key_permissions_instance_id",
    }  # fmt: skip


def _fill(target: Target) -> None:
    """A row in every table that exists at revision 0005 and later."""
    target.execute(
        "INSERT INTO instances (name, backend_type, backend_config_json, created_at, updated_at) "
        "VALUES ('a', 'llama_cpp', '{}', 1, 2), ('gone', 'vllm', '{}', 1, 2)"
    )
    target.execute("DELETE FROM instances WHERE name = 'gone'")
    target.execute(
        "INSERT INTO instance_processes (instance_name, pid, start_ticks, started_at) "
        "VALUES ('a', 4242, 99, 3)"
    )
    target.execute(
        "INSERT INTO api_keys (name, key_hash, prefix, permission_mode, created_at, updated_at) "
        "VALUES ('k', 'h', 'sk-', 'per_instance', 1, 1)"
    )
    target.execute(
        "INSERT INTO key_permissions (key_id, instance_id) "
        "SELECT k.id, i.id FROM api_keys k, instances i"
    )


def _rows(target: Target) -> list[list[tuple[object, ...]]]:
    return [
        _instance_rows(target),
        target.execute("SELECT * FROM instance_processes"),
        target.execute("SELECT id, name, key_hash FROM api_keys ORDER BY id"),
        target.execute("SELECT * FROM key_permissions"),
    ]


def _instance_rows(target: Target) -> list[tuple[object, ...]]:
    return target.execute(
        "SELECT id, name, backend_type, status, created_at, max_restarts FROM instances "
        "ORDER BY id"
    )


def test_each_revision_goes_up_and_down_again_keeping_the_rows(target: Target) -> None:
    target.upgrade("0001")
    target.execute(
        "INSERT INTO instances (name, backend_type, backend_config_json, created_at, updated_at) "
        "VALUES ('first', 'mlx_lm', '{}', 7, 8)"
    )
    instances = _instance_rows(target)
    for revision in REVISIONS[1:5]:
        target.upgrade(revision)
        assert target.revision() == revision
        assert _instance_rows(target)[:1] == instances
    _fill(target)
    kept = _rows(target)
    for revision in REVISIONS[5:]:
        target.upgrade(revision)
        assert target.revision() == revision
        assert _rows(target) == kept
    for revision in reversed(REVISIONS[4:-1]):
        target.downgrade(revision)
        assert target.revision() == revision
        assert _rows(target) == kept
    for revision in reversed(REVISIONS[:4]):
        target.downgrade(revision)
        assert _instance_rows(target) == kept[0] and len(kept[0]) == 2
    target.upgrade()
    assert _instance_rows(target) == kept[0]


def test_ids_are_not_handed_out_again_across_0008(target: Target) -> None:
    target.upgrade("0007")
    _fill(target)  # ids 1 and 2 handed out, 2 deleted
    target.upgrade("0008")
    (new,) = target.execute(
        "INSERT INTO instances (name, backend_type, backend_config_json, created_at, updated_at) "
        "VALUES ('b', 'llama_cpp', '{}', 1, 2) RETURNING id"
    )
    assert new == (3,)
    target.downgrade("0007")
    (newer,) = target.execute(
        "INSERT INTO instances (name, backend_type, backend_config_json, created_at, updated_at) "
        "VALUES ('c', 'llama_cpp', '{}', 1, 2) RETURNING id"
    )
    assert newer == (4,)


def test_0008_holds_64_bit_values_and_its_downgrade_refuses_them(target: Target) -> None:
    target.upgrade("0008")
    _fill(target)
    ticks = 2**40
    target.execute("UPDATE instance_processes SET start_ticks = %s", (ticks,))
    assert target.execute("SELECT start_ticks FROM instance_processes") == [(ticks,)]
    before = describe(target.dsn)
    with pytest.raises(MigrationError, match=r"instance_processes\.start_ticks"):
        target.downgrade("0007")
    assert target.revision() == "0008"
    assert describe(target.dsn) == before


def test_downgrade_to_base_then_upgrade_again(target: Target) -> None:
    target.upgrade()
    target.downgrade("base")
    assert describe(target.dsn, leave_out=frozenset()).tables() == set()
    target.upgrade()
    assert target.revision() == database.head_revision()
    assert describe(target.dsn).tables() == {
        "instances", "instance_processes", "api_keys", "key_permissions", "activity",
    }  # fmt: skip


def test_a_second_upgrade_is_a_no_op(target: Target) -> None:
    target.upgrade()
    _fill(target)
    before, rows = describe(target.dsn), _rows(target)
    target.upgrade()
    assert (describe(target.dsn), _rows(target)) == (before, rows)


def test_a_database_newer_than_the_code_is_refused_untouched(target: Target) -> None:
    target.upgrade()
    target.execute("UPDATE alembic_version SET version_num = '9999'")
    before = describe(target.dsn, leave_out=frozenset())
    with pytest.raises(MigrationError, match="9999"):
        target.upgrade()
    assert describe(target.dsn, leave_out=frozenset()) == before
    assert target.execute("SELECT version_num FROM alembic_version") == [("9999",)]


def test_a_foreign_database_is_refused_untouched(target: Target) -> None:
    target.execute("CREATE TABLE orders (id bigint PRIMARY KEY, total numeric)")
    target.execute("INSERT INTO orders VALUES (1, 9.5)")
    before = describe(target.dsn, leave_out=frozenset())
    with pytest.raises(NotALlamactlDatabase, match="orders"):
        target.upgrade()
    assert describe(target.dsn, leave_out=frozenset()) == before
    assert target.execute("SELECT id FROM orders") == [(1,)]


def test_each_downgrade_gives_the_schema_its_revision_builds(
    target: Target, postgres: PostgresServer
) -> None:
    target.upgrade()
    for revision in reversed(REVISIONS[:-1]):
        target.downgrade(revision)
        for reference in make_target(postgres):
            reference.upgrade(revision)
            assert describe(target.dsn) == describe(reference.dsn), revision


def test_replicas_migrating_an_empty_database_together_take_turns(target: Target) -> None:
    import threading

    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def migrate() -> None:
        start.wait()
        try:
            target.upgrade()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert target.revision() == database.head_revision()

"""The spec's Data Mapping, row by row, for all three backends, on :memory: and on a file."""

from __future__ import annotations

import gc
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.errors import DatabaseError, InstanceExists, InstanceNotFound
from llamactl.instance import Instance, Options, Status
from tests.support.clock import FakeClock

BACKEND_OPTIONS: dict[str, dict[str, object]] = {
    "llama_cpp": {
        "model": "/models/llama.gguf",
        "ctx_size": 4096,
        "gpu_layers": 0,
        "seed": 0,
        "mlock": False,
        "temp": 0.25,
        "lora": ["/a.gguf", "/b.gguf"],
        "port": 8001,
        "extra_args": {"flash-attn": "", "some_new_flag": "x"},
    },
    "mlx_lm": {"model": "mlx-community/Qwen", "temp": 0.0, "max_tokens": 256, "port": 8002},
    "vllm": {
        "model": "Qwen/Qwen2.5-0.5B",
        "tensor_parallel_size": 2,
        "gpu_memory_utilization": 0.9,
        "enforce_eager": False,
        "port": 8003,
    },
}


ALL_SET: dict[str, object] = {
    "auto_restart": True,
    "max_restarts": 2,
    "restart_delay": 1,
    "on_demand_start": False,
    "idle_timeout": 10,
    "docker_enabled": False,
    "command_override": "/bin/llama-server",
}


def make(
    name: str = "inst",
    *,
    created: int = 1_700_000_000,
    status: Status = Status.STOPPED,
    **options: Any,
) -> Instance:
    body: dict[str, object] = {
        "backend_type": "llama_cpp",
        "backend_options": {"model": "/m/x.gguf"},
    }
    body.update(options)
    return Instance(name=name, created=created, status=status, options=Options.from_json(body))


def row(db_path_or_db: database.DB, name: str) -> sqlite3.Row | dict[str, Any]:
    with db_path_or_db.reading() as connection:
        found = (
            connection.execute(text("SELECT * FROM instances WHERE name = :name"), {"name": name})
            .mappings()
            .one()
        )
        return dict(found)


@pytest.mark.parametrize("backend_type", sorted(BACKEND_OPTIONS))
def test_full_round_trip_for_each_backend(any_db: database.DB, backend_type: str) -> None:
    inst = make(
        f"full-{backend_type}",
        status=Status.RUNNING,
        backend_type=backend_type,
        backend_options=BACKEND_OPTIONS[backend_type],
        auto_restart=True,
        max_restarts=7,
        restart_delay=3,
        on_demand_start=True,
        idle_timeout=15,
        docker_enabled=False,
        nodes=["worker-b", "worker-a"],
        environment={"CUDA_VISIBLE_DEVICES": "0,1", "EMPTY": ""},
    )
    any_db.save(inst)
    (loaded,) = any_db.load_all()
    assert loaded == inst
    stored = row(any_db, inst.name)
    assert stored["backend_type"] == backend_type
    assert json.loads(stored["backend_config_json"]) == inst.options.backend_options.to_json()
    assert stored["status"] == "running"
    assert (stored["auto_restart"], stored["on_demand_start"], stored["docker_enabled"]) == (
        1,
        1,
        0,
    )
    assert (stored["max_restarts"], stored["restart_delay"], stored["idle_timeout"]) == (7, 3, 15)
    assert stored["nodes"] == '["worker-a", "worker-b"]'
    assert json.loads(stored["environment"]) == {"CUDA_VISIBLE_DEVICES": "0,1", "EMPTY": ""}
    assert stored["owner_user_id"] is None


@pytest.mark.parametrize("backend_type", sorted(BACKEND_OPTIONS))
def test_unset_options_store_the_column_defaults(any_db: database.DB, backend_type: str) -> None:
    inst = make("unset", backend_type=backend_type, backend_options=BACKEND_OPTIONS[backend_type])
    assert inst.options.auto_restart is None and inst.options.max_restarts is None
    any_db.save(inst)
    stored = row(any_db, "unset")
    assert {
        key: stored[key]
        for key in (
            "auto_restart",
            "max_restarts",
            "restart_delay",
            "on_demand_start",
            "idle_timeout",
            "docker_enabled",
        )
    } == {
        "auto_restart": 0,
        "max_restarts": -1,
        "restart_delay": 0,
        "on_demand_start": 0,
        "idle_timeout": 0,
        "docker_enabled": 0,
    }
    assert (stored["command_override"], stored["nodes"], stored["environment"]) == (
        None,
        None,
        None,
    )
    (loaded,) = any_db.load_all()
    options = loaded.options
    assert (options.auto_restart, options.max_restarts, options.restart_delay) == (False, -1, 0)
    assert (options.on_demand_start, options.idle_timeout, options.docker_enabled) == (
        False,
        0,
        False,
    )
    assert options.nodes == () and dict(options.environment) == {}


def test_unset_options_in_an_update_reset_to_the_column_defaults(any_db: database.DB) -> None:
    any_db.save(make("reset", auto_restart=True, max_restarts=4, idle_timeout=9))
    any_db.save(make("reset"))
    stored = row(any_db, "reset")
    assert (stored["auto_restart"], stored["max_restarts"], stored["idle_timeout"]) == (0, -1, 0)


BACKENDS = sorted(BACKEND_OPTIONS)


def on(backend_type: str) -> dict[str, object]:
    """Options selecting ``backend_type`` with its sample backend options."""
    return {"backend_type": backend_type, "backend_options": BACKEND_OPTIONS[backend_type]}


@pytest.mark.parametrize("backend_type", BACKENDS)
def test_explicit_zeros_and_falses_are_stored_and_kept(
    any_db: database.DB, backend_type: str
) -> None:
    inst = make(
        "zeros",
        **on(backend_type),
        auto_restart=False,
        max_restarts=0,
        restart_delay=0,
        on_demand_start=False,
        idle_timeout=0,
        docker_enabled=False,
    )
    any_db.save(inst)
    (loaded,) = any_db.load_all()
    options = loaded.options
    assert (options.auto_restart, options.max_restarts, options.restart_delay) == (False, 0, 0)
    assert (options.on_demand_start, options.idle_timeout, options.docker_enabled) == (
        False,
        0,
        False,
    )
    assert row(any_db, "zeros")["max_restarts"] == 0


def test_typed_zero_backend_options_survive(any_db: database.DB) -> None:
    any_db.save(
        make("typed", backend_options={"model": "/m", "seed": 0, "gpu_layers": 0, "no_mmap": False})
    )
    loaded = any_db.get_by_name("typed").options.backend_options
    assert loaded.to_json() == {"gpu_layers": 0, "model": "/m", "no_mmap": False, "seed": 0}


@pytest.mark.parametrize("backend_type", BACKENDS)
@pytest.mark.parametrize(("nodes", "stored"), [([], None), (["b", "a", "c"], '["a", "b", "c"]')])
def test_nodes_survive_load_all(
    any_db: database.DB, backend_type: str, nodes: list[str], stored: str | None
) -> None:
    any_db.save(make("noded", nodes=nodes, **on(backend_type)))
    assert row(any_db, "noded")["nodes"] == stored
    (loaded,) = any_db.load_all()
    assert loaded.options.nodes == tuple(sorted(nodes))


@pytest.mark.parametrize("backend_type", BACKENDS)
@pytest.mark.parametrize("environment", [{}, {"A": "1", "B": "two words", "C": "x=y"}])
def test_environment_round_trip(
    any_db: database.DB, backend_type: str, environment: dict[str, str]
) -> None:
    any_db.save(make("env", environment=environment, **on(backend_type)))
    stored = row(any_db, "env")["environment"]
    assert stored == (json.dumps(environment) if environment else None)
    assert dict(any_db.get_by_name("env").options.environment) == environment


def test_command_override_round_trip(any_db: database.DB) -> None:
    any_db.save(make("cmd", command_override="/opt/venv/bin/llama-server --foo 'a b'"))
    assert row(any_db, "cmd")["command_override"] == "/opt/venv/bin/llama-server --foo 'a b'"
    loaded = any_db.get_by_name("cmd")
    assert loaded.options.command_override == "/opt/venv/bin/llama-server --foo 'a b'"


@pytest.mark.parametrize(("flag", "stored"), [(None, None), (False, 0), (True, 1)])
def test_loading_progress_round_trip(
    any_db: database.DB, flag: bool | None, stored: int | None
) -> None:
    any_db.save(make("lp", loading_progress=flag))
    assert row(any_db, "lp")["loading_progress"] == stored
    assert any_db.get_by_name("lp").options.loading_progress is flag
    assert any_db.load_all()[0].options.loading_progress is flag


@pytest.mark.parametrize("backend_type", BACKENDS)
def test_created_survives_and_updated_at_moves(
    any_db: database.DB, clock: FakeClock, backend_type: str
) -> None:
    any_db.save(make("times", created=1_600_000_000, **on(backend_type)))
    first = row(any_db, "times")
    assert (first["created_at"], first["updated_at"]) == (1_600_000_000, int(clock.now))
    clock.now += 120
    any_db.save(make("times", created=1_600_000_000, status=Status.RUNNING))
    second = row(any_db, "times")
    assert (second["created_at"], second["updated_at"]) == (1_600_000_000, int(clock.now))
    clock.now += 60
    any_db.update(make("times", created=1_699_999_999))
    third = row(any_db, "times")
    assert (third["created_at"], third["updated_at"]) == (1_600_000_000, int(clock.now))
    assert any_db.get_by_name("times").created == 1_600_000_000


def test_save_of_an_existing_name_updates_the_one_row(any_db: database.DB) -> None:
    any_db.save(make("same", status=Status.STOPPED))
    any_db.save(make("same", status=Status.FAILED, idle_timeout=5))
    assert any_db.count() == 1
    loaded = any_db.get_by_name("same")
    assert (loaded.status, loaded.options.idle_timeout) == (Status.FAILED, 5)


def test_every_status_round_trips(any_db: database.DB) -> None:
    for status in Status:
        any_db.save(make(f"s-{status.value}", status=status))
    assert {inst.status for inst in any_db.load_all()} == set(Status)


def test_lists_are_sorted_by_name(any_db: database.DB) -> None:
    for name in ("zeta", "alpha", "Mid", "beta"):
        any_db.save(make(name))
    assert [inst.name for inst in any_db.get_all()] == ["Mid", "alpha", "beta", "zeta"]


def test_crud_errors(any_db: database.DB) -> None:
    any_db.create(make("one"))
    with pytest.raises(InstanceExists, match="one"):
        any_db.create(make("one"))
    with pytest.raises(InstanceNotFound, match="two"):
        any_db.update(make("two"))
    with pytest.raises(InstanceNotFound, match="two"):
        any_db.get_by_name("two")
    with pytest.raises(InstanceNotFound, match="two"):
        any_db.delete("two")
    any_db.delete_instance("one")
    assert any_db.load_all() == []


def test_a_stored_row_that_does_not_validate_names_the_instance(any_db: database.DB) -> None:
    any_db.save(make("broken"))
    with any_db.writing() as connection:
        connection.exec_driver_sql(
            'UPDATE instances SET backend_config_json = \'{"ctx_size": "big"}\' '
            "WHERE name = 'broken'"
        )
    with pytest.raises(DatabaseError, match=r"'broken'.*ctx_size"):
        any_db.load_all()


def test_load_all_leaves_the_cycle_collector_as_it_found_it(any_db: database.DB) -> None:
    any_db.save(make("one"))
    assert gc.isenabled()
    assert [inst.name for inst in any_db.load_all()] == ["one"]
    assert gc.isenabled()

    gc.disable()
    try:
        any_db.load_all()
        assert not gc.isenabled()
    finally:
        gc.enable()

    with any_db.writing() as connection:
        connection.exec_driver_sql("UPDATE instances SET backend_config_json = '[]'")
    with pytest.raises(DatabaseError, match=r"'one'.*backend_options"):
        any_db.load_all()
    assert gc.isenabled()


def test_file_database_persists_across_connections(db_path: Path, clock: FakeClock) -> None:
    first = database.open(DatabaseSettings(path=str(db_path)), clock=clock)
    database.run_migrations(first)
    saved = [
        make(f"p{index}", status=Status.RUNNING, nodes=["n1"], created=1000 + index, **ALL_SET)
        for index in range(3)
    ]
    for inst in saved:
        first.save(inst)
    first.delete("p1")
    first.close()

    second = database.open(DatabaseSettings(path=str(db_path)), clock=clock)
    try:
        database.run_migrations(second)
        assert second.load_all() == [saved[0], saved[2]]
    finally:
        second.close()
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_pragmas_on_a_file_database(file_db: database.DB) -> None:
    with file_db.reading() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA busy_timeout").scalar() == 5000
        assert pragma("PRAGMA foreign_keys").scalar() == 1


def test_pool_settings_are_mapped(tmp_path: Path) -> None:
    from datetime import timedelta

    settings = DatabaseSettings(
        path=str(tmp_path / "p.db"),
        max_open_connections=7,
        max_idle_connections=2,
        connection_max_lifetime=timedelta(seconds=90),
    )
    db = database.open(settings)
    try:
        pool = db.engine.pool
        assert (pool.size(), pool._max_overflow, pool._recycle) == (2, 5, 90)  # type: ignore[attr-defined]
    finally:
        db.close()


def test_row_tuple_matches_the_selected_columns() -> None:
    from llamactl.database import instances as sql

    assert sql._Row._fields == (*sql._WRITTEN, "id")


def test_column_defaults_match_the_schema(any_db: database.DB) -> None:
    from llamactl.database.instances import COLUMN_DEFAULTS

    with any_db.reading() as connection:
        columns = inspect(connection).get_columns("instances")
    declared = {column["name"]: column["default"] for column in columns}
    assert {name: _integer(declared[name]) for name in COLUMN_DEFAULTS} == COLUMN_DEFAULTS


def _integer(default: str) -> int:
    """A declared default as a number: SQLite says ``-1``, PostgreSQL ``'-1'::integer``."""
    return int(default.split("::")[0].strip("'"))


def test_the_last_failure_survives_a_reopen_and_is_cleared_by_a_save_without_one(
    db_path: Path, clock: FakeClock
) -> None:
    from llamactl.instance import Failure

    failure = Failure("exited with status 1", ("loading model", "error: out of memory", ""))
    db = database.open(DatabaseSettings(path=str(db_path)), clock=clock)
    try:
        database.run_migrations(db)
        db.save(make("broken", status=Status.FAILED).with_failure(failure))
        db.save(make("reasonless", status=Status.FAILED).with_failure(Failure("no output")))
        db.save(make("fine"))
    finally:
        db.close()
    connection = sqlite3.connect(db_path)
    try:
        stored = connection.execute(
            "SELECT name, failure_reason, failure_output FROM instances ORDER BY name"
        ).fetchall()
    finally:
        connection.close()
    assert stored == [
        ("broken", "exited with status 1", '["loading model", "error: out of memory", ""]'),
        ("fine", None, None),
        ("reasonless", "no output", None),
    ]

    db = database.open(DatabaseSettings(path=str(db_path)), clock=clock)
    try:
        loaded = {inst.name: inst for inst in db.load_all()}
        assert loaded["broken"].failure == failure
        assert loaded["broken"].status is Status.FAILED
        assert loaded["reasonless"].failure == Failure("no output")
        assert loaded["fine"].failure is None
        db.save(loaded["broken"].with_status(Status.RUNNING).with_failure(None))
        assert db.get_by_name("broken").failure is None
    finally:
        db.close()


def test_a_stored_failure_output_that_is_not_a_list_is_a_database_error(
    file_db: database.DB, db_path: Path
) -> None:
    file_db.save(make("odd"))
    connection = sqlite3.connect(db_path)
    with connection:
        connection.execute("UPDATE instances SET failure_reason = 'x', failure_output = '{}'")
    connection.close()
    with pytest.raises(DatabaseError, match=r"stored instance 'odd' is invalid: failure_output"):
        file_db.load_all()


def test_a_status_write_keeps_the_options_another_writer_stored(
    any_db: database.DB, clock: FakeClock
) -> None:
    from llamactl.instance import Failure

    old = make("shared", idle_timeout=5)
    any_db.create(old)
    any_db.update(make("shared", idle_timeout=60, restart_delay=3))  # another replica's edit
    clock.now += 10
    failed = old.with_status(Status.FAILED).with_failure(Failure("exited with code 1", ("boom",)))
    assert any_db.save_status(failed) is True
    stored = any_db.get_by_name("shared")
    assert (stored.options.idle_timeout, stored.options.restart_delay) == (60, 3)
    assert stored.status is Status.FAILED and stored.failure == failed.failure
    assert row(any_db, "shared")["updated_at"] == clock.now
    any_db.delete("shared")
    assert any_db.save_status(failed) is False
    with pytest.raises(InstanceNotFound):
        any_db.get_by_name("shared")

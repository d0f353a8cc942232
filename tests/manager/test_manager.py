"""The manager's registry, kept true to the injected database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llamactl import database
from llamactl.config import AppConfig, load_config
from llamactl.database import DatabaseSettings
from llamactl.errors import (
    Conflict,
    InstanceExists,
    InstanceNotFound,
    InvalidInstanceName,
    InvalidOptions,
    LimitReached,
)
from llamactl.instance import Instance, Status
from llamactl.manager import InstanceManager

pytestmark = pytest.mark.anyio

LLAMA = {"backend_type": "llama_cpp", "backend_options": {"model": "/m/x.gguf"}}


def config(tmp_path: Path, **environ: str) -> AppConfig:
    return load_config(
        None, {"LLAMACTL_DATA_DIRECTORY": str(tmp_path), **environ}, cwd=tmp_path, home=tmp_path
    )


@pytest.fixture
def db() -> Iterator[database.DB]:
    handle = database.open(DatabaseSettings(path=":memory:"))
    database.run_migrations(handle)
    yield handle
    handle.close()


@pytest.fixture
def manager(tmp_path: Path, db: database.DB) -> InstanceManager:
    built = InstanceManager(config(tmp_path), db)
    built.load()
    return built


async def test_create_fills_defaults_and_persists(
    manager: InstanceManager, db: database.DB
) -> None:
    created = await manager.create("alpha", LLAMA)
    assert created.status is Status.STOPPED and created.created > 0
    options = created.options
    assert (options.auto_restart, options.max_restarts, options.restart_delay) == (True, 3, 5)
    assert (options.on_demand_start, options.idle_timeout, options.docker_enabled) == (
        True,
        0,
        False,
    )
    assert db.get_by_name("alpha") == created


async def test_configured_defaults_apply_and_explicit_values_win(
    tmp_path: Path, db: database.DB
) -> None:
    manager = InstanceManager(
        config(
            tmp_path,
            LLAMACTL_DEFAULT_MAX_RESTARTS="9",
            LLAMACTL_DEFAULT_IDLE_TIMEOUT="15",
            LLAMACTL_LLAMACPP_DOCKER_ENABLED="true",
        ),
        db,
    )
    manager.load()
    first = await manager.create("first", LLAMA)
    assert (first.options.max_restarts, first.options.idle_timeout) == (9, 15)
    assert first.options.docker_enabled is True
    second = await manager.create("second", {**LLAMA, "max_restarts": 0, "docker_enabled": False})
    assert (second.options.max_restarts, second.options.docker_enabled) == (0, False)
    mlx = await manager.create("mlx", {"backend_type": "mlx_lm", "backend_options": {"model": "m"}})
    assert mlx.options.docker_enabled is False


async def test_load_reads_what_another_manager_stored(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    first_db = database.open(DatabaseSettings(path=str(path)))
    database.run_migrations(first_db)
    first = InstanceManager(config(tmp_path), first_db)
    first.load()
    await first.create("kept", {**LLAMA, "nodes": ["main"]})
    first_db.close()

    second_db = database.open(DatabaseSettings(path=str(path)))
    try:
        second = InstanceManager(config(tmp_path), second_db)
        assert second.list() == []  # the constructor does no I/O
        second.load()
        (inst,) = second.list()
        assert inst.name == "kept" and inst.options.nodes == ("main",)
    finally:
        second_db.close()


async def test_list_is_sorted_and_get_finds(manager: InstanceManager) -> None:
    for name in ("zeta", "alpha", "mid"):
        await manager.create(name, LLAMA)
    assert [inst.name for inst in manager.list()] == ["alpha", "mid", "zeta"]
    assert manager.get("mid").name == "mid"
    with pytest.raises(InstanceNotFound, match="nope"):
        manager.get("nope")


async def test_create_refuses_duplicates_bad_names_and_bad_options(
    manager: InstanceManager, db: database.DB
) -> None:
    await manager.create("alpha", LLAMA)
    with pytest.raises(InstanceExists, match="alpha"):
        await manager.create("alpha", LLAMA)
    with pytest.raises(InvalidInstanceName):
        await manager.create("../etc", LLAMA)
    with pytest.raises(InvalidOptions, match="gpu_layers"):
        await manager.create("beta", {**LLAMA, "backend_options": {"gpu_layers": "lots"}})
    assert [inst.name for inst in db.load_all()] == ["alpha"]


async def test_max_instances(tmp_path: Path, db: database.DB) -> None:
    manager = InstanceManager(config(tmp_path, LLAMACTL_MAX_INSTANCES="1"), db)
    manager.load()
    await manager.create("one", LLAMA)
    with pytest.raises(LimitReached, match=r"maximum number of instances \(1\)"):
        await manager.create("two", LLAMA)
    assert db.count() == 1


async def test_update_replaces_options_and_keeps_nodes(
    manager: InstanceManager, db: database.DB
) -> None:
    created = await manager.create("alpha", {**LLAMA, "nodes": ["main"], "idle_timeout": 10})
    updated = await manager.update(
        "alpha",
        {"backend_type": "llama_cpp", "backend_options": {"model": "/m/new.gguf"}, "nodes": ["x"]},
    )
    assert updated.options.backend_options.model == "/m/new.gguf"
    assert updated.options.idle_timeout == 0  # left out of a full replacement: the default
    assert updated.options.nodes == ("main",)
    assert updated.created == created.created
    assert db.get_by_name("alpha") == updated
    with pytest.raises(InstanceNotFound):
        await manager.update("missing", LLAMA)


async def test_delete(manager: InstanceManager, db: database.DB) -> None:
    await manager.create("alpha", LLAMA)
    await manager.delete("alpha")
    assert manager.list() == [] and db.count() == 0
    with pytest.raises(InstanceNotFound):
        await manager.delete("alpha")


@pytest.mark.parametrize("status", [Status.RUNNING, Status.RESTARTING, Status.SHUTTING_DOWN])
async def test_delete_is_refused_while_a_backend_may_run(
    tmp_path: Path, db: database.DB, status: Status
) -> None:
    created = await InstanceManager(config(tmp_path), db).create("busy", LLAMA)
    db.save(Instance(name="busy", created=created.created, status=status, options=created.options))
    manager = InstanceManager(config(tmp_path), db)
    manager.load()
    with pytest.raises(Conflict, match=f"busy is {status.value}"):
        await manager.delete("busy")
    assert db.count() == 1

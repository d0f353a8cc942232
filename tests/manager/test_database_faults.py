"""Lifecycle work while another process holds the database's write lock, or after the
database file was deleted: real backends, a real SQLite file, a real second writer."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.database import database as database_module
from llamactl.errors import DatabaseUnavailable, InstanceExists
from llamactl.instance import Status
from llamactl.manager import InstanceManager
from llamactl.manager.ports import is_port_free
from llamactl.manager.reaper import is_alive
from llamactl.server.app import create_app
from tests.support.clock import FakeClock
from tests.support.config import FAST, PORT_RANGE, fake_config, fake_options
from tests.support.locker import LockHolder
from tests.support.records import stored_status as stored
from tests.support.services import NO_KEYS, build_services, migrated
from tests.support.tmpfs import fill, tmpfs
from tests.support.waiting import status_is, until

pytestmark = pytest.mark.anyio


@pytest.fixture
def short_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections opened from now on give up on a held lock after 100 ms."""
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_MS", 100)


@pytest.fixture
def locked_db(db_path: Path, short_busy: None) -> Iterator[database.DB]:
    handle = database.open(DatabaseSettings(path=str(db_path)))
    database.run_migrations(handle)
    yield handle
    handle.close()


@pytest.fixture
async def faulty(
    tmp_path: Path, locked_db: database.DB, clock: FakeClock
) -> AsyncIterator[InstanceManager]:
    built = InstanceManager(
        fake_config(tmp_path), locked_db, clock=clock, timings=FAST, db_retry_delay=0.05
    )
    built.load()
    yield built
    await built.shutdown()


async def until_written(manager: InstanceManager, timeout: float = 10.0) -> None:
    """Wait until the manager's retries wrote every pending change (no explicit flush)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while manager.persistence().pending:
        assert loop.time() < deadline, f"still unwritten: {manager.persistence()}"
        await asyncio.sleep(0.02)
    assert manager.persistence().error is None


def _port(manager: InstanceManager, name: str) -> int:
    port = manager.get(name).options.backend_options.port
    assert port is not None
    return port


async def test_start_and_stop_while_the_lock_is_held_leave_no_orphan(
    faulty: InstanceManager, db_path: Path, locked_db: database.DB
) -> None:
    await faulty.create("alpha", fake_options())
    port = _port(faulty, "alpha")
    with LockHolder(db_path):
        started = await faulty.start("alpha")
        pid = faulty.info("alpha").pid
        assert started.status is Status.RUNNING and pid is not None and is_alive(pid)
        pending = faulty.persistence()
        assert pending.pending > 0 and "database is locked" in (pending.error or "")
        assert stored(db_path, "alpha") == "stopped"  # not written yet, and known to be so

        stopped = await faulty.stop("alpha")  # stops although its status cannot be written
        assert stopped.status is Status.STOPPED
        assert not is_alive(pid) and is_port_free(port)

        again = await faulty.start("alpha")  # no orphan holds the port
        assert again.status is Status.RUNNING
        second_pid = faulty.info("alpha").pid
        await faulty.stop("alpha")
        assert second_pid is not None and not is_alive(second_pid)
    await until_written(faulty)
    assert stored(db_path, "alpha") == "stopped"
    assert locked_db.recorded_processes() == []


async def test_status_written_when_the_lock_ends_is_the_latest(
    faulty: InstanceManager, db_path: Path, locked_db: database.DB
) -> None:
    await faulty.create("alpha", fake_options())
    with LockHolder(db_path):
        await faulty.start("alpha")
        pid = faulty.info("alpha").pid
    await until_written(faulty)
    assert stored(db_path, "alpha") == "running"
    assert [(entry.instance_name, entry.pid) for entry in locked_db.recorded_processes()] == [
        ("alpha", pid)
    ]


async def test_a_crash_while_the_lock_is_held_is_handled_and_written_later(
    faulty: InstanceManager, db_path: Path, locked_db: database.DB
) -> None:
    await faulty.create("crashy", fake_options(auto_restart=False))
    await faulty.start("crashy")
    await faulty.wait_ready("crashy", timeout=10)
    pid = faulty.info("crashy").pid
    assert pid is not None
    with LockHolder(db_path):
        os.kill(pid, signal.SIGKILL)
        await until(faulty, "crashy", status_is(Status.FAILED))
        assert faulty.info("crashy").pid is None
        assert stored(db_path, "crashy") == "running"
        restarted = await faulty.start("crashy")  # the crashed one left nothing behind
        assert restarted.status is Status.RUNNING
        await faulty.stop("crashy")
    await until_written(faulty)
    assert stored(db_path, "crashy") == "stopped"
    assert locked_db.recorded_processes() == []


async def test_configuration_changes_while_locked_are_refused_and_change_nothing(
    faulty: InstanceManager, db_path: Path
) -> None:
    await faulty.create("alpha", fake_options())
    before = faulty.get("alpha")
    with LockHolder(db_path):
        with pytest.raises(DatabaseUnavailable, match="database is locked"):
            await faulty.create("beta", fake_options())
        with pytest.raises(DatabaseUnavailable, match="database is locked"):
            await faulty.update("alpha", fake_options(backend_options={"model": "/new.gguf"}))
        with pytest.raises(DatabaseUnavailable, match="database is locked"):
            await faulty.delete("alpha")
        assert [inst.name for inst in faulty.list()] == ["alpha"]
        assert faulty.get("alpha") == before
    beta = await faulty.create("beta", fake_options())  # the refused create held no port
    assert beta.options.backend_options.port == _port(faulty, "alpha") + 1
    updated = await faulty.update("alpha", fake_options(backend_options={"model": "/new.gguf"}))
    assert updated.options.backend_options.model == "/new.gguf"
    await faulty.delete("alpha")
    assert [inst.name for inst in faulty.list()] == ["beta"]


async def test_a_running_update_refused_while_locked_stays_stoppable(
    faulty: InstanceManager, db_path: Path
) -> None:
    await faulty.create("alpha", fake_options())
    await faulty.start("alpha")
    with LockHolder(db_path):
        with pytest.raises(DatabaseUnavailable):
            await faulty.update("alpha", fake_options(backend_options={"model": "/new.gguf"}))
        assert faulty.get("alpha").options.backend_options.model == "/models/fake.gguf"
        assert faulty.get("alpha").status is Status.STOPPED
        assert faulty.info("alpha").pid is None
        again = await faulty.start("alpha")  # its port is its own again
        assert again.status is Status.RUNNING
    await faulty.stop("alpha")
    await until_written(faulty)
    assert stored(db_path, "alpha") == "stopped"


async def test_a_deleted_database_refuses_creates_and_keeps_lifecycle_working(
    faulty: InstanceManager, db_path: Path
) -> None:
    await faulty.create("alpha", fake_options())
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(DatabaseUnavailable) as raised:
        await faulty.create("beta", fake_options())
    assert f"database file {db_path} was deleted" in raised.value.message
    assert [inst.name for inst in faulty.list()] == ["alpha"]
    await faulty.start("alpha")
    pid = faulty.info("alpha").pid
    await faulty.stop("alpha")
    assert pid is not None and not is_alive(pid)
    state = faulty.persistence()
    assert state.pending > 0 and "was deleted" in (state.error or "")


async def test_requests_are_answered_while_a_write_waits_for_the_lock(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock holder lets go only after ``GET /v1/models`` was answered, so the answer
    came while a create was waiting for the lock; with database work on the event loop
    the request could not be served until that create gave up."""
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_MS", 30_000)
    db = migrated(DatabaseSettings(path=str(db_path)))
    services = build_services(fake_config(tmp_path), db, NO_KEYS)
    manager = services.manager
    await manager.create("alpha", fake_options())
    transport = httpx.ASGITransport(app=create_app(services))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            holder = LockHolder(db_path)
            with holder:
                creating = asyncio.create_task(manager.create("beta", fake_options()))
                await asyncio.sleep(0)  # the create runs up to its wait for the lock
                response = await client.get("/v1/models")
                answered_while_locked = holder.holding and not creating.done()
                holder.release()
                created = await creating
            assert response.status_code == 200
            assert [model["id"] for model in response.json()["data"]] == ["alpha"]
            assert answered_while_locked
            assert created.name == "beta"
    finally:
        await manager.shutdown()
        db.close()


async def test_two_creates_of_one_name_while_the_first_waits_for_the_lock(
    faulty: InstanceManager, db_path: Path
) -> None:
    with LockHolder(db_path):
        first = asyncio.create_task(faulty.create("twin", fake_options()))
        await asyncio.sleep(0)  # the first create has taken the name and waits
        with pytest.raises(InstanceExists):
            await faulty.create("twin", fake_options())
        with pytest.raises(DatabaseUnavailable):  # it waited 100 ms for the lock: in vain
            await first
    assert faulty.list() == []
    created = await faulty.create("twin", fake_options())  # the name and port are free again
    assert [inst.name for inst in faulty.list()] == ["twin"]
    assert created.options.backend_options.port == int(PORT_RANGE.split("-")[0])


async def test_a_create_cancelled_while_it_waits_still_lands_in_memory_and_file(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_MS", 30_000)
    db = database.open(DatabaseSettings(path=str(db_path)))
    database.run_migrations(db)
    manager = InstanceManager(fake_config(tmp_path), db, timings=FAST)
    manager.load()
    try:
        with LockHolder(db_path):
            creating = asyncio.create_task(manager.create("gone", fake_options()))
            await asyncio.sleep(0)
            creating.cancel()
            with pytest.raises(asyncio.CancelledError):
                await creating
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while not manager.list():  # the write, let go by its caller, ends on its own
            assert loop.time() < deadline, "the cancelled create never landed"
            await asyncio.sleep(0.01)
        assert [inst.name for inst in manager.list()] == ["gone"]
        assert stored(db_path, "gone") == "stopped"
        other = await manager.create("other", fake_options())
        assert (
            other.options.backend_options.port != manager.get("gone").options.backend_options.port
        )
    finally:
        await manager.shutdown()
        db.close()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 4 MiB tmpfs of its own, for the database only."""
    with tmpfs(tmp_path / "dbfs", "size=4m") as folder:
        yield folder


async def test_a_full_disk_under_the_database_keeps_backends_supervised(
    tmp_path: Path, small_fs: Path
) -> None:
    db_path = small_fs / "llamactl.db"
    db = database.open(DatabaseSettings(path=str(db_path)))
    database.run_migrations(db)
    manager = InstanceManager(fake_config(tmp_path), db, timings=FAST, db_retry_delay=0.05)
    manager.load()
    try:
        await manager.create("alpha", fake_options())
        filler = fill(small_fs)
        with pytest.raises(DatabaseUnavailable, match="database or disk is full"):
            await manager.create("beta", fake_options(environment={"PAD": "x" * 200_000}))
        await manager.start("alpha")
        pid = manager.info("alpha").pid
        assert pid is not None and is_alive(pid)
        assert "database or disk is full" in (manager.persistence().error or "")
        await manager.stop("alpha")
        assert not is_alive(pid) and is_port_free(_port(manager, "alpha"))
        filler.unlink()
        await until_written(manager)
        assert stored(db_path, "alpha") == "stopped"
        assert [inst.name for inst in manager.list()] == ["alpha"]
    finally:
        await manager.shutdown()
        db.close()

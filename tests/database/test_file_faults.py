"""The database file locked by another process, deleted or replaced while it is open."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamactl import database
from llamactl.backends import BackendType
from llamactl.database import DatabaseSettings
from llamactl.database import database as database_module
from llamactl.errors import DatabaseUnavailable
from llamactl.instance import Instance, Options, Status
from tests.support.locker import LockHolder


def _instance(name: str) -> Instance:
    options = Options.from_json(
        {"backend_type": BackendType.LLAMA_CPP.value, "backend_options": {"model": "/m.gguf"}}
    )
    return Instance(name=name, created=1, status=Status.STOPPED, options=options)


@pytest.fixture
def short_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections opened from now on wait 100 ms for a lock, the health probe 50 ms."""
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(database_module, "PROBE_TIMEOUT_MS", 50)


@pytest.fixture
def file_db(db_path: Path, short_busy: None) -> Iterator[database.DB]:
    db = database.open(DatabaseSettings(path=str(db_path)))
    database.run_migrations(db)
    yield db
    db.close()


def _unlink(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def test_a_write_beyond_busy_timeout_is_database_unavailable(
    file_db: database.DB, db_path: Path
) -> None:
    with LockHolder(db_path), pytest.raises(DatabaseUnavailable) as raised:
        file_db.save(_instance("alpha"))
    assert raised.value.status == 503
    assert "database is locked" in raised.value.message
    assert str(db_path) in raised.value.message
    file_db.save(_instance("alpha"))  # the lock is gone: the same write goes through
    assert file_db.get_by_name("alpha").name == "alpha"


def test_health_reports_a_held_lock_and_its_end(file_db: database.DB, db_path: Path) -> None:
    assert file_db.health().problem is None
    with LockHolder(db_path, "EXCLUSIVE"):
        problem = file_db.health().problem
    assert problem is not None and "database is locked" in problem
    assert file_db.health().problem is None


def test_writes_to_an_unlinked_file_are_refused_naming_the_path(
    file_db: database.DB, db_path: Path
) -> None:
    file_db.save(_instance("before"))
    _unlink(db_path)
    with pytest.raises(DatabaseUnavailable) as raised:
        file_db.save(_instance("after"))
    message = raised.value.message
    assert f"database file {db_path} was deleted" in message
    assert raised.value.status == 503
    health = file_db.health()
    assert health.problem == message
    assert not db_path.exists()  # refusing does not create a new, empty file either


def test_writes_to_a_replaced_file_are_refused(file_db: database.DB, db_path: Path) -> None:
    other = db_path.with_name("other.db")
    sqlite3.connect(other).close()
    other.replace(db_path)
    with pytest.raises(DatabaseUnavailable, match="was replaced by another file"):
        file_db.save(_instance("after"))
    assert "was replaced" in (file_db.health().problem or "")


def test_health_gives_the_free_space_of_the_folder(file_db: database.DB, db_path: Path) -> None:
    import os

    health = file_db.health()
    found = os.statvfs(db_path.parent)
    assert health.path == str(db_path)
    assert health.free_bytes is not None and health.free_bytes > 0
    # The same filesystem, asked twice: within a few MiB of each other.
    assert abs(health.free_bytes - found.f_bavail * found.f_frsize) < 64 * 1024 * 1024


def test_memory_database_is_used_one_transaction_at_a_time_across_threads() -> None:
    db = database.open(DatabaseSettings(path=":memory:"))
    database.run_migrations(db)
    failures: list[BaseException] = []
    start = threading.Barrier(4)

    def work(prefix: str) -> None:
        start.wait()
        try:
            for number in range(50):
                db.save(_instance(f"{prefix}{number}"))
                db.get_all()
        except BaseException as exc:  # collected and asserted on below
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(prefix,)) for prefix in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        assert db.count() == 200
        assert db.health().problem is None and db.health().free_bytes is None
    finally:
        db.close()

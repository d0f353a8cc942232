"""A manager whose llama.cpp backend is the fake llama-server, run as a real process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.manager import InstanceManager
from llamactl.proxy import Scheduler
from tests.support.clock import FakeClock
from tests.support.config import FAST, fake_config, fake_options

# tests/proxy/conftest.py still imports these three from here; the rest import them from
# tests.support.config.
__all__ = ["FAST", "fake_config", "fake_options"]


@pytest.fixture
def clock() -> FakeClock:
    """The manager's activity clock (monotonic seconds), moved by hand."""
    return FakeClock(1000.0)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "llamactl.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[database.DB]:
    handle = database.open(DatabaseSettings(path=str(db_path)))
    database.run_migrations(handle)
    yield handle
    handle.close()


@pytest.fixture
async def manager(
    tmp_path: Path, db: database.DB, clock: FakeClock
) -> AsyncIterator[InstanceManager]:
    built = InstanceManager(fake_config(tmp_path), db, clock=clock, timings=FAST)
    built.load()
    yield built
    await built.shutdown()


@pytest.fixture
def scheduler(tmp_path: Path, manager: InstanceManager) -> Scheduler:
    """The proxy's scheduler over ``manager``: it counts requests, and stops idle instances."""
    return Scheduler(manager, fake_config(tmp_path))

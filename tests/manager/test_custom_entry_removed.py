"""A custom instance whose backends.custom entry a configuration reload took away: its
next start, or its restart after a crash, ends ``failed`` with a reason naming the entry,
rather than raising out of the supervisor (and, for the restart, staying ``restarting``)."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llamactl import database
from llamactl.errors import InvalidOptions
from llamactl.instance import Status
from llamactl.manager import InstanceManager
from tests.support.clock import FakeClock
from tests.support.config import FAST, fake_config
from tests.support.custom import custom_config_file, custom_options
from tests.support.waiting import is_ready, status_is, until

pytestmark = pytest.mark.anyio

MISSING = "no entry backends.custom.fake in the configuration"


@pytest.fixture
async def manager(
    tmp_path: Path, db: database.DB, clock: FakeClock
) -> AsyncIterator[InstanceManager]:
    config = fake_config(tmp_path, LLAMACTL_CONFIG_PATH=str(custom_config_file(tmp_path)))
    built = InstanceManager(config, db, clock=clock, timings=FAST)
    built.load()
    yield built
    await built.shutdown()


def without_the_entry(tmp_path: Path) -> None:
    """What a reload reads once the entry is gone from the file."""
    (tmp_path / "llamactl.yaml").write_text('{"backends": {"custom": {}}}')


async def test_a_start_after_the_entry_went_fails_naming_it(
    manager: InstanceManager, tmp_path: Path
) -> None:
    await manager.create("foreign", custom_options())
    without_the_entry(tmp_path)
    manager.reconfigure(fake_config(tmp_path, LLAMACTL_CONFIG_PATH=str(tmp_path / "llamactl.yaml")))
    with pytest.raises(InvalidOptions, match=MISSING):
        await manager.start("foreign")
    info = manager.info("foreign")
    assert manager.get("foreign").status is Status.FAILED
    assert info.failure is not None and MISSING in info.failure.reason
    assert info.pid is None


async def test_a_restart_after_a_crash_once_the_entry_went_fails_naming_it(
    manager: InstanceManager, tmp_path: Path
) -> None:
    await manager.create("foreign", custom_options(auto_restart=True, max_restarts=3))
    await manager.start("foreign")
    await until(manager, "foreign", is_ready)
    pid = manager.info("foreign").pid
    assert pid is not None
    without_the_entry(tmp_path)
    manager.reconfigure(fake_config(tmp_path, LLAMACTL_CONFIG_PATH=str(tmp_path / "llamactl.yaml")))

    os.kill(pid, signal.SIGKILL)
    await until(manager, "foreign", status_is(Status.FAILED))
    info = manager.info("foreign")
    assert info.failure is not None and MISSING in info.failure.reason
    assert info.pid is None

"""A manager whose llama.cpp backend is the fake llama-server, run as a real process."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from llamactl import database
from llamactl.config import AppConfig, load_config
from llamactl.database import DatabaseSettings
from llamactl.instance import Instance, Status
from llamactl.manager import InstanceManager
from llamactl.manager.runtime import RuntimeInfo, Timings

FAKE_SERVER = Path(__file__).parents[1] / "fake_llama_server.py"
FAST = Timings(
    health_poll=0.02,
    health_interval=0.1,
    unhealthy_after=2,
    stop_timeout=3.0,
    drain_timeout=2.0,
    idle_check=3600.0,  # tests call check_idle() themselves
    stable_after=60.0,
    reap_timeout=2.0,
)


class FakeClock:
    """The manager's activity clock (monotonic seconds), moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Each test session takes its own hundred ports (below the OS's ephemeral range), so that
# two sessions on one machine never hand out the same backend port.
SESSION_PORTS = 20000 + (os.getpid() % 100) * 100
PORT_RANGE = f"{SESSION_PORTS}-{SESSION_PORTS + 99}"


def fake_config(tmp_path: Path, **environ: str) -> AppConfig:
    """Configuration whose llama-cpp command runs the fake server with this interpreter."""
    return load_config(
        None,
        {
            "LLAMACTL_DATA_DIRECTORY": str(tmp_path / "data"),
            "LLAMACTL_LLAMACPP_COMMAND": sys.executable,
            "LLAMACTL_LLAMACPP_ARGS": str(FAKE_SERVER),
            "LLAMACTL_INSTANCE_PORT_RANGE": PORT_RANGE,
            **environ,
        },
        cwd=tmp_path,
        home=tmp_path,
    )


def fake_options(**overrides: object) -> dict[str, object]:
    """Options of a llama_cpp instance for the fake server; ``environment`` drives it."""
    body: dict[str, object] = {
        "backend_type": "llama_cpp",
        "backend_options": {"model": "/models/fake.gguf"},
        "auto_restart": False,
        "restart_delay": 0,
    }
    body.update(overrides)
    return body


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


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


def stored_status(db_path: Path, name: str) -> str:
    """The status as another connection reads it from the file, right now."""
    import sqlite3

    connection = sqlite3.connect(db_path)
    try:
        row = connection.execute("SELECT status FROM instances WHERE name = ?", (name,)).fetchone()
    finally:
        connection.close()
    return str(row[0])


async def until(
    manager: InstanceManager,
    name: str,
    condition: object,
    timeout: float = 10.0,
) -> None:
    """Wait (on the manager's change notifications) until ``condition(inst, info)`` holds."""
    assert callable(condition)
    reached = await manager.wait_until(name, condition, timeout)
    inst, info = manager.get(name), manager.info(name)
    assert reached, f"{name}: still {inst.status.value}/{info.readiness} ({info.failure})"


def status_is(status: Status) -> object:
    return lambda inst, _info: inst.status is status


def is_ready(inst: Instance, info: RuntimeInfo) -> bool:
    return (
        inst.status is Status.RUNNING and info.readiness is not None and info.readiness == "ready"
    )

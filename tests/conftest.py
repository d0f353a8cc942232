"""Suite-wide fixtures: the async backend, a PostgreSQL server for the tests that need one,
and the check that no process is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresServer, start_server
from tests.support.processes import descendants


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty folder to serve as HOME (and working directory) of a llamactl process."""
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the run (started on first use; see
    ``tests.support.postgres``)."""
    server = start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def no_stray_processes() -> Iterator[None]:
    """Fail the run if any test left a process running (and kill it)."""
    yield
    leftovers = descendants(os.getpid())
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert leftovers == [], f"processes left running by the tests: {leftovers}"

"""A real llamactl process with real backends: kill -9, restart, SIGTERM."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamactl.manager.reaper import is_alive
from tests.support.config import FAKE_SERVER
from tests.support.net import free_port, healthy
from tests.support.records import pids, seed, statuses
from tests.support.server_process import environment, start, stop, wait_healthy
from tests.support.waiting import eventually

RESUMING = ("plain", "parent", "stubborn")


def all_healthy(ports: dict[str, int], names: tuple[str, ...]) -> bool:
    return all(healthy(ports[name]) for name in names)


def grandchild(log: Path) -> int:
    for line in log.read_text().splitlines():
        if line.startswith('{"child_pid"'):
            return int(json.loads(line)["child_pid"])
    raise AssertionError(f"no child pid in {log}")


@pytest.fixture
def server_env(home: Path) -> Iterator[dict[str, str]]:
    yield environment(
        home,
        LLAMACTL_PORT=str(free_port()),
        LLAMACTL_DATA_DIRECTORY=str(home / "data"),
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
    )


def test_kill_9_then_restart_reaps_and_resumes_then_sigterm_stops_all(
    home: Path, server_env: dict[str, str]
) -> None:
    data = home / "data"
    db_path = data / "llamactl.db"
    ports = seed(
        db_path,
        {
            "plain": (True, {}),
            "parent": (True, {"FAKE_LLAMA_CHILD": "1"}),  # leaves a grandchild behind
            "stubborn": (True, {"FAKE_LLAMA_IGNORE_SIGTERM": "1"}),  # survives SIGTERM
            "manual": (False, {}),  # no auto_restart: stopped at the next start
        },
    )
    url = f"http://127.0.0.1:{server_env['LLAMACTL_PORT']}"

    first = start(home, server_env)
    try:
        wait_healthy(first, f"{url}/healthz")
        eventually(lambda: len(pids(db_path)) == 3, "three backends recorded")
        eventually(lambda: all_healthy(ports, RESUMING), "ready")
        assert statuses(db_path)["manual"] == "stopped"
        old = pids(db_path)
        child = grandchild(data / "logs" / "parent.log")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        stop(first)
    assert is_alive(old["stubborn"]) and is_alive(child)  # real orphans now

    second = start(home, server_env)
    try:
        wait_healthy(second, f"{url}/healthz")
        assert not any(is_alive(pid) for pid in [*old.values(), child])
        eventually(
            lambda: all(healthy(ports[n]) for n in ("plain", "parent", "stubborn")), "resumed"
        )
        resumed = pids(db_path)
        assert set(resumed) == {"plain", "parent", "stubborn"}
        assert not set(resumed.values()) & set(old.values())
        assert statuses(db_path)["manual"] == "stopped"
        begun = time.monotonic()
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
        took = time.monotonic() - begun
    finally:
        output = stop(second)
    assert second.returncode == 0, output
    assert took < 15, f"shutdown took {took:.1f} s"
    assert not any(is_alive(pid) for pid in resumed.values())
    assert pids(db_path) == {}
    assert statuses(db_path) == {
        "plain": "running",
        "parent": "running",
        "stubborn": "running",
        "manual": "stopped",
    }
    log = (data / "logs" / "stubborn.log").read_text()
    assert "killed by SIGKILL (9)" in log  # it ignored SIGTERM at shutdown, as before

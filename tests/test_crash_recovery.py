"""A real llamactl process with real backends: kill -9, restart, SIGTERM."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.instance import Instance, Options, Status
from llamactl.manager.reaper import is_alive
from tests.test_serve import environment, free_port, start, stop, wait_healthy

FAKE_SERVER = Path(__file__).parent / "fake_llama_server.py"
DEADLINE = 30.0


def eventually(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``check`` until it holds (these are other processes: there is no event to await)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def seed(db_path: Path, specs: dict[str, tuple[bool, dict[str, str]]]) -> dict[str, int]:
    """Store instances as 'running' (as a previous run would have left them); return ports."""
    db = database.open(DatabaseSettings(path=str(db_path)))
    ports = {}
    try:
        database.run_migrations(db)
        for name, (auto_restart, env) in specs.items():
            ports[name] = free_port()
            options = Options.from_json(
                {
                    "backend_type": "llama_cpp",
                    "backend_options": {"model": f"/m/{name}.gguf", "port": ports[name]},
                    "auto_restart": auto_restart,
                    "max_restarts": 3,
                    "restart_delay": 0,
                    "on_demand_start": True,
                    "idle_timeout": 0,
                    "environment": env,
                }
            )
            db.save(Instance(name=name, created=1, status=Status.RUNNING, options=options))
    finally:
        db.close()
    return ports


def query(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(db_path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def pids(db_path: Path) -> dict[str, int]:
    rows = query(db_path, "SELECT instance_name, pid FROM instance_processes")
    return {str(name): int(str(pid)) for name, pid in rows}


def statuses(db_path: Path) -> dict[str, str]:
    return {str(n): str(s) for n, s in query(db_path, "SELECT name, status FROM instances")}


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


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

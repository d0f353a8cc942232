"""Reliability drills against a real llamactl process: kill -9 mid-write, a storm of requests."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.config import FAKE_SERVER
from tests.support.net import free_port
from tests.support.server_process import environment, start, stop, wait_healthy

KEY = "sk-drill"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def server_env(home: Path) -> dict[str, str]:
    return environment(
        home,
        LLAMACTL_PORT=str(free_port()),
        LLAMACTL_DATA_DIRECTORY=str(home / "data"),
        LLAMACTL_MANAGEMENT_KEYS=KEY,
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
        # Below the ephemeral range (32768-60999 on Linux), where client sockets would
        # take ports that a backend then cannot bind.
        LLAMACTL_INSTANCE_PORT_RANGE="30000-30999",
        LLAMACTL_DEFAULT_RESTART_DELAY="0",
    )


def options(index: int) -> dict[str, object]:
    return {
        "backend_type": "llama_cpp",
        "backend_options": {"model": f"/m/{index}.gguf", "ctx_size": 1024 + index},
        "auto_restart": False,
    }


def rows(db_path: Path) -> dict[str, tuple[str, dict[str, object]]]:
    connection = sqlite3.connect(db_path)
    try:
        return {
            str(name): (str(status), json.loads(config))
            for name, status, config in connection.execute(
                "SELECT name, status, backend_config_json FROM instances"
            )
        }
    finally:
        connection.close()


def test_kill_9_during_api_writes_loses_no_acknowledged_write(
    home: Path, server_env: dict[str, str]
) -> None:
    url = f"http://127.0.0.1:{server_env['LLAMACTL_PORT']}"
    process = start(home, server_env)
    acknowledged: dict[str, int] = {}  # name -> ctx_size the server confirmed
    enough = threading.Event()
    stop_writing = threading.Event()

    def write() -> None:
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
            for index in range(10_000):
                if stop_writing.is_set():
                    return
                name = f"w{index % 150}"
                try:
                    if index < 150:
                        reply = client.post(f"/api/v1/instances/{name}", json=options(index))
                    else:
                        reply = client.put(f"/api/v1/instances/{name}", json=options(index))
                except httpx.TransportError:
                    return  # the server is gone
                if reply.status_code in (200, 201):
                    acknowledged[name] = 1024 + index
                if len(acknowledged) >= 150 and index >= 400:
                    enough.set()

    try:
        wait_healthy(process, f"{url}/healthz")
        writer = threading.Thread(target=write)
        writer.start()
        assert enough.wait(60), "the writes did not get going"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        stop_writing.set()
        writer.join(timeout=30)
    finally:
        stop_writing.set()
        stop(process)

    db_path = home / "data" / "llamactl.db"
    connection = sqlite3.connect(db_path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        connection.close()
    stored = rows(db_path)
    for name, ctx_size in acknowledged.items():
        assert name in stored, f"{name} was acknowledged but is missing"
        # the stored value is the acknowledged one or a later write that was in flight
        assert int(str(stored[name][1]["ctx_size"])) >= ctx_size

    again = start(home, server_env)  # and llamactl starts on that database
    try:
        wait_healthy(again, f"{url}/healthz")
        listed = httpx.get(f"{url}/api/v1/instances", headers=AUTH, timeout=10).json()
        assert {item["name"] for item in listed} == set(stored)
    finally:
        stop(again)


@pytest.fixture
def running_server(home: Path, server_env: dict[str, str]) -> Iterator[str]:
    url = f"http://127.0.0.1:{server_env['LLAMACTL_PORT']}"
    process = start(home, server_env)
    try:
        wait_healthy(process, f"{url}/healthz")
        yield url
    finally:
        output = stop(process)
        assert process.returncode == 0, output


def test_200_concurrent_mixed_requests(running_server: str, home: Path) -> None:
    names = [f"m{index}" for index in range(12)]
    statuses: list[int] = []
    unexpected: list[tuple[str, str, int, str]] = []  # action, name, status, body

    async def one(client: httpx.AsyncClient, rng: random.Random) -> None:
        name = rng.choice(names)
        action = rng.choice(["create", "create", "update", "start", "stop", "delete", "list"])
        path = f"/api/v1/instances/{name}"
        if action == "create":
            reply = await client.post(path, json=options(rng.randrange(100)))
        elif action == "update":
            reply = await client.put(path, json=options(rng.randrange(100)))
        elif action in ("start", "stop"):
            reply = await client.post(f"{path}/{action}")
        elif action == "delete":
            reply = await client.delete(path)
        else:
            reply = await client.get("/api/v1/instances")
        statuses.append(reply.status_code)
        if reply.status_code not in {200, 201, 204, 404, 409}:
            unexpected.append((action, name, reply.status_code, reply.text))
        if reply.status_code >= 400:
            assert set(reply.json()["error"]) == {"code", "message"}

    async def storm() -> list[dict[str, object]]:
        rng = random.Random(2026)
        async with httpx.AsyncClient(base_url=running_server, headers=AUTH, timeout=60) as client:
            await asyncio.gather(*(one(client, random.Random(rng.random())) for _ in range(200)))
            for name in names:  # stop what runs so that the final state is settled
                await client.post(f"/api/v1/instances/{name}/stop")
            return list((await client.get("/api/v1/instances")).json())

    listed = asyncio.run(storm())
    assert len(statuses) == 200
    assert not unexpected, unexpected
    stored = rows(home / "data" / "llamactl.db")
    through_api = {
        str(item["name"]): (str(item["status"]), item["options"]["backend_options"])  # type: ignore[index]
        for item in listed
    }
    assert through_api == stored


def test_json_import_killed_midway_is_all_or_nothing(
    home: Path, server_env: dict[str, str]
) -> None:
    import subprocess
    import time

    legacy = home / "data" / "instances"
    legacy.mkdir(parents=True)
    originals = {}
    for index in range(3000):
        path = legacy / f"old{index}.json"
        path.write_text(
            json.dumps(
                {
                    "name": f"old{index}",
                    "status": "stopped",
                    "created": 1,
                    "options": options(index),
                }
            )
        )
        originals[path.name] = path.read_bytes()
    archive = legacy / "json_archive"
    importing = subprocess.Popen(
        [sys.executable, "-m", "llamactl", "db", "import-json"],
        cwd=home,
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not archive.exists() and importing.poll() is None:  # the copy step has begun
        assert time.monotonic() < deadline
        time.sleep(0.001)
    importing.send_signal(signal.SIGKILL)
    importing.wait(timeout=10)

    stored = rows(home / "data" / "llamactl.db") if (home / "data" / "llamactl.db").exists() else {}
    left = {path.name for path in legacy.glob("*.json")}
    if stored:  # killed after the commit: every instance is in, originals may remain
        assert len(stored) == 3000
        for name in left:
            assert (archive / name).read_bytes() == originals[name]
    else:  # killed before the commit: nothing imported, every original untouched
        assert left == set(originals)
        assert all((legacy / name).read_bytes() == data for name, data in originals.items())

    process = start(home, server_env)  # the next start completes what was interrupted
    try:
        wait_healthy(process, f"http://127.0.0.1:{server_env['LLAMACTL_PORT']}/healthz")
    finally:
        stop(process)
    assert len(rows(home / "data" / "llamactl.db")) == 3000
    assert list(legacy.glob("*.json")) == []
    assert {path.name for path in archive.iterdir()} == set(originals)

"""A second llamactl on the same data directory is refused and touches nothing of the first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llamactl.database.processes import ProcessRecord
from llamactl.manager.datadir import LOCK_NAME
from llamactl.manager.processinfo import process_start_ticks
from llamactl.manager.reaper import is_alive, reap
from tests.support.config import FAKE_SERVER
from tests.support.net import free_port, healthy
from tests.support.records import pids, seed
from tests.support.server_process import environment, start, stop, wait_healthy
from tests.support.waiting import eventually


def test_a_second_llamactl_is_refused_and_the_first_keeps_its_backend(home: Path) -> None:
    data = home / "data"
    ports = seed(data / "llamactl.db", {"one": (True, {})})  # resumed at start
    first_env = environment(
        home,
        LLAMACTL_PORT=str(free_port()),
        LLAMACTL_DATA_DIRECTORY=str(data),
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
    )
    first = start(home, first_env)
    try:
        wait_healthy(first, f"http://127.0.0.1:{first_env['LLAMACTL_PORT']}/healthz")
        eventually(lambda: healthy(ports["one"]), "the backend of the first llamactl")
        backend = pids(data / "llamactl.db")["one"]
        assert (data / LOCK_NAME).read_text() == f"{first.pid}\n"

        second_env = {**first_env, "LLAMACTL_PORT": str(free_port())}
        second = start(home, second_env)
        try:
            second.wait(timeout=30)
        finally:
            output = stop(second)
        assert second.returncode == 1, output
        assert f"another llamactl (pid {first.pid}) is using the data directory {data}" in (output)
        assert "Traceback" not in output
        assert is_alive(backend) and healthy(ports["one"])
        assert pids(data / "llamactl.db") == {"one": backend}
        assert first.poll() is None
    finally:
        output = stop(first)
    assert first.returncode == 0, output
    assert not is_alive(backend)
    assert (data / LOCK_NAME).read_text() == ""  # the pid goes with the process


def test_the_lock_is_free_again_after_kill_9(home: Path) -> None:
    data = home / "data"
    env = environment(home, LLAMACTL_PORT=str(free_port()), LLAMACTL_DATA_DIRECTORY=str(data))
    url = f"http://127.0.0.1:{env['LLAMACTL_PORT']}/healthz"
    first = start(home, env)
    try:
        wait_healthy(first, url)
        first.kill()
        first.wait(timeout=10)
    finally:
        stop(first)
    assert (data / LOCK_NAME).read_text() == f"{first.pid}\n"  # stale, but not locked
    second = start(home, env)
    try:
        assert wait_healthy(second, url).status_code == 200
        assert (data / LOCK_NAME).read_text() == f"{second.pid}\n"
    finally:
        output = stop(second)
    assert second.returncode == 0, output


OWNER = """
import subprocess, sys, time
lock = open(sys.argv[1], "a")  # held open, as a running llamactl holds its lock file
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                         start_new_session=True)
print(child.pid, flush=True)
sys.stdin.read()  # until the test closes stdin
child.kill()
child.wait()
"""


@pytest.mark.anyio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_the_reaper_leaves_alone_a_backend_whose_llamactl_runs(tmp_path: Path) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER, str(tmp_path / LOCK_NAME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        backend = int(owner.stdout.readline())
        entry = ProcessRecord("theirs", backend, process_start_ticks(backend), 0)
        assert await reap([entry], timeout=2.0) == []
        assert is_alive(backend)
    finally:
        assert owner.stdin is not None
        owner.stdin.close()
        owner.wait(timeout=10)
        owner.stdout.close()


@pytest.mark.anyio
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_the_reaper_still_stops_a_backend_whose_parent_is_no_llamactl(
    tmp_path: Path,
) -> None:
    """A parent without a lock file open (init, a subreaper, any program) is no owner."""
    owner = subprocess.Popen(
        [sys.executable, "-c", OWNER.replace('open(sys.argv[1], "a")', "None"), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        backend = int(owner.stdout.readline())
        entry = ProcessRecord("left", backend, process_start_ticks(backend), 0)
        assert await reap([entry], timeout=2.0) == ["left"]
        eventually(lambda: not is_alive(backend), "the reaped backend gone")
    finally:
        assert owner.stdin is not None
        owner.stdin.close()
        owner.wait(timeout=10)
        owner.stdout.close()

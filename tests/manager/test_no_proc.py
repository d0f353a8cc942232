"""Stopping and reaping process groups where there is no ``/proc`` (as on macOS).

``/proc`` is hidden by pointing ``processinfo.PROC`` at a missing folder; the processes
are real: a backend in its own session with a grandchild that ignores SIGTERM, so that
only the SIGKILL to the group ends it. This machine's init may not reap orphans (launchd
does), so the test process adopts them (``PR_SET_CHILD_SUBREAPER``) and reaps the
grandchild itself, which is what lets a group without ``/proc`` be seen to be empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamactl.database.processes import ProcessRecord
from llamactl.manager import processinfo
from llamactl.manager.logs import InstanceLog
from llamactl.manager.process import spawn
from llamactl.manager.reaper import is_alive, reap

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="adopts orphans with Linux's prctl"
    ),
]

_PR_SET_CHILD_SUBREAPER = 36
DEADLINE = 10.0

GRANDCHILD = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('up', flush=True)\n"
    "time.sleep(60)\n"
)
# The grandchild does not hold the backend's output open, so the leader's death on SIGTERM
# ends the output: what is left of the group is for the group kill that follows.
BACKEND = (
    "import subprocess, sys, time\n"
    f"child = subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}],\n"
    "                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)\n"
    "child.stdout.readline()\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def hide_proc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(processinfo, "PROC", tmp_path / "no-proc")


def _set_subreaper(value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@contextlib.contextmanager
def adopting_orphans() -> Iterator[None]:
    """Orphaned descendants of this process become its children (init's job elsewhere)."""
    _set_subreaper(1)
    try:
        yield
    finally:
        _set_subreaper(0)


class Reaping:
    """Waits for ``pid`` once it is an orphan adopted by this process; keeps its status."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            try:
                self.status = os.waitpid(self.pid, 0)[1]
                return
            except ChildProcessError:
                time.sleep(0.01)  # not our child until its parent has died

    def finish(self) -> int | None:
        """Kill the process if it is still there; wait for the waiting to end."""
        if self._thread.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._thread.join(DEADLINE + 1)
        return self.status


def group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def sleeper() -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-c", GRANDCHILD], start_new_session=True, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"up\n"  # SIGTERM is ignored from now on
    return process


def backend_with_grandchild() -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, "-c", BACKEND], start_new_session=True, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:  # the group is still the one it leads
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.stdout is not None
    process.stdout.close()


async def test_stop_ends_the_whole_group_without_proc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_proc(monkeypatch, tmp_path)
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    log = InstanceLog(tmp_path / "backend.log", on_write=lines.put_nowait)
    log.open()
    with adopting_orphans():
        backend = await spawn([sys.executable, "-c", BACKEND], {}, log)
        grandchild = Reaping(int(await asyncio.wait_for(lines.get(), DEADLINE)))
        try:
            status = await backend.stop(timeout=DEADLINE)
            assert status.signal == signal.SIGTERM
            assert not group_exists(backend.pid)
        finally:
            backend.signal_group(signal.SIGKILL)
            await backend.wait()
            log.close()
            ended = grandchild.finish()
    assert ended is not None and os.WTERMSIG(ended) == signal.SIGKILL


async def test_the_reaper_kills_what_a_dead_leader_left_without_proc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_proc(monkeypatch, tmp_path)
    with adopting_orphans():
        leader, pid = backend_with_grandchild()
        grandchild = Reaping(pid)
        try:
            leader.kill()
            leader.wait()
            assert is_alive(pid)
            assert await reap([ProcessRecord("left", leader.pid, None, 0)], timeout=5) == ["left"]
            assert not group_exists(leader.pid)
        finally:
            end(leader)
            ended = grandchild.finish()
    assert ended is not None and os.WTERMSIG(ended) == signal.SIGKILL


@pytest.mark.parametrize("recorded", ["unknown", "known"])
async def test_the_reaper_never_stops_a_leader_it_cannot_verify(
    recorded: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start ticks unknown when recorded, or unreadable now: the PID may be another's."""
    process = sleeper()
    try:
        ticks = processinfo.process_start_ticks(process.pid) if recorded == "known" else None
        hide_proc(monkeypatch, tmp_path)
        entry = ProcessRecord("x", process.pid, ticks, 0)
        assert await reap([entry], timeout=0.3) == []
        assert process.poll() is None
    finally:
        end(process)

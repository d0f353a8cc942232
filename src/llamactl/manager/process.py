"""Backend processes: spawn without a shell, capture output, stop the whole group.

Each backend runs in a new session (so its own process group), and on Linux it receives
SIGTERM if llamactl dies (the parent-death signal). Its stdout and stderr go, as raw
chunks, to the instance log. Stopping signals the group: SIGTERM, a bounded wait, then
SIGKILL, until no member is left (``processinfo`` tells, with or without ``/proc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llamactl.errors import BackendFailed
from llamactl.manager.logs import InstanceLog
from llamactl.manager.processinfo import group_has_members

__all__ = [
    "BackendProcess",
    "ExitStatus",
    "kill_group",
    "spawn",
]

_CHUNK = 64 * 1024
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended: an exit code, or the signal that killed it."""

    code: int | None = None
    signal: int | None = None

    @classmethod
    def from_returncode(cls, returncode: int) -> ExitStatus:
        return cls(signal=-returncode) if returncode < 0 else cls(code=returncode)

    @property
    def is_clean(self) -> bool:
        return self.code == 0

    def describe(self) -> str:
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name} ({self.signal})"
        return f"exited with code {self.code}"


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to send SIGTERM to the child when llamactl dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # llamactl died between fork and prctl
            os._exit(1)

    return hook


class BackendProcess:
    """A running backend: its process, its output pump and the way to stop it."""

    def __init__(self, process: asyncio.subprocess.Process, log: InstanceLog) -> None:
        self._process = process
        self._log = log
        self._pump = asyncio.create_task(self._copy_output())
        self._exit: ExitStatus | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def exit_status(self) -> ExitStatus | None:
        return self._exit

    async def wait(self) -> ExitStatus:
        """Wait for the process to end and its output to be written."""
        returncode = await self._process.wait()
        await self._pump
        self._exit = ExitStatus.from_returncode(returncode)
        return self._exit

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._process.pid, signum)

    async def stop(self, timeout: float) -> ExitStatus:
        """SIGTERM to the group; SIGKILL to the group if it is still alive after ``timeout``.

        Returns once the leader has exited and no member of its group is left.
        """
        waiting = asyncio.ensure_future(self.wait())
        self.signal_group(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(waiting), timeout)
        except TimeoutError:
            self.signal_group(signal.SIGKILL)
            return await waiting
        finally:
            await kill_group(self._process.pid, timeout)

    async def _copy_output(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        while chunk := await stream.read(_CHUNK):
            self._log.write(chunk)


async def spawn(
    argv: Sequence[str],
    environment: Mapping[str, str],
    log: InstanceLog,
    *,
    cwd: Path | None = None,
    command_hint: str = "",
) -> BackendProcess:
    """Start ``argv`` (no shell) with ``environment`` added to llamactl's own."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **environment},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_parent_death_signal(),
        )
    except FileNotFoundError as exc:
        hint = f": install it or set {command_hint}" if command_hint else ""
        raise BackendFailed(f"{argv[0]} not found{hint}") from exc
    except PermissionError as exc:
        raise BackendFailed(f"{argv[0]} cannot be executed: {exc.strerror}") from exc
    except OSError as exc:
        raise BackendFailed(f"cannot start {argv[0]}: {exc}") from exc
    return BackendProcess(process, log)


async def kill_group(pgid: int, timeout: float) -> bool:
    """SIGKILL every member of ``pgid`` and wait until none is left; False on timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while group_has_members(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)  # signal delivery is asynchronous; nothing to wait on
    return True

"""Reaping backends left behind by a llamactl that died without stopping them.

Each backend is the leader of its own process group, recorded with its PID and its start
time (clock ticks since boot). At start-up, a recorded process that is still alive with
the same start time is ours: its whole group gets SIGTERM, then SIGKILL after a bounded
wait. A live process with another start time is a reused PID and is left alone, and so is
one whose start time is unknown (recorded or read without ``/proc``): what cannot be
verified is never stopped. A backend whose parent is a running llamactl (one holding a
data directory lock) is left alone too: it belongs to that llamactl. When the leader is
gone, any members left in its group are killed, with or without ``/proc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable

from llamactl.database.processes import ProcessRecord
from llamactl.manager.datadir import holds_lock_file
from llamactl.manager.process import kill_group
from llamactl.manager.processinfo import (
    group_has_members,
    is_zombie,
    parent_pid,
    process_start_ticks,
)

__all__ = ["is_alive", "reap"]

logger = logging.getLogger(__name__)

_POLL = 0.05


def is_alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie counts without ``/proc``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return is_zombie(pid) is not True


def _is_ours(entry: ProcessRecord) -> bool:
    """Whether the live ``entry.pid`` is still the process that was recorded."""
    ticks = process_start_ticks(entry.pid)
    if entry.start_ticks is None or ticks is None:
        logger.warning(
            "leaving pid %d alone: its start time is unknown, so it cannot be verified to be "
            "the backend of %s",
            entry.pid,
            entry.instance_name,
        )
        return False
    if ticks != entry.start_ticks:
        logger.info("pid %d of %s now belongs to another process", entry.pid, entry.instance_name)
        return False
    return True


def _live_owner(pid: int) -> int | None:
    """The PID of the llamactl that started ``pid`` if it still runs, else ``None``.

    A backend's parent is the llamactl that spawned it until that llamactl dies (then it
    is re-parented to init or a subreaper). A parent holding a llamactl lock file is a
    live llamactl, whose backends are not ours to stop, whatever the database says.
    """
    parent = parent_pid(pid)
    if parent is None or parent in (0, 1, os.getpid()):
        return None
    return parent if holds_lock_file(parent) else None


def _kill_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


async def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while is_alive(pid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL)  # not our child: there is nothing to wait on but polling
    return True


async def _reap_one(entry: ProcessRecord, timeout: float) -> bool:
    if not is_alive(entry.pid):
        # The leader is gone, so no other process can have its PID as group ID: whatever
        # is still in that group was left behind by the backend.
        return group_has_members(entry.pid) and await kill_group(entry.pid, timeout)
    if not _is_ours(entry):
        return False
    owner = _live_owner(entry.pid)
    if owner is not None:
        logger.warning(
            "leaving backend %s (pid %d) alone: its llamactl (pid %d) is still running",
            entry.instance_name,
            entry.pid,
            owner,
        )
        return False
    logger.warning(
        "stopping backend %s (pid %d) left by a previous run", entry.instance_name, entry.pid
    )
    _kill_group(entry.pid, signal.SIGTERM)
    await _wait_gone(entry.pid, timeout)
    await kill_group(entry.pid, timeout)
    return True


async def reap(entries: Iterable[ProcessRecord], timeout: float = 5.0) -> list[str]:
    """Stop every recorded backend that is still alive; return the instances reaped."""
    recorded = list(entries)
    results = await asyncio.gather(*(_reap_one(entry, timeout) for entry in recorded))
    return [entry.instance_name for entry, reaped in zip(recorded, results, strict=True) if reaped]

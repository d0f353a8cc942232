"""What the OS tells about processes that are not (or no longer) our children.

Linux answers from ``/proc`` (``PROC``). Without it (macOS, where mlx_lm runs) only what
POSIX offers is asked: ``killpg(pgid, 0)`` tells whether a process group still has
members, and a process's start time, parent and open files are unknown (``None`` or
empty). Callers take an unknown as "cannot verify", never as a match: nothing is stopped
on a guess. Only reads and signal 0; this module never stops anything.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = [
    "PROC",
    "group_has_members",
    "is_zombie",
    "open_file_targets",
    "parent_pid",
    "process_start_ticks",
]

PROC = Path("/proc")

# Indexes into the fields of /proc/<pid>/stat that follow the command name, state first.
_STATE, _PPID, _PGRP, _START_TIME = 0, 1, 2, 19


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or ``None``."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None  # no /proc, or the process ended
    _, found, rest = text.rpartition(")")
    return rest.split() if found else None


def group_has_members(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member left.

    With ``/proc`` zombies do not count. Without it a zombie counts until it is reaped,
    which for an orphan init (launchd on macOS) does at once.
    """
    try:
        entries = [entry.name for entry in PROC.iterdir() if entry.name.isdigit()]
    except OSError:
        return _group_exists(pgid)
    return any(_is_live_member(pid, pgid) for pid in entries)


def _is_live_member(pid: str, pgid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[_STATE] != "Z" and int(fields[_PGRP]) == pgid


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # members of another user: there, though not ours to signal
    return True


def is_zombie(pid: int) -> bool | None:
    """Whether ``pid`` has ended but is not reaped yet; ``None`` when unknown."""
    fields = _stat_fields(pid)
    return None if fields is None else fields[_STATE] == "Z"


def process_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, to tell PIDs apart; ``None``
    when unknown."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[_START_TIME])


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid``; ``None`` when unknown."""
    fields = _stat_fields(pid)
    try:
        return None if fields is None else int(fields[_PPID])
    except (IndexError, ValueError):
        return None  # not the layout of a Linux stat file


def open_file_targets(pid: int) -> list[str]:
    """What the open file descriptors of ``pid`` point to; empty when unknown."""
    try:
        entries = list((PROC / str(pid) / "fd").iterdir())
    except OSError:
        return []
    targets = []
    for entry in entries:
        with contextlib.suppress(OSError):  # closed while we looked
            targets.append(str(entry.readlink()))
    return targets

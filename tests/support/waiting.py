"""Waiting for a condition: on the manager's change notifications, or by polling other
processes (where there is no event to await)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from llamactl.instance import Instance, Status
from llamactl.manager import InstanceManager
from llamactl.manager.runtime import RuntimeInfo

__all__ = ["DEADLINE", "eventually", "is_ready", "status_is", "until"]

DEADLINE = 30.0


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


def eventually(check: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll ``check`` until it holds (these are other processes: there is no event to await)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)

"""What happens to the local backends, told to whoever counts it (the metrics).

Each ``InstanceProcess`` reports its own events as they happen: started, ready (with how
long the start took), stopped (and why), crashed, restarting and failed. An instance that
lives on another node is that node's to report. A manager with nobody listening reports
to ``NoLifecycle``.
"""

from __future__ import annotations

import enum
from typing import Protocol

__all__ = ["Lifecycle", "NoLifecycle", "StopCause"]


class StopCause(enum.StrEnum):
    """Why a backend stopped."""

    MANUAL = "manual"  # asked for through the API or the CLI
    IDLE = "idle"  # idle for longer than its idle_timeout
    EVICTION = "eviction"  # stopped to make room for another instance
    RESTART = "restart"  # stopped to start again (a restart, new options)
    SHUTDOWN = "shutdown"  # llamactl is stopping


class Lifecycle(Protocol):
    """Receives the events of the local backends; every call must return at once."""

    def started(self, name: str, backend: str) -> None: ...

    def ready(self, name: str, backend: str, seconds: float) -> None:
        """The first readiness of a process, ``seconds`` after it was spawned."""

    def stopped(self, name: str, backend: str, cause: StopCause) -> None: ...

    def crashed(self, name: str, backend: str) -> None:
        """The process exited although nobody asked it to."""

    def restarting(self, name: str, backend: str) -> None:
        """An automatic restart after a crash is on its way."""

    def failed(self, name: str, backend: str) -> None:
        """The instance ended ``failed`` (a crash past its restarts, a start that failed)."""


class NoLifecycle:
    """Nobody listening."""

    def started(self, name: str, backend: str) -> None:
        pass

    def ready(self, name: str, backend: str, seconds: float) -> None:
        pass

    def stopped(self, name: str, backend: str, cause: StopCause) -> None:
        pass

    def crashed(self, name: str, backend: str) -> None:
        pass

    def restarting(self, name: str, backend: str) -> None:
        pass

    def failed(self, name: str, backend: str) -> None:
        pass

"""What the manager reads of the requests its instances serve.

The proxy's scheduler counts them (in flight, queued, holds, when the last one ended);
the manager only reads the counts: a stop waits for the requests a backend is serving,
and an instance's info shows them. A manager with no scheduler sees no requests at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["NoTraffic", "Traffic", "TrafficInfo"]


@dataclass(frozen=True)
class TrafficInfo:
    """The requests of one instance, now."""

    in_flight: int = 0  # counted from arrival to end, those still queued included
    queued: int = 0  # of those, the ones waiting for the instance to become ready
    last_end: float | None = None  # clock time the last request ended
    held: bool = False  # no new request goes to it: it finishes its own to make room


class Traffic(Protocol):
    """The requests of every instance, as the scheduler counts them."""

    def info(self, name: str) -> TrafficInfo: ...

    async def drained(self, name: str, timeout: float) -> bool:
        """Wait until the backend of ``name`` serves no request (queued ones wait for the
        instance, not for the backend, so they do not count); False after ``timeout`` s."""

    def stopped(self, name: str) -> None:
        """``name`` is no longer running: a hold on it ends."""

    def forget(self, name: str) -> None:
        """``name`` was deleted."""


class NoTraffic:
    """No requests, ever: the manager on its own (tests, tools)."""

    def info(self, name: str) -> TrafficInfo:
        return TrafficInfo()

    async def drained(self, name: str, timeout: float) -> bool:
        return True

    def stopped(self, name: str) -> None:
        pass

    def forget(self, name: str) -> None:
        pass

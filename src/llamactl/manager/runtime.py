"""The vocabulary of what is known about an instance beyond its stored row.

Readiness (from the backend's health endpoint), the snapshot the API shows, the
intervals the manager works with, a change signal, and the followers of an instance's
log and status. ``instance_process`` owns the values; the requests are the scheduler's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from llamactl.instance import Failure

__all__ = [
    "FOLLOW_BACKLOG",
    "Event",
    "Failure",
    "Followers",
    "Readiness",
    "RuntimeInfo",
    "Signal",
    "Timings",
]

FOLLOW_BACKLOG = 1000
Event = tuple[str, dict[str, object]]


class Readiness(StrEnum):
    """Whether a running backend answers its health endpoint."""

    STARTING = "starting"  # the process is up; the health endpoint has not said yes yet
    READY = "ready"  # the health endpoint answered 200; requests may be forwarded
    UNHEALTHY = "unhealthy"  # it was ready, then stopped answering its health checks


class Signal:
    """Something that changes: waiters look again at every ``notify``."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()``, looking again at every change; False after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._event.wait(), remaining)
            except TimeoutError:
                return done()
        return True


@dataclass(frozen=True)
class Timings:
    """The manager's intervals and bounds, in seconds. Tests shrink them."""

    health_poll: float = 0.1  # health checks while a backend starts
    health_interval: float = 5.0  # health checks once it is ready
    unhealthy_after: int = 3  # failed checks in a row before a ready backend is unhealthy
    stop_timeout: float = 10.0  # SIGTERM to SIGKILL
    drain_timeout: float = 30.0  # how long a stop waits for requests in flight
    idle_check: float = 2.0  # how often idle instances are looked for
    stable_after: float = 60.0  # ready this long: the restart count starts again from 0
    reap_timeout: float = 5.0  # SIGTERM to SIGKILL for leftovers of a previous run


@dataclass(frozen=True)
class RuntimeInfo:
    """A snapshot for the API: everything about an instance that is not stored."""

    readiness: Readiness | None
    pid: int | None
    failure: Failure | None
    restarts: int
    in_flight: int  # requests counted from arrival to end, those still queued included
    queued: int  # of those, the ones waiting for the instance to start and become ready
    last_activity: float | None  # clock time of the end of the last request (or of start)
    idle_seconds: float | None  # since then; None while a request is in flight or stopped
    held: bool = False  # held to make room for another: new requests wait


class Followers:
    """The followers of an instance's log and status, each with its queue of events."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event | None]] = set()

    def publish(self, kind: str, data: dict[str, object]) -> None:
        """Hand an event to every follower. One that is ``FOLLOW_BACKLOG`` events behind
        is dropped (it gets ``None``, the end of its stream) rather than holding memory."""
        for queue in list(self._queues):
            if queue.qsize() >= FOLLOW_BACKLOG:
                self._queues.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait((kind, data))

    def __len__(self) -> int:
        return len(self._queues)

    def follow(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self._queues.add(queue)
        return queue

    def unfollow(self, queue: asyncio.Queue[Event | None]) -> None:
        self._queues.discard(queue)

    def end(self) -> None:
        """End every follower's stream (``None``) and forget them."""
        for queue in list(self._queues):
            queue.put_nowait(None)
        self._queues.clear()

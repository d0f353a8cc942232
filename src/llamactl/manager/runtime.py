"""What the manager knows about an instance beyond its stored row: never persisted.

Readiness (from the backend's health endpoint), the process, the failure reason (the one
exception: the manager stores it with every status change, and restores it at load) and
the consecutive automatic restarts. The requests are the scheduler's (``traffic``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from llamactl.instance import Failure
from llamactl.manager.logs import InstanceLog
from llamactl.manager.process import BackendProcess
from llamactl.manager.traffic import TrafficInfo

__all__ = ["FOLLOW_BACKLOG", "Event", "Failure", "Readiness", "Runtime", "RuntimeInfo", "Timings"]

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


@dataclass
class Runtime:
    """The mutable state of one instance, owned by the manager's event loop."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    process: BackendProcess | None = None
    log: InstanceLog | None = None
    readiness: Readiness | None = None
    # Notified on every change of status, readiness or requests in flight, so that
    # waiters wake up and look again.
    changed: Signal = field(default_factory=Signal)
    ready_since: float | None = None
    # Clock time of the start of the process, then of its first readiness: idle time
    # counts from it (or from the end of a later request).
    active_since: float | None = None
    failure: Failure | None = None
    restarts: int = 0
    stopping: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    restart_task: asyncio.Task[None] | None = None
    # Followers of the instance's log and status (see ``publish``).
    followers: set[asyncio.Queue[Event | None]] = field(default_factory=set)
    # Called on every ``notify``: the manager's signal that some instance changed.
    on_change: Callable[[], None] | None = None

    def publish(self, kind: str, data: dict[str, object]) -> None:
        """Hand an event to every follower. One that is ``FOLLOW_BACKLOG`` events behind
        is dropped (it gets ``None``, the end of its stream) rather than holding memory."""
        for queue in list(self.followers):
            if queue.qsize() >= FOLLOW_BACKLOG:
                self.followers.discard(queue)
                queue.put_nowait(None)
            else:
                queue.put_nowait((kind, data))

    def follow(self) -> asyncio.Queue[Event | None]:
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.followers.add(queue)
        return queue

    def unfollow(self, queue: asyncio.Queue[Event | None]) -> None:
        self.followers.discard(queue)
        self.notify()

    def end_followers(self) -> None:
        """End every follower's stream (``None``) and forget them."""
        for queue in list(self.followers):
            queue.put_nowait(None)
        self.followers.clear()

    def notify(self) -> None:
        """Wake everything waiting for a change of this instance."""
        self.changed.notify()
        if self.on_change is not None:
            self.on_change()

    async def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()``, looking again at every change; False after ``timeout`` s."""
        return await self.changed.wait_for(done, timeout)

    def snapshot(self, traffic: TrafficInfo, now: float) -> RuntimeInfo:
        times = [t for t in (self.active_since, traffic.last_end) if t is not None]
        last_activity = max(times) if times else None
        idle = (
            max(0.0, now - last_activity)
            if last_activity is not None and traffic.in_flight == 0 and self.process is not None
            else None
        )
        return RuntimeInfo(
            readiness=self.readiness,
            pid=self.process.pid if self.process else None,
            failure=self.failure,
            restarts=self.restarts,
            in_flight=traffic.in_flight,
            queued=traffic.queued,
            last_activity=last_activity,
            idle_seconds=idle,
        )

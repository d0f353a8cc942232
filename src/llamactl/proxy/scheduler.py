"""The scheduler: the requests of every instance, and bringing instances up for them.

It counts each instance's requests (in flight, queued, held, when the last one ended),
which the manager reads to drain a stop and to report, and stops instances idle for
longer than their ``idle_timeout``.

On-demand start: every request for an instance that is not ready waits in that
instance's bounded queue (``instances.max_queued_requests``; beyond it, 503 with
``Retry-After``). The first one starts a stopped instance (once, for all of them); none
is let through before the backend answers its health check. A waiter whose client goes
away is cancelled and leaves the queue. When ``max_running_instances`` is reached, the
least recently used instance with no request in flight is stopped to make room
(``enable_lru_eviction``); if every one is busy, one is held until its requests end (see
``Scheduler._make_room``).

A start that failed is not tried again by requests for ``FAILED_START_COOLDOWN`` seconds:
they get the same failure at once, with ``Retry-After`` (clients such as the OpenAI SDKs
retry a 502 at once, which would start a broken instance three times per call). A start
through the management API is not affected.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llamactl.config import AppConfig
from llamactl.errors import (
    BackendFailed,
    InstanceNotRunning,
    QueueFull,
    StartFailedRecently,
    Unavailable,
)
from llamactl.instance import Instance, Status
from llamactl.manager import InstanceManager
from llamactl.manager.lifecycle import StopCause
from llamactl.manager.runtime import Failure, Readiness, Signal
from llamactl.manager.traffic import TrafficInfo
from llamactl.observe import Metrics
from llamactl.proxy.policy import Admit, Evict, Hold, Refuse, Slot, Snapshot, Wait, decide

__all__ = ["FAILED_START_COOLDOWN", "Requests", "Scheduler"]

logger = logging.getLogger(__name__)

_OCCUPYING = frozenset({Status.RUNNING, Status.RESTARTING})
_DEFAULT_TIMEOUT = 30
_QUEUE_RETRY_AFTER = 5
_LIMIT_RETRY_AFTER = 10
FAILED_START_COOLDOWN = 10.0  # seconds during which a failed start is not tried again


@dataclass(frozen=True)
class _FailedStart:
    """An on-demand start that failed: when, why, and the failure the manager recorded."""

    at: float  # time.monotonic()
    message: str
    failure: Failure | None


class _Start:
    """One start of an instance, shared by every request waiting for it."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task
        self.waiters = 0


@dataclass
class _Count:
    """The requests of one instance."""

    in_flight: int = 0
    queued: int = 0
    # Set while another instance waits for this one's slot: new requests queue instead
    # of reaching the backend, so that the ones it serves can end and it can be stopped.
    held: bool = False
    last_end: float | None = None

    @property
    def serving(self) -> int:
        """Requests in flight that are past the queue: the backend is serving them."""
        return max(0, self.in_flight - self.queued)


@dataclass
class Requests:
    """The requests of every instance: what the manager reads as its ``Traffic``.

    ``changes`` is notified whenever a wait may be over: a request queued or unqueued, a
    hold on or off, the last request the backend serves ended.
    """

    clock: Callable[[], float]
    changes: Signal
    _counts: dict[str, _Count] = field(default_factory=dict)

    def count(self, name: str) -> _Count:
        found = self._counts.get(name)
        if found is None:
            found = self._counts[name] = _Count()
        return found

    def info(self, name: str) -> TrafficInfo:
        found = self._counts.get(name)
        if found is None:
            return TrafficInfo()
        return TrafficInfo(found.in_flight, found.queued, found.last_end)

    def begin(self, name: str) -> None:
        self.count(name).in_flight += 1

    def end(self, name: str) -> None:
        found = self.count(name)
        found.in_flight = max(0, found.in_flight - 1)
        found.last_end = self.clock()
        if found.serving == 0:  # a drain or a swap may wait for this
            self.changes.notify()

    def enter_queue(self, name: str) -> None:
        self.count(name).queued += 1
        self.changes.notify()

    def leave_queue(self, name: str) -> None:
        found = self.count(name)
        found.queued = max(0, found.queued - 1)
        self.changes.notify()

    def hold(self, name: str) -> None:
        self.count(name).held = True
        self.changes.notify()

    def release(self, name: str) -> None:
        found = self._counts.get(name)
        if found is not None and found.held:
            found.held = False
            self.changes.notify()

    def is_held(self, name: str) -> bool:
        found = self._counts.get(name)
        return found is not None and found.held

    async def drained(self, name: str, timeout: float) -> bool:
        return await self.changes.wait_for(lambda: self.count(name).serving == 0, timeout)

    def stopped(self, name: str) -> None:
        self.release(name)  # a hold ends when the instance stops running

    def forget(self, name: str) -> None:
        self._counts.pop(name, None)


class Scheduler:
    """Counts the proxy's requests and brings instances up for them."""

    def __init__(
        self, manager: InstanceManager, config: AppConfig, metrics: Metrics | None = None
    ) -> None:
        """``metrics`` counts the evictions and holds."""
        self._manager = manager
        self._metrics = metrics
        self._settings = config.instances
        self.requests = Requests(manager.clock, manager.changes)
        manager.use_traffic(self.requests)
        self._closing = False  # the server is stopping: no more starts, waiters answered
        self._waiting: set[asyncio.Task[None]] = set()
        self._admission = asyncio.Lock()  # one start (with its eviction) at a time
        self._starts: dict[str, _Start] = {}
        self._failed: dict[str, _FailedStart] = {}
        self._idle_task: asyncio.Task[None] | None = None

    def reconfigure(self, config: AppConfig) -> None:
        """Use new limits from now on (a configuration reload)."""
        self._settings = config.instances

    def start_idle_checks(self) -> None:
        """Look for idle instances every ``Timings.idle_check`` seconds, until ``close``."""
        self._idle_task = asyncio.create_task(self._idle_loop())

    def close(self) -> None:
        """The server is stopping: every request waiting for a start is answered 503 now,
        and later ones at once, instead of waiting out the server's grace period; the
        idle checks end."""
        self._closing = True
        if self._idle_task is not None:
            self._idle_task.cancel()
        for work in list(self._waiting):
            work.cancel()

    # -- request accounting -------------------------------------------------------------

    def accepts(self, name: str) -> bool:
        """Whether a new request may go to ``name`` now: ready and not held (cheap: the
        proxy asks for every request)."""
        return self._manager.is_ready(name) and not self.requests.is_held(name)

    def begin(self, name: str) -> None:
        """A request for ``name`` is in flight: the instance is not idle until it ends."""
        self.requests.begin(name)

    def end(self, name: str) -> None:
        """The request ended (response complete or client gone): idle time counts from now."""
        self.requests.end(name)

    def is_held(self, name: str) -> bool:
        return self.requests.is_held(name)

    # -- idle stop ----------------------------------------------------------------------

    async def check_idle(self) -> builtins.list[str]:
        """Stop every instance idle for longer than its ``idle_timeout``; return their names."""
        stopped = []
        for inst in self._manager.list():
            idle = self._idle_for(inst)
            if idle is None:
                continue
            reason = f"(idle for {idle:.0f} s)"
            if await self._manager.stop_if(
                inst.name, self._is_idle, reason=reason, cause=StopCause.IDLE
            ):
                stopped.append(inst.name)
        return stopped

    def _is_idle(self, inst: Instance) -> bool:
        return self._idle_for(inst) is not None

    def _idle_for(self, inst: Instance) -> float | None:
        """How long ``inst`` has been idle, if longer than its ``idle_timeout``."""
        minutes = inst.options.idle_timeout or 0
        if minutes <= 0 or inst.status is not Status.RUNNING:
            return None
        info = self._manager.info(inst.name)
        if info.readiness is not Readiness.READY or info.in_flight or info.idle_seconds is None:
            return None
        return info.idle_seconds if info.idle_seconds >= minutes * 60 else None

    async def _idle_loop(self) -> None:
        while True:
            await asyncio.sleep(self._manager.timings.idle_check)
            try:
                await self.check_idle()
            except Exception:  # one failing stop must not end the idle checks
                logger.exception("idle check failed")

    # -- on-demand start ----------------------------------------------------------------

    async def ready(self, name: str) -> None:
        """Return once ``name`` is ready for requests, or raise why it cannot be: the
        request (already counted in flight) waits in its queue, and the instance is
        started, room made for it, as the configuration allows."""
        if self.accepts(name):
            return
        if self._closing:
            raise self._shutting_down(name)
        limit = self._settings.max_queued_requests
        if self.requests.count(name).queued >= limit:
            raise QueueFull(
                f"{limit} requests already wait for instance {name} "
                "(instances.max_queued_requests)",
                retry_after=_QUEUE_RETRY_AFTER,
            )
        timeout = self._settings.on_demand_start_timeout or _DEFAULT_TIMEOUT
        self.requests.enter_queue(name)
        work = asyncio.create_task(self._bring_up(name, timeout))
        self._waiting.add(work)
        try:
            async with asyncio.timeout(timeout):
                await work  # a task of its own, so that ``close`` can end the wait alone
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if work.cancelled() and self._closing and current and not current.cancelling():
                raise self._shutting_down(name) from None
            raise
        except StartFailedRecently:
            raise
        except BackendFailed as exc:
            self._note_failure(name, exc)
            raise
        except TimeoutError:
            raise Unavailable(
                f"instance {name} did not become ready within {timeout} s "
                "(instances.on_demand_start_timeout)",
                retry_after=_LIMIT_RETRY_AFTER,
            ) from None
        finally:
            self._waiting.discard(work)
            work.cancel()
            self.requests.leave_queue(name)

    @staticmethod
    def _shutting_down(name: str) -> Unavailable:
        return Unavailable(
            f"llamactl is shutting down: instance {name} will not become ready",
            retry_after=_LIMIT_RETRY_AFTER,
        )

    async def _bring_up(self, name: str, timeout: float) -> None:
        manager = self._manager
        while not self.accepts(name):
            inst = manager.get(name)
            if inst.status is Status.SHUTTING_DOWN:
                await manager.wait_until(
                    name, lambda inst, _info: inst.status is not Status.SHUTTING_DOWN, timeout
                )
            elif self.is_held(name):  # another instance waits for its slot
                await manager.wait_any(lambda: not self.is_held(name), timeout)
            elif inst.status in _OCCUPYING:
                await self._manager.wait_ready(name, timeout)
            elif not inst.options.on_demand_start:
                raise InstanceNotRunning(
                    f"instance {name} is {inst.status.value} and on_demand_start is off: "
                    "start it first"
                )
            else:
                self._refuse_if_failed_recently(name)
                await self._start(name, timeout)

    def _note_failure(self, name: str, exc: BackendFailed) -> None:
        """Remember a start that left ``name`` failed (the first of its waiters counts)."""
        if not self._manager.exists(name) or self._manager.get(name).status is not Status.FAILED:
            return
        failure = self._manager.info(name).failure
        known = self._failed.get(name)
        if known is None or known.failure is not failure:
            self._failed[name] = _FailedStart(time.monotonic(), exc.message, failure)

    def _refuse_if_failed_recently(self, name: str) -> None:
        """``StartFailedRecently`` if the start of ``name`` failed within the cooldown and
        nothing has happened to the instance since (a manual start forgets it)."""
        known = self._failed.pop(name, None)
        if known is None:
            return
        if self._manager.get(name).status is not Status.FAILED:
            return
        if self._manager.info(name).failure is not known.failure:
            return
        remaining = known.at + FAILED_START_COOLDOWN - time.monotonic()
        if remaining <= 0:
            return
        self._failed[name] = known
        seconds = math.ceil(remaining)
        raise StartFailedRecently(
            f"{known.message} (failed {FAILED_START_COOLDOWN - remaining:.1f} s ago; "
            f"not started again for {seconds} s)",
            retry_after=seconds,
        )

    async def _start(self, name: str, timeout: float) -> None:
        """Wait for the start of ``name``, beginning it if nobody has.

        Every request for ``name`` shares one start, so that only one of them waits its
        turn to make room: requests for an instance another start is making room for must
        not stand in that line (they would wait for themselves). The start is cancelled
        when the last request waiting for it goes away.
        """
        start = self._starts.get(name)
        if start is None:
            start = self._starts[name] = _Start(asyncio.create_task(self._admit(name, timeout)))
            start.task.add_done_callback(lambda task: self._finished(name, start, task))
        start.waiters += 1
        try:
            await asyncio.shield(start.task)
        finally:
            start.waiters -= 1
            if start.waiters == 0 and not start.task.done():
                self._forget(name, start)  # a request coming now begins a new start
                start.task.cancel()

    def _finished(self, name: str, start: _Start, task: asyncio.Task[None]) -> None:
        self._forget(name, start)
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone

    def _forget(self, name: str, start: _Start) -> None:
        if self._starts.get(name) is start:
            del self._starts[name]

    async def _admit(self, name: str, timeout: float) -> None:
        async with self._admission:
            if self._manager.get(name).status in _OCCUPYING:
                return  # another waiter started it meanwhile
            await self._make_room(name, timeout)
            try:
                await self._manager.start(name)
            except BackendFailed as exc:
                raise BackendFailed(f"instance {name} could not start: {exc.message}") from exc

    async def _make_room(self, name: str, timeout: float) -> None:
        """Stop instances until ``name`` fits under ``max_running_instances``, as
        ``policy.decide`` says.

        The victim is the least recently used instance with nothing in flight. When every
        running instance is busy, the least recently used ready one is held: its new
        requests queue (they will start it again later) while the ones it serves finish,
        then it stops. Swaps thus alternate between batches of requests, and none is
        refused because the others were busy. Only one start makes room at a time.
        """
        manager = self._manager
        held: list[str] = []
        try:
            while True:
                match decide(self._snapshot(name, held)):
                    case Admit():
                        return
                    case Refuse(message=message):
                        raise Unavailable(message, retry_after=_LIMIT_RETRY_AFTER)
                    case Evict(name=victim, reason=reason):
                        self._count(victim, Metrics.evicted)
                        await manager.stop(victim, reason=reason, cause=StopCause.EVICTION)
                        continue
                    case Hold(name=busy):
                        logger.info(
                            "instance %s: held until its requests end, to make room for %s "
                            "(max_running_instances=%d)",
                            busy,
                            name,
                            self._settings.max_running_instances,
                        )
                        self.requests.hold(busy)
                        held.append(busy)
                        self._count(busy, Metrics.held)
                await self._wait_for_room(name, timeout, held)
        finally:
            for other in held:
                self.requests.release(other)  # nothing to do for those that stopped

    def _count(self, name: str, event: Callable[[Metrics, str, str], None]) -> None:
        if self._metrics is not None and self._manager.exists(name):
            event(self._metrics, name, self._manager.get(name).options.backend_type.value)

    async def _wait_for_room(self, name: str, timeout: float, held: list[str]) -> None:
        """Wait until the policy has something to do other than wait."""

        def room() -> bool:
            return not isinstance(decide(self._snapshot(name, held)), Wait)

        if not await self._manager.wait_any(room, timeout):
            limit = self._settings.max_running_instances
            raise Unavailable(
                f"max_running_instances ({limit}) is reached and the running instances "
                f"stayed busy for {timeout:g} s: cannot start {name} now",
                retry_after=_LIMIT_RETRY_AFTER,
            )

    def _snapshot(self, name: str, held: list[str]) -> Snapshot:
        """What the policy needs to know to make room for ``name``."""
        manager = self._manager
        return Snapshot(
            target=name,
            slots=tuple(
                self._slot(inst)
                for inst in manager.list()
                if inst.name != name and inst.status in _OCCUPYING
            ),
            limit=self._settings.max_running_instances,
            eviction=self._settings.enable_lru_eviction,
            holding=any(self.is_held(other) for other in held),
        )

    def _slot(self, inst: Instance) -> Slot:
        info = self._manager.info(inst.name)
        return Slot(
            name=inst.name,
            running=inst.status is Status.RUNNING,
            ready=info.readiness is Readiness.READY,
            serving=max(0, info.in_flight - info.queued),
            queued=info.queued,
            held=self.is_held(inst.name),
            last_activity=info.last_activity,
        )

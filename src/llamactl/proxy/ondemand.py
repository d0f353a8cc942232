"""On-demand start: hold a request until its instance is ready, starting it if allowed.

Every request for an instance that is not ready waits in that instance's bounded queue
(``instances.max_queued_requests``; beyond it, 503 with ``Retry-After``). The first one
starts a stopped instance (once, for all of them); none is let through before the
backend answers its health check. A waiter whose client goes away is cancelled and
leaves the queue. When ``max_running_instances`` is reached, the least recently used
instance with no request in flight is stopped to make room (``enable_lru_eviction``);
without one, 503 names the limit.
"""

from __future__ import annotations

import asyncio
import logging

from llamactl.config import AppConfig
from llamactl.errors import BackendFailed, InstanceNotRunning, QueueFull, Unavailable
from llamactl.instance import Status
from llamactl.manager import InstanceManager

__all__ = ["OnDemand"]

logger = logging.getLogger(__name__)

_OCCUPYING = frozenset({Status.RUNNING, Status.RESTARTING})
_DEFAULT_TIMEOUT = 30
_QUEUE_RETRY_AFTER = 5
_LIMIT_RETRY_AFTER = 10


class OnDemand:
    """Brings instances up for the proxy."""

    def __init__(self, manager: InstanceManager, config: AppConfig) -> None:
        self._manager = manager
        self._settings = config.instances
        self._admission = asyncio.Lock()  # one start (with its eviction) at a time

    async def ready(self, name: str) -> None:
        """Return once ``name`` is ready for requests, or raise why it cannot be."""
        if self._manager.is_ready(name):
            return
        limit = self._settings.max_queued_requests
        if self._manager.queued(name) >= limit:
            raise QueueFull(
                f"{limit} requests already wait for instance {name} "
                "(instances.max_queued_requests)",
                retry_after=_QUEUE_RETRY_AFTER,
            )
        timeout = self._settings.on_demand_start_timeout or _DEFAULT_TIMEOUT
        self._manager.enter_queue(name)
        try:
            async with asyncio.timeout(timeout):
                await self._bring_up(name, timeout)
        except TimeoutError:
            raise Unavailable(
                f"instance {name} did not become ready within {timeout} s "
                "(instances.on_demand_start_timeout)",
                retry_after=_LIMIT_RETRY_AFTER,
            ) from None
        finally:
            self._manager.leave_queue(name)

    async def _bring_up(self, name: str, timeout: float) -> None:
        while not self._manager.is_ready(name):
            inst = self._manager.get(name)
            if inst.status is Status.SHUTTING_DOWN:
                await self._manager.wait_until(
                    name, lambda inst, _info: inst.status is not Status.SHUTTING_DOWN, timeout
                )
            elif inst.status in _OCCUPYING:
                await self._manager.wait_ready(name, timeout)
            elif not inst.options.on_demand_start:
                raise InstanceNotRunning(
                    f"instance {name} is {inst.status.value} and on_demand_start is off: "
                    "start it first"
                )
            else:
                await self._start(name)

    async def _start(self, name: str) -> None:
        async with self._admission:
            if self._manager.get(name).status in _OCCUPYING:
                return  # another waiter started it meanwhile
            await self._make_room(name)
            try:
                await self._manager.start(name)
            except BackendFailed as exc:
                raise BackendFailed(f"instance {name} could not start: {exc.message}") from exc

    async def _make_room(self, name: str) -> None:
        limit = self._settings.max_running_instances
        while limit >= 0 and self._manager.running_count(exclude=name) >= limit:
            if not self._settings.enable_lru_eviction:
                raise Unavailable(
                    f"max_running_instances ({limit}) is reached and enable_lru_eviction is "
                    f"off: stop an instance to start {name}",
                    retry_after=_LIMIT_RETRY_AFTER,
                )
            victim = self._manager.lru_candidate(exclude=name)
            if victim is None:
                raise Unavailable(
                    f"max_running_instances ({limit}) is reached and every running instance "
                    f"has requests in flight: cannot start {name} now",
                    retry_after=_LIMIT_RETRY_AFTER,
                )
            logger.info("stopping %s, used least recently, to start %s", victim, name)
            await self._manager.stop(victim)

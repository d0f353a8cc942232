"""The instance manager: the registry of instances and the backends behind them.

Owns the rules (names, limits, defaults, ports, what may be deleted) and the lifecycle of
backend processes: start, stop, restart, crash restarts, idle stop, boot and shutdown.
Every status change is written to the injected ``Database`` (see ``persistence``: on one
writer thread, never on the event loop; configuration changes are awaited, status changes
follow the manager's memory and are retried while the database refuses them). All methods
run on one asyncio event loop; each instance has a lock, so operations on one instance
are serialised and different instances proceed in parallel.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from llamactl.backends import BackendType, instance_section
from llamactl.config import AppConfig
from llamactl.database import Database
from llamactl.errors import (
    BackendFailed,
    Conflict,
    DatabaseError,
    InstanceExists,
    InstanceNotFound,
    LimitReached,
)
from llamactl.instance import Instance, InstanceDefaults, Options, Status, validate_name
from llamactl.manager.persistence import RETRY_DELAY, Persistence, PersistenceState
from llamactl.manager.ports import PortAllocator, connect_host
from llamactl.manager.reaper import reap
from llamactl.manager.runtime import Event, Readiness, Runtime, RuntimeInfo, Signal, Timings
from llamactl.manager.supervisor import LOOPBACK, Supervisor, backend_config
from llamactl.manager.traffic import NoTraffic, Traffic
from llamactl.transport import ConnectionPool, Transport

__all__ = ["InstanceManager", "instance_defaults"]

logger = logging.getLogger(__name__)

# A backend process may be alive in these statuses: such an instance cannot be deleted.
_ACTIVE = frozenset({Status.RUNNING, Status.RESTARTING, Status.SHUTTING_DOWN})
# These hold a slot of max_running_instances.
_OCCUPYING = frozenset({Status.RUNNING, Status.RESTARTING})


def instance_defaults(config: AppConfig, backend_type: BackendType) -> InstanceDefaults:
    """The ``instances.default_*`` settings, and the backend's docker default."""
    settings = config.instances
    docker = backend_config(config, backend_type).docker
    return InstanceDefaults(
        auto_restart=settings.default_auto_restart,
        max_restarts=settings.default_max_restarts,
        restart_delay=settings.default_restart_delay,
        on_demand_start=settings.default_on_demand_start,
        idle_timeout=settings.default_idle_timeout,
        docker_enabled=docker is not None and docker.enabled,
    )


class InstanceManager:
    """Creates, reads, updates, deletes, starts and stops instances.

    The constructor does no I/O: ``load`` reads the registry, ``boot`` also reaps leftovers
    of a crashed run and resumes instances, ``shutdown`` stops every backend.
    """

    def __init__(
        self,
        config: AppConfig,
        db: Database,
        *,
        clock: Callable[[], float] = time.monotonic,
        timings: Timings | None = None,
        db_retry_delay: float = RETRY_DELAY,
        transport: Transport | None = None,
    ) -> None:
        """``transport``: how backends' health is probed (default: a pool of its own)."""
        self._config = config
        self._db = db
        self._store = Persistence(db, retry_delay=db_retry_delay)
        self._clock = clock
        self._timings = timings or Timings()
        self._instances: dict[str, Instance] = {}
        self._creating: set[str] = set()  # names whose row is being written
        self._runtimes: dict[str, Runtime] = {}
        self._changes = Signal()  # notified whenever any instance changes
        self._ports = PortAllocator(config.instances.port_range)
        self._traffic: Traffic = NoTraffic()
        self._loaded = False
        self._transport = transport or ConnectionPool()
        self._supervisor = Supervisor(
            config,
            self._store,
            self,
            clock=clock,
            timings=self._timings,
            logs_dir=Path(config.instances.logs_dir),
            transport=self._transport,
        )

    # -- registry -----------------------------------------------------------------------

    def load(self) -> None:
        """Read every stored instance and reserve its port (no process is started).

        Runs before serving, so it calls the database directly.
        """
        self._instances = {inst.name: inst for inst in self._db.load_all()}
        for inst in self._instances.values():
            if inst.failure is not None:  # the reason of a failure before a restart
                self._supervisor.restore_failure(inst.name, inst.failure)
            port = inst.options.backend_options.port
            if port is not None and self._ports.owner(port) is None:
                self._ports.reserve(inst.name, port)
        portless = []
        for name in list(self._instances):
            try:
                fixed = self._port_fix(name)
                if fixed is not None:
                    self._db.save(fixed)
                    self._instances[name] = fixed
            except LimitReached:  # it gets a port when it starts, if one is free then
                portless.append(name)
        if portless:
            first, last = self._config.instances.port_range
            shown = ", ".join(portless[:5]) + (", ..." if len(portless) > 5 else "")
            logger.error(
                "%d instances have no port because instances.port_range %d-%d is full (%s); "
                "each gets one when it starts, if one is free by then",
                len(portless),
                first,
                last,
                shown,
            )
        self._loaded = True

    def _port_fix(self, name: str) -> Instance | None:
        """``name`` with a newly allocated port if it has none (or shares one), else None;
        ``LimitReached``."""
        inst = self._require(name)
        port = inst.options.backend_options.port
        if port is None or self._ports.owner(port) != name:
            return self._with_port(inst, self._ports.allocate(name))
        return None

    async def _ensure_port(self, name: str) -> None:
        """Give ``name`` a port of its own, written before anything starts on it."""
        fixed = self._port_fix(name)
        if fixed is None:
            return
        await self._persist(fixed, undo=lambda: self._ports.release(name))

    def reconfigure(self, config: AppConfig) -> None:
        """Use new settings from now on: limits and defaults at once, backend commands and
        log rotation at each instance's next start. The port range and the folders stay
        as they were at start."""
        self._config = config
        self._supervisor.reconfigure(config)

    def use_traffic(self, traffic: Traffic) -> None:
        """Read the requests of the instances from ``traffic`` (the proxy's scheduler):
        stops wait for those a backend serves, and ``info`` shows them."""
        self._traffic = traffic

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    @property
    def timings(self) -> Timings:
        return self._timings

    @property
    def changes(self) -> Signal:
        """Notified whenever any instance changes: notify it too when something a waiter
        of ``wait_any`` looks at changes."""
        return self._changes

    async def drained(self, name: str, timeout: float) -> bool:
        """(For the supervisor.) Wait until the backend of ``name`` serves no request."""
        return await self._traffic.drained(name, timeout)

    def defaults_for(self, backend_type: BackendType) -> InstanceDefaults:
        return instance_defaults(self._config, backend_type)

    def list(self) -> list[Instance]:
        """Every instance, sorted by name."""
        return [self._instances[name] for name in sorted(self._instances)]

    def get(self, name: str) -> Instance:
        return self._require(name)

    def is_ready(self, name: str) -> bool:
        """Whether requests may be forwarded to ``name`` now (cheap: the proxy asks often)."""
        inst = self._instances.get(name)
        runtime = self._runtimes.get(name)
        return (
            inst is not None
            and inst.status is Status.RUNNING
            and runtime is not None
            and runtime.readiness is Readiness.READY
        )

    def address(self, name: str) -> tuple[str, int]:
        """Where the backend of ``name`` listens, from its current options (never cached)."""
        options = self._require(name).options.backend_options
        assert options.port is not None, "every instance holds a port"
        return connect_host(options.host or LOOPBACK), options.port

    def running_count(self, exclude: str | None = None) -> int:
        """Instances holding a slot of ``max_running_instances`` (running or restarting)."""
        return sum(
            inst.status in _OCCUPYING for name, inst in self._instances.items() if name != exclude
        )

    def info(self, name: str) -> RuntimeInfo:
        """Readiness, process, failure and request accounting of an instance."""
        self._require(name)
        return self._runtime(name).snapshot(self._traffic.info(name), self._clock())

    def log_path(self, name: str) -> Path:
        return self._supervisor.log_path(name)

    async def create(self, name: str, options: Options | Mapping[str, object]) -> Instance:
        """Create a stopped instance with the configured defaults and a port."""
        validate_name(name)
        completed = self._complete(options)
        if name in self._instances or name in self._creating:
            raise InstanceExists(name)
        self._check_instance_limit()
        port = self._claim_port(name, completed.backend_options.port)
        inst = Instance(
            name=name,
            created=int(time.time()),
            status=Status.STOPPED,
            options=self._with_port_options(completed, port),
        )

        def created() -> None:
            self._creating.discard(name)
            self._instances[name] = inst

        def refused() -> None:
            self._creating.discard(name)
            self._ports.release(name)

        self._creating.add(name)
        await self._store.save(inst, then=created, undo=refused)
        return inst

    async def update(self, name: str, options: Options | Mapping[str, object]) -> Instance:
        """Replace the options (nodes are kept); a running instance restarts with them.

        Leaving the port out keeps the current one.
        """
        completed = self._complete(options)
        runtime = self._runtime(name)
        async with runtime.lock:
            current = self._require(name)
            was_active = current.status in _OCCUPYING
            port = completed.backend_options.port or current.options.backend_options.port
            if port is None:  # it never got one (the range was full when it was loaded)
                port = self._ports.allocate(name)
            elif port != current.options.backend_options.port:
                self._ports.reserve(name, port)
            new_options = dataclasses.replace(
                self._with_port_options(completed, port), nodes=current.options.nodes
            )
            old_port = current.options.backend_options.port
            try:
                if was_active:
                    await self._stop_locked(name, "to restart with its new options")
            except BaseException:
                self._release_other_ports(name, keep=old_port)
                await self._settle(name)
                raise
            try:
                await self._persist(
                    self._require(name).with_options(new_options),
                    then=lambda: self._release_other_ports(name, keep=port),
                    undo=lambda: self._release_other_ports(name, keep=old_port),
                )
            finally:
                await self._settle(name)
            if was_active:
                try:
                    await self._supervisor.launch(name, fresh=True)
                finally:
                    await self._settle(name)
            return self._require(name)

    async def delete(self, name: str) -> None:
        """Delete an instance; refused while its backend may be running."""
        runtime = self._runtime(name)
        async with runtime.lock:
            inst = self._require(name)
            if inst.status in _ACTIVE:
                raise Conflict(
                    f"instance {name} is {inst.status.value}: stop it before deleting it"
                )

            def deleted() -> None:
                del self._instances[name]
                self._ports.release(name)
                self._runtimes.pop(name, None)
                self._traffic.forget(name)
                runtime.publish("deleted", {"name": name})
                runtime.end_followers()  # their streams end: nothing more will come

            await self._store.delete(name, then=deleted)

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, name: str) -> Instance:
        """Start the backend; returns once the process is up (not when it is ready)."""
        runtime = self._runtime(name)
        async with runtime.lock:
            inst = self._require(name)
            if inst.status in _OCCUPYING:
                return inst
            if inst.status is Status.SHUTTING_DOWN:
                raise Conflict(f"instance {name} is shutting down: wait until it has stopped")
            self._check_running_limit()
            await self._ensure_port(name)
            try:
                await self._supervisor.launch(name, fresh=True)
            finally:
                await self._settle(name)
            return self._require(name)

    async def stop(self, name: str, *, reason: str | None = None) -> Instance:
        """Stop the backend (waiting for requests in flight, within bounds). It stops even
        if the database does not take the status now (written when it does).

        ``reason`` completes the log line ("stopped to make room for b").
        """
        runtime = self._runtime(name)
        async with runtime.lock:
            self._require(name)
            try:
                await self._stop_locked(name, reason)
            finally:
                await self._settle(name)
            return self._require(name)

    async def restart(self, name: str) -> Instance:
        runtime = self._runtime(name)
        async with runtime.lock:
            self._require(name)
            try:
                await self._stop_locked(name, "to restart")
                self._check_running_limit()
                await self._ensure_port(name)
                await self._supervisor.launch(name, fresh=True)
            finally:
                await self._settle(name)
            return self._require(name)

    async def wait_ready(self, name: str, timeout: float) -> Instance:
        """Wait until the backend answers its health check; ``BackendFailed`` if it cannot."""
        runtime = self._runtime(name)

        def settled() -> bool:
            inst = self._require(name)
            return inst.status not in _OCCUPYING or runtime.readiness is Readiness.READY

        if not await runtime.wait_for(settled, timeout):
            raise BackendFailed(f"instance {name} did not become ready within {timeout:g} s")
        inst = self._require(name)
        if inst.status is not Status.RUNNING:
            failure = runtime.failure.reason if runtime.failure else inst.status.value
            raise BackendFailed(f"instance {name} is not running: {failure}")
        return inst

    async def wait_until(
        self, name: str, condition: Callable[[Instance, RuntimeInfo], bool], timeout: float
    ) -> bool:
        """Wait until ``condition(instance, info)`` holds; False if ``timeout`` passes first."""
        return await self._changes.wait_for(
            lambda: condition(self._require(name), self.info(name)), timeout
        )

    async def wait_any(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds, looking again whenever any instance changes;
        False if ``timeout`` passes first."""
        return await self._changes.wait_for(condition, timeout)

    async def stop_if(self, name: str, condition: Callable[[Instance], bool], reason: str) -> bool:
        """Stop ``name`` if ``condition(instance)`` still holds once its lock is taken;
        whether it did (not if it was deleted meanwhile)."""
        runtime = self._runtime(name)
        async with runtime.lock:
            if name not in self._instances or not condition(self._instances[name]):
                return False
            try:
                await self._stop_locked(name, reason)
            finally:
                await self._settle(name)
            return True

    # -- boot and shutdown --------------------------------------------------------------

    async def boot(self) -> None:
        """Load, reap what a crashed run left, resume instances, start the idle check."""
        if not self._loaded:
            self.load()
        recorded = await self._store.call(self._db.recorded_processes)
        for name in await reap(recorded, self._timings.reap_timeout):
            logger.warning("reaped the backend of %s left by a previous run", name)
        for entry in recorded:
            self._store.defer_forget(entry.instance_name)
        for name in self._resume_or_stop():
            try:
                await self.start(name)
            except (BackendFailed, LimitReached, DatabaseError) as exc:
                logger.error("could not resume %s: %s", name, exc.message)
        await self._store.flush()  # what boot changed is on disk before serving

    def _resume_or_stop(self) -> builtins.list[str]:
        """Mark what cannot resume as stopped; return the instances to start again."""
        resume = []
        for name, inst in sorted(self._instances.items()):
            if inst.status not in _ACTIVE:
                continue
            if inst.status in _OCCUPYING and inst.options.auto_restart:
                self._instances[name] = inst.with_status(Status.STOPPED)  # not persisted
                resume.append(name)
            else:
                self._set_status(name, Status.STOPPED)
        return resume

    async def shutdown(self) -> None:
        """Stop every backend concurrently. Rows keep their status, so a boot resumes them."""
        await asyncio.gather(*(self._supervisor.halt(name) for name in list(self._runtimes)))
        self._transport.close()
        await self._store.close()

    def persistence(self) -> PersistenceState:
        """How many status changes wait to be written, and why the last write failed."""
        return self._store.state()

    async def flush(self) -> None:
        """Write every pending status change now; raise the database's error if it fails."""
        error = await self._store.flush()
        if error is not None:
            raise error

    async def _settle(self, name: str) -> None:
        """Write the pending changes of ``name`` before answering; a failure is kept for
        the retries (and reported by ``persistence``), not raised: the lifecycle operation
        itself went through and the process stays supervised."""
        await self._store.flush(name)

    # -- starting and stopping processes ------------------------------------------------

    async def _stop_locked(self, name: str, reason: str | None = None) -> None:
        """Stop ``name`` with its lock held (see ``Supervisor.stop``)."""
        await self._supervisor.stop(name, reason)

    # -- helpers ------------------------------------------------------------------------

    # The supervisor's view of the manager (its Host).

    def exists(self, name: str) -> bool:
        return name in self._instances

    def instance(self, name: str) -> Instance:
        return self._require(name)

    def runtime(self, name: str) -> Runtime:
        return self._runtime(name)

    def set_status(self, name: str, status: Status) -> None:
        self._set_status(name, status)

    def publish_status(self, name: str) -> None:
        runtime = self._runtime(name)
        runtime.notify()
        runtime.publish("status", self._status_event(name))

    def _status_event(self, name: str) -> dict[str, object]:
        readiness = self._runtime(name).readiness
        return {
            "status": self._require(name).status.value,
            "readiness": readiness.value if readiness else None,
        }

    # Following an instance's log and status.

    def follow(self, name: str) -> asyncio.Queue[Event | None]:
        """A queue of ``("log", {"text"})`` and ``("status", {...})`` events for ``name``,
        and a last ``("deleted", {"name"})`` if it is deleted; ``None`` ends it (deleted,
        the server is stopping, or the follower fell too far behind). Call ``unfollow``
        after."""
        self._require(name)
        return self._runtime(name).follow()

    def unfollow(self, name: str, queue: asyncio.Queue[Event | None]) -> None:
        runtime = self._runtimes.get(name)
        if runtime is not None:
            runtime.unfollow(queue)

    def end_followers(self) -> None:
        """End every follow stream (the server is stopping)."""
        for runtime in self._runtimes.values():
            runtime.end_followers()

    def status_event(self, name: str) -> dict[str, object]:
        """The current status and readiness, as a follower's ``status`` event carries them."""
        return self._status_event(name)

    def _runtime(self, name: str) -> Runtime:
        runtime = self._runtimes.get(name)
        if runtime is None:
            runtime = self._runtimes[name] = Runtime(on_change=self._changes.notify)
        return runtime

    def _set_status(self, name: str, status: Status) -> None:
        """Persist ``status`` with the runtime's failure (so that it survives a restart)."""
        inst = self._require(name)
        runtime = self._runtime(name)
        if status is not Status.RUNNING:
            self._traffic.stopped(name)
        changed = inst.status is not status
        if changed or inst.failure != runtime.failure:
            moved = (inst.with_status(status) if changed else inst).with_failure(runtime.failure)
            self._instances[name] = moved
            self._store.defer_save(moved)
        if changed:
            self.publish_status(name)
        else:
            runtime.notify()

    async def _persist(
        self,
        inst: Instance,
        *,
        then: Callable[[], None] | None = None,
        undo: Callable[[], None] | None = None,
    ) -> None:
        """Write ``inst``, then make it the manager's truth (and run ``then``); raise if the
        write fails (after running ``undo``). Both run even if the caller is cancelled."""

        def written() -> None:
            self._instances[inst.name] = inst
            if then is not None:
                then()

        await self._store.save(inst, then=written, undo=undo)

    def _complete(self, options: Options | Mapping[str, object]) -> Options:
        if not isinstance(options, Options):
            options = Options.from_json(options)
        instance_section(self._config.backends, options.backend_options)  # refuses if none
        return options.with_defaults(self.defaults_for(options.backend_type))

    def _claim_port(self, name: str, port: int | None) -> int:
        if port is None:
            return self._ports.allocate(name)
        self._ports.reserve(name, port)
        return port

    def _release_other_ports(self, name: str, keep: int | None) -> None:
        self._ports.release(name)
        if keep is not None:
            self._ports.reserve(name, keep)

    @staticmethod
    def _with_port_options(options: Options, port: int) -> Options:
        return dataclasses.replace(
            options, backend_options=options.backend_options.replace(port=port)
        )

    def _with_port(self, inst: Instance, port: int) -> Instance:
        return inst.with_options(self._with_port_options(inst.options, port))

    def _require(self, name: str) -> Instance:
        try:
            return self._instances[name]
        except KeyError:
            raise InstanceNotFound(name) from None

    def _check_instance_limit(self) -> None:
        limit = self._config.instances.max_instances
        if limit >= 0 and len(self._instances) + len(self._creating) >= limit:
            raise LimitReached(f"maximum number of instances ({limit}) reached")

    def _check_running_limit(self) -> None:
        limit = self._config.instances.max_running_instances
        if limit >= 0 and self.running_count() >= limit:
            raise LimitReached(
                f"maximum number of running instances ({limit}) reached: stop one first"
            )

"""The instance manager: the registry of instances and the backends behind them.

Owns the rules (names, limits, defaults, ports, what may be deleted) and the registry of
owners, one per instance: an ``InstanceProcess`` runs the backend of an instance that
lives here; a ``RemoteInstance`` has the other nodes that it lives on run it (see
``nodes``: it counts towards no limit here and has no port here). Every status change
an owner reports is written to the injected ``Database`` (see ``persistence``: on one
writer thread, never on the event loop; configuration changes are awaited, status changes
follow the manager's memory and are retried while the database refuses them). All methods
run on one asyncio event loop; operations on one instance hold its owner's lock, so they
are serialised, and different instances proceed in parallel. What it answers without
changing anything is in ``reading``.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from llamactl.config import AppConfig
from llamactl.database import Database
from llamactl.errors import (
    BackendFailed,
    Conflict,
    DatabaseError,
    InstanceExists,
    InstanceNotFound,
    LimitReached,
    LlamactlError,
)
from llamactl.instance import Instance, Options, Status, validate_name
from llamactl.manager import rules
from llamactl.manager.instance_process import Environment, InstanceProcess
from llamactl.manager.lifecycle import Lifecycle, StopCause
from llamactl.manager.nodes import Nodes
from llamactl.manager.persistence import RETRY_DELAY, Persistence
from llamactl.manager.ports import with_port
from llamactl.manager.reading import ManagerReads, Owner
from llamactl.manager.reaper import reap
from llamactl.manager.registry import OCCUPYING, Registry
from llamactl.manager.remote import RemoteInstance
from llamactl.manager.remotes import Remotes
from llamactl.manager.runtime import RuntimeInfo, Signal, Timings
from llamactl.manager.traffic import Traffic
from llamactl.transport import ConnectionPool, Transport

__all__ = ["InstanceManager", "Owner"]

logger = logging.getLogger(__name__)

# A backend process may be alive in these statuses: such an instance cannot be deleted.
_ACTIVE = frozenset({Status.RUNNING, Status.RESTARTING, Status.SHUTTING_DOWN})


class InstanceManager(ManagerReads):
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
        nodes: Nodes | None = None,
    ) -> None:
        """``transport``: how backends' health is probed (default: a pool of its own);
        ``nodes``: the other nodes (default: those of ``config``)."""
        self._db = db
        self.nodes = nodes or Nodes(config)
        self._remotes = Remotes(self.nodes, self._changed)
        self._store = Persistence(db, retry_delay=db_retry_delay)
        self._env = Environment(
            config=config,
            store=self._store,
            clock=clock,
            timings=timings or Timings(),
            logs_dir=Path(config.instances.logs_dir),
            transport=transport or ConnectionPool(),
        )
        self._registry = Registry(
            db, self._store, config.instances.port_range, local=self._lives_here
        )
        self._processes: dict[str, Owner] = {}
        self._changes = Signal()  # notified whenever any instance changes
        self._loaded = False
        self._shared = False

    # -- registry -----------------------------------------------------------------------

    def load(self) -> None:
        """Read every stored instance and reserve its port (no process is started); before
        serving, so it calls the database directly."""
        self._processes = {inst.name: self._owner(inst) for inst in self._registry.load()}
        self._loaded = True

    def reconfigure(self, config: AppConfig) -> None:
        """Use new settings: limits and defaults at once, backend commands and log rotation
        at each next start. The port range and the folders stay as they were."""
        self._env.config = config

    def use_traffic(self, traffic: Traffic) -> None:
        """Read the requests of the instances from ``traffic`` (the proxy's scheduler):
        stops wait for those a backend serves, and ``info`` shows them."""
        self._env.traffic = traffic

    def use_lifecycle(self, lifecycle: Lifecycle) -> None:
        """Tell ``lifecycle`` what happens to the local backends from now on."""
        self._env.lifecycle = lifecycle

    async def create(self, name: str, options: Options | Mapping[str, object]) -> Instance:
        """Create a stopped instance with the configured defaults and a port; one whose
        nodes name other nodes on those first (deleted there again if it fails here)."""
        validate_name(name)
        if not isinstance(options, Options):
            options = Options.from_json(options)
        placement = self.nodes.placement(options.nodes)
        completed = rules.complete(self._config, options) if placement.local else options
        if self._registry.taken(name):
            raise InstanceExists(name)
        if placement.local:
            rules.check_instance_limit(self._config, self._registry.count())
        if not placement.remote:
            return await self._registry.add(name, completed, then=self._take_owner)
        self._registry.reserve(name)
        try:
            copies, answered = await self._remotes.define(name, options)
            try:
                stored = completed if placement.local else answered
                return await self._registry.add(
                    name, stored, then=lambda inst: self._adopt(copies, inst), reserved=True
                )
            except BaseException:
                await copies.undefine()
                raise
        finally:
            self._registry.unreserve(name)

    def _take_owner(self, inst: Instance) -> None:
        self._processes[inst.name] = self._owner(inst)

    def _adopt(self, copies: RemoteInstance, inst: Instance) -> None:
        self._remotes.adopt(copies)
        self._processes[inst.name] = (
            copies if self.nodes.is_remote(inst.options.nodes) else (self._owner(inst))
        )
        self._changed(copies)

    async def update(self, name: str, options: Options | Mapping[str, object]) -> Instance:
        """Replace the options (nodes are kept); a running instance restarts with them.

        Leaving the port out keeps the current one.
        """
        if self.is_remote(name):
            return await self._update_remote(name, options)
        completed = rules.complete(self._config, options)
        async with self._locked(name) as owner:
            current = self.get(name)
            copies = self._remotes.of(name)
            if copies is not None:
                sent = dataclasses.replace(completed, nodes=current.options.nodes)
                await self._remotes.redefine(copies, sent)
            was_active = current.status in OCCUPYING
            old_port = current.options.backend_options.port
            ports = self._registry.ports
            port = ports.claim(name, completed.backend_options.port or old_port)
            new_options = dataclasses.replace(
                with_port(completed, port), nodes=current.options.nodes
            )
            try:
                if was_active:
                    await owner.stop("to restart with its new options", cause=StopCause.RESTART)
                await self._registry.write(
                    self.get(name).with_options(new_options),
                    then=lambda: ports.keep_only(name, port),
                    undo=lambda: ports.keep_only(name, old_port),
                )
            except BaseException:
                ports.keep_only(name, old_port)
                raise
            finally:
                await self._settle(name)
            if was_active:
                await self._launch(owner)
            return self.get(name)

    async def _update_remote(self, name: str, options: Options | Mapping[str, object]) -> Instance:
        if not isinstance(options, Options):
            options = Options.from_json(options)
        async with self._locked(name) as owner:
            assert isinstance(owner, RemoteInstance)
            current = self.get(name)
            sent = dataclasses.replace(options, nodes=current.options.nodes)
            stored = await self._remotes.redefine(owner, sent)
            await self._registry.write(current.with_options(stored))
            return self.get(name)

    async def delete(self, name: str) -> None:
        """Delete an instance; refused while its backend may be running."""
        async with self._locked(name) as owner:
            inst = self.get(name)
            if isinstance(owner, InstanceProcess) and inst.status in _ACTIVE:
                raise Conflict(
                    f"instance {name} is {inst.status.value}: stop it before deleting it"
                )
            copies = self._remotes.of(name)
            if copies is not None:
                await copies.undefine()  # each node refuses while its copy runs
            await self._registry.remove(name, then=lambda: self._forget(name, owner))

    def _forget(self, name: str, owner: Owner) -> None:
        del self._processes[name]
        self._remotes.forget(name)
        self._env.traffic.forget(name)
        owner.deleted()  # follow streams end: nothing more will come

    # -- changes made by another writer -------------------------------------------------

    def share(self) -> None:
        """Other writers (replicas) use the same database from now on: a name this node
        does not know is looked up there before it is called unknown (``catch_up``)."""
        self._shared = True

    async def catch_up(self, name: str) -> None:
        """Take the stored row of ``name`` if this node does not know it and the database
        is shared: another replica may have created it a moment ago, and a client behind
        a load balancer may ask here next."""
        if self._shared and not self.exists(name):
            await self.resync([name])

    async def resync(self, names: Iterable[str] | None = None) -> int:
        """Take what another writer (a replica over the same database) stored: the rows
        of ``names``, or of every instance. New rows get an owner, deleted ones lose
        theirs, changed options are taken; statuses stay as this node's owners know them
        (a remote instance's come from its nodes). Nothing is written. The number of
        instances that changed here."""
        if names is None:
            rows = await self._store.call(self._db.load_all)
            stored: dict[str, Instance | None] = {inst.name: inst for inst in rows}
            wanted = set(stored) | set(self._processes)
        else:
            wanted = set(names)
            find = functools.partial(self._find_all, sorted(wanted))
            stored = await self._store.call(find)
        changed = 0
        for name in sorted(wanted):
            try:
                changed += await self._take_stored(name, stored.get(name))
            except LlamactlError as exc:
                logger.warning("cannot take the stored change of %s: %s", name, exc.message)
        if changed:
            self._changes.notify()
        return changed

    def _find_all(self, names: builtins.list[str]) -> dict[str, Instance | None]:
        found: dict[str, Instance | None] = {}
        for name in names:
            try:
                found[name] = self._db.get_by_name(name)
            except InstanceNotFound:
                found[name] = None
        return found

    async def _take_stored(self, name: str, stored: Instance | None) -> bool:
        if self._registry.being_created(name):
            return False  # this node is writing it: its own answer will do
        owner = self._processes.get(name)
        if owner is None:
            if stored is None:
                return False
            inst = self._registry.take_stored(stored)
            self._processes[name] = self._owner(inst)
            logger.info("instance %s was created on another replica", name)
            return True
        async with owner.lock:
            if self._processes.get(name) is not owner:
                return False
            return self._take_stored_locked(name, owner, stored)

    def _take_stored_locked(self, name: str, owner: Owner, stored: Instance | None) -> bool:
        current = self.get(name)
        if stored is None:
            if isinstance(owner, InstanceProcess) and current.status in _ACTIVE:
                logger.warning("instance %s was deleted elsewhere while it runs here", name)
                return False
            self._registry.drop(name)
            self._forget(name, owner)
            logger.info("instance %s was deleted on another replica", name)
            return True
        if stored.options == current.options and stored.id == current.id:
            return False
        taken = dataclasses.replace(stored, status=current.status, failure=current.failure)
        self._registry.take_stored(taken)
        logger.info("instance %s was changed on another replica", name)
        return True

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, name: str) -> Instance:
        """Start the backend; returns once the process is up (not when it is ready)."""
        async with self._locked(name) as owner:
            inst = self.get(name)
            if inst.status in OCCUPYING:
                return inst
            if inst.status is Status.SHUTTING_DOWN:
                raise Conflict(f"instance {name} is shutting down: wait until it has stopped")
            await self._launch(owner)
            return self.get(name)

    async def stop(
        self, name: str, *, reason: str | None = None, cause: StopCause = StopCause.MANUAL
    ) -> Instance:
        """Stop the backend (waiting for requests in flight, within bounds). It stops even
        if the database does not take the status now (written when it does).

        ``reason`` completes the log line ("stopped to make room for b"); ``cause`` is
        what the lifecycle events (the metrics) say.
        """
        async with self._locked(name) as owner:
            await self._stop(owner, reason, cause)
            copies = self._remotes.of(name)
            if copies is not None and copies is not owner:
                await copies.stop_quietly()  # the copies on other nodes too, if they answer
            return self.get(name)

    async def stop_if(
        self,
        name: str,
        condition: Callable[[Instance], bool],
        reason: str,
        cause: StopCause = StopCause.MANUAL,
    ) -> bool:
        """Stop ``name`` if ``condition(instance)`` still holds once its lock is taken;
        whether it did (not if it was deleted meanwhile)."""
        try:
            async with self._locked(name) as owner:
                if condition(self.get(name)):
                    await self._stop(owner, reason, cause)
                    return True
        except InstanceNotFound:
            pass
        return False

    async def restart(self, name: str) -> Instance:
        async with self._locked(name) as owner:
            await self._stop(owner, "to restart", StopCause.RESTART)
            await self._launch(owner)
            return self.get(name)

    async def wait_ready(self, name: str, timeout: float) -> Instance:
        """Wait until the backend answers its health check; ``BackendFailed`` if it cannot."""
        await self._process(name).wait_ready(timeout)
        return self.get(name)

    async def wait_until(
        self, name: str, condition: Callable[[Instance, RuntimeInfo], bool], timeout: float
    ) -> bool:
        """Wait until ``condition(instance, info)`` holds; False if ``timeout`` passes first."""
        return await self._changes.wait_for(
            lambda: condition(self.get(name), self.info(name)), timeout
        )

    async def wait_any(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds, looking again whenever any instance changes;
        False if ``timeout`` passes first."""
        return await self._changes.wait_for(condition, timeout)

    # -- boot and shutdown --------------------------------------------------------------

    async def boot(self) -> None:
        """Load, reap what a crashed run left, resume instances."""
        if not self._loaded:
            self.load()
        self.nodes.start_checks()
        recorded = await self._store.call(self._db.recorded_processes)
        for name in await reap(recorded, self.timings.reap_timeout):
            logger.warning("reaped the backend of %s left by a previous run", name)
        self._store.forget_all(recorded)
        for name in self._resume_or_stop():
            try:
                await self.start(name)
            except (BackendFailed, LimitReached, DatabaseError) as exc:
                logger.error("could not resume %s: %s", name, exc.message)
        await self._store.flush()  # what boot changed is on disk before serving

    def _resume_or_stop(self) -> builtins.list[str]:
        """Mark what cannot resume as stopped; return the instances to start again."""
        resume = []
        for inst in self.local_list():
            if inst.status not in _ACTIVE:
                continue
            if inst.status in OCCUPYING and inst.options.auto_restart:
                self._registry.forget_status(inst.name)  # "running" on disk until it starts
                resume.append(inst.name)
            self._processes[inst.name].mark_stopped()
        return resume

    async def shutdown(self) -> None:
        """Stop every backend concurrently. Rows keep their status, so a boot resumes them."""
        await asyncio.gather(*(owner.halt() for owner in list(self._processes.values())))
        self._env.transport.close()
        await self.nodes.close()
        await self._store.close()

    async def flush(self) -> None:
        """Write every pending status change now; raise the database's error if it fails."""
        error = await self._store.flush()
        if error is not None:
            raise error

    def end_followers(self) -> None:
        """End every follow stream (the server is stopping)."""
        for owner in self._processes.values():
            owner.end_followers()

    # -- helpers ------------------------------------------------------------------------

    def _owner(self, inst: Instance) -> Owner:
        copies = self._remotes.of(inst.name) or self._remotes.load(inst)
        if copies is not None and self.nodes.is_remote(inst.options.nodes):
            return copies
        return InstanceProcess(
            inst.name, self._env, self._changed, status=inst.status, failure=inst.failure
        )

    @asynccontextmanager
    async def _locked(self, name: str) -> AsyncIterator[Owner]:
        """The owner of ``name`` with its lock held; ``InstanceNotFound`` if it is gone
        (before, or while waiting for the lock)."""
        owner = self._process(name)
        async with owner.lock:
            if self._processes.get(name) is not owner:
                raise InstanceNotFound(name)
            yield owner

    def _changed(self, owner: Owner) -> None:
        """An owner's report: store its status and failure (so that they survive a
        restart) when they moved, and wake everything waiting. A remote instance's status
        is the nodes' own, taken as they tell it (their moves are checked there)."""
        if self._processes.get(owner.name) is owner:
            if owner.status is not Status.RUNNING:
                self._env.traffic.stopped(owner.name)
            if isinstance(owner, RemoteInstance):
                self._registry.copy_status(owner.name, owner.status, owner.failure)
            else:
                self._registry.take_status(owner.name, owner.status, owner.failure)
        self._changes.notify()  # copies beside a local process only wake the waiters

    async def _launch(self, owner: Owner) -> None:
        """Start the backend of ``owner`` (lock held) within the limits, on a port of its
        own (written before anything starts on it); a remote one on one of its nodes,
        within that node's limits."""
        name = owner.name
        if isinstance(owner, RemoteInstance):
            try:
                await owner.start()
            finally:
                await self._settle(name)
            return
        try:
            rules.check_running_limit(self._config, self.running_count())
            await self._registry.ensure_port(name)
            await owner.start(self.get(name).options)
        finally:
            await self._settle(name)

    async def _stop(self, owner: Owner, reason: str | None, cause: StopCause) -> None:
        try:
            await owner.stop(reason, cause=cause)
        finally:
            await self._settle(owner.name)

    async def _settle(self, name: str) -> None:
        """Write the pending changes of ``name`` before answering; a failure is kept for
        the retries (reported by ``persistence``), not raised: the operation went through."""
        await self._store.flush(name)

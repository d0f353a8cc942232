"""The stored instances in memory, the ports they hold, and writing them.

The manager's memory follows the database: a configuration change (create, new options,
a port, delete) is written first and taken only once the write went through; a status
change is taken at once and written soon after (``Persistence.defer_save``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from llamactl.database import Database
from llamactl.errors import InstanceExists, InstanceNotFound
from llamactl.instance import Failure, Instance, Options, Status
from llamactl.manager.persistence import Persistence
from llamactl.manager.ports import LOOPBACK, PortAllocator, connect_host, log_portless, with_port

__all__ = ["OCCUPYING", "Registry"]

# These hold a slot of max_running_instances.
OCCUPYING = frozenset({Status.RUNNING, Status.RESTARTING})


class Registry:
    """Every instance's row, by name, with the port each holds.

    ``local(instance)`` tells an instance that lives here from one that lives on other
    nodes only: those hold no port here and count towards no limit.
    """

    def __init__(
        self,
        db: Database,
        store: Persistence,
        port_range: tuple[int, int],
        local: Callable[[Instance], bool] = lambda _inst: True,
    ) -> None:
        self._db = db
        self._local = local
        self._store = store
        self._rows: dict[str, Instance] = {}
        self._creating: set[str] = set()  # names whose row is being written
        self._port_range = port_range
        self.ports = PortAllocator(port_range)

    def load(self) -> list[Instance]:
        """Read every stored instance and give each a port of its own (written at once:
        this runs before serving, so it calls the database directly)."""
        self._rows = {inst.name: inst for inst in self._db.load_all()}
        here = [inst for inst in self._rows.values() if self._local(inst)]
        fixed, portless = self.ports.settle(here)
        for inst in fixed:
            self._db.save(inst)
            self._rows[inst.name] = inst
        log_portless(portless, self._port_range)
        return self.list()

    def list(self) -> list[Instance]:
        """Every instance, sorted by name."""
        return [self._rows[name] for name in sorted(self._rows)]

    def get(self, name: str) -> Instance:
        try:
            return self._rows[name]
        except KeyError:
            raise InstanceNotFound(name) from None

    def exists(self, name: str) -> bool:
        return name in self._rows

    def taken(self, name: str) -> bool:
        """Whether an instance has ``name``, or is being created with it."""
        return name in self._rows or name in self._creating

    def reserve(self, name: str) -> None:
        """Hold ``name`` while it is created elsewhere first (on other nodes)."""
        self._creating.add(name)

    def unreserve(self, name: str) -> None:
        self._creating.discard(name)

    def count(self) -> int:
        """The instances that live here, those being created included."""
        here = sum(1 for inst in self._rows.values() if self._local(inst))
        return here + len(self._creating)

    def running_count(self, exclude: str | None = None) -> int:
        """Instances holding a slot of ``max_running_instances`` (running or restarting)."""
        return sum(
            inst.status in OCCUPYING and self._local(inst)
            for name, inst in self._rows.items()
            if name != exclude
        )

    def address(self, name: str) -> tuple[str, int]:
        """Where the backend of ``name`` listens, from its current options (never cached)."""
        options = self.get(name).options.backend_options
        assert options.port is not None, "every instance holds a port"
        return connect_host(options.host or LOOPBACK), options.port

    async def add(
        self,
        name: str,
        options: Options,
        then: Callable[[Instance], None],
        *,
        reserved: bool = False,
    ) -> Instance:
        """Write a new stopped instance, with a port of its own if it lives here;
        ``then(instance)`` once it is written. ``InstanceExists`` if the name is taken
        (unless ``reserved`` for this very creation)."""
        if not reserved and self.taken(name):
            raise InstanceExists(name)
        inst = Instance(name=name, created=int(time.time()), status=Status.STOPPED, options=options)
        if self._local(inst):
            port = self.ports.claim(name, options.backend_options.port)
            inst = inst.with_options(with_port(options, port))

        def created() -> None:
            self._creating.discard(name)
            self._rows[name] = inst
            then(inst)

        def refused() -> None:
            self._creating.discard(name)
            self.ports.release(name)

        self._creating.add(name)
        await self._store.save(inst, then=created, undo=refused)
        row_id = (await self._store.call(lambda: self._db.instance_ids([name]))).get(name, 0)
        if name in self._rows:  # the id the database gave the new row
            self._rows[name] = dataclasses.replace(self._rows[name], id=row_id)
        return self._rows.get(name, inst)

    async def write(
        self,
        inst: Instance,
        *,
        then: Callable[[], None] | None = None,
        undo: Callable[[], None] | None = None,
    ) -> None:
        """Write ``inst``, then take it (and run ``then``); raise if the write fails (after
        running ``undo``). Both run even if the caller is cancelled."""

        def written() -> None:
            self._rows[inst.name] = inst
            if then is not None:
                then()

        await self._store.save(inst, then=written, undo=undo)

    async def ensure_port(self, name: str) -> None:
        """Give ``name`` a port of its own if it has none (the range was full at load)."""
        fixed = self.ports.fix(self.get(name))
        if fixed is not None:
            await self.write(fixed, undo=lambda: self.ports.release(name))

    async def remove(self, name: str, then: Callable[[], None]) -> None:
        """Delete the row of ``name`` and free its ports; ``then`` once it is done."""

        def deleted() -> None:
            del self._rows[name]
            self.ports.release(name)
            then()

        await self._store.delete(name, then=deleted)

    def take_stored(self, inst: Instance) -> Instance:
        """Take a row another writer stored (a replica over the same database) into
        memory, without writing it; one that lives here gets a port of its own. The
        instance as held now."""
        if self._local(inst):
            port = self.ports.claim(inst.name, inst.options.backend_options.port)
            inst = inst.with_options(with_port(inst.options, port))
        self._rows[inst.name] = inst
        return inst

    def drop(self, name: str) -> None:
        """Forget a row another writer deleted, without writing anything."""
        self._rows.pop(name, None)
        self.ports.release(name)

    def being_created(self, name: str) -> bool:
        return name in self._creating

    def take_status(self, name: str, status: Status, failure: Failure | None) -> None:
        """Take ``status`` and ``failure`` (written soon) if they moved."""
        inst = self._rows[name]
        if inst.status is not status:
            inst = inst.with_status(status)
        if inst is not self._rows[name] or inst.failure != failure:
            self._rows[name] = inst = inst.with_failure(failure)
            self._store.defer_save(inst)

    def copy_status(self, name: str, status: Status, failure: Failure | None) -> None:
        """Take ``status`` and ``failure`` as another node reports them (no transition
        is checked here: the node checked its own), written soon."""
        inst = self._rows.get(name)
        if inst is not None and (inst.status is not status or inst.failure != failure):
            self._rows[name] = inst = dataclasses.replace(inst, status=status, failure=failure)
            self._store.defer_save(inst)

    def forget_status(self, name: str) -> None:
        """Take ``stopped`` in memory only: the row keeps its status until the next write
        (a boot resuming an instance)."""
        self._rows[name] = self._rows[name].with_status(Status.STOPPED)

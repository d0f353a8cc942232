"""What the instance manager answers without changing anything.

``ManagerReads`` is the read side of ``InstanceManager`` (``manager.py``): the instances,
their owners' state, where they listen and live, and the settings in effect. The manager
keeps the state it reads; this class only declares it.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from pathlib import Path

from llamactl.config import AppConfig, InstancesConfig
from llamactl.errors import InstanceNotFound, LlamactlError
from llamactl.instance import Instance
from llamactl.manager.instance_process import Environment, InstanceProcess
from llamactl.manager.nodes import Nodes
from llamactl.manager.persistence import Persistence, PersistenceState
from llamactl.manager.registry import Registry
from llamactl.manager.remote import RemoteInstance
from llamactl.manager.remotes import Remotes
from llamactl.manager.runtime import RuntimeInfo, Signal, Timings

__all__ = ["ManagerReads", "Owner"]

Owner = InstanceProcess | RemoteInstance


class ManagerReads:
    """The read side of the manager (see the module docstring)."""

    nodes: Nodes
    _env: Environment
    _store: Persistence
    _registry: Registry
    _remotes: Remotes
    _processes: dict[str, Owner]
    _changes: Signal

    @property
    def clock(self) -> Callable[[], float]:
        return self._env.clock

    @property
    def timings(self) -> Timings:
        return self._env.timings

    @property
    def changes(self) -> Signal:
        """Notified whenever any instance changes: notify it too when something a waiter
        of ``wait_any`` looks at changes."""
        return self._changes

    @property
    def settings(self) -> InstancesConfig:
        """The ``instances`` settings in effect."""
        return self._env.config.instances

    @property
    def _config(self) -> AppConfig:
        return self._env.config

    def list(self) -> list[Instance]:
        """Every instance, sorted by name."""
        return self._registry.list()

    def local_list(self) -> builtins.list[Instance]:
        """The instances that live here (a backend of this node runs them), by name."""
        return [inst for inst in self._registry.list() if self._lives_here(inst)]

    def is_remote(self, name: str) -> bool:
        """Whether ``name`` lives on other nodes only (cheap: the proxy asks often)."""
        return isinstance(self._processes.get(name), RemoteInstance)

    def remote(self, name: str) -> RemoteInstance:
        """The copies of ``name`` on other nodes; ``InstanceNotFound`` if it has none."""
        self._process(name)
        copies = self._remotes.of(name)
        if copies is None:
            raise InstanceNotFound(name)
        return copies

    def copies(self, name: str) -> RemoteInstance | None:
        """The copies of ``name`` on other nodes, if it has any."""
        return self._remotes.of(name)

    async def refresh(self, name: str) -> None:
        """Copy in what the nodes of ``name`` say of their copies now; raises if none
        answers for an instance that lives on other nodes only."""
        copies = self._remotes.of(name)
        if copies is not None:
            try:
                await copies.refresh()
            except LlamactlError:
                if self.is_remote(name):
                    raise

    async def refresh_all(self) -> None:
        """Copy in every copy's state (one call per node; a node down keeps its last)."""
        await self._remotes.refresh_all()

    def _lives_here(self, inst: Instance) -> bool:
        return not self.nodes.is_remote(inst.options.nodes)

    def get(self, name: str) -> Instance:
        return self._registry.get(name)

    def exists(self, name: str) -> bool:
        return self._registry.exists(name)

    def is_ready(self, name: str) -> bool:
        """Whether requests may be forwarded to ``name`` now (cheap: the proxy asks often)."""
        owner = self._processes.get(name)
        return owner is not None and owner.ready

    def address(self, name: str) -> tuple[str, int]:
        """Where the backend of ``name`` listens, from its current options (never cached)."""
        return self._registry.address(name)

    def running_count(self, exclude: str | None = None) -> int:
        """Instances holding a slot of ``max_running_instances`` (running or restarting)."""
        return self._registry.running_count(exclude)

    def info(self, name: str) -> RuntimeInfo:
        """Readiness, process, failure and request accounting of an instance."""
        return self._process(name).info(self.clock())

    def log_path(self, name: str) -> Path:
        return self._env.logs_dir / f"{name}.log"

    def persistence(self) -> PersistenceState:
        """How many status changes wait to be written, and why the last write failed."""
        return self._store.state()

    def owner(self, name: str) -> InstanceProcess:
        """The owner of the backend of ``name``, to follow its log and status (start and
        stop go through the manager, which keeps the limits and the ports);
        ``InstanceNotFound`` for an instance that lives on other nodes (``remote``)."""
        owner = self._process(name)
        if not isinstance(owner, InstanceProcess):
            raise InstanceNotFound(name)
        return owner

    def _process(self, name: str) -> Owner:
        try:
            return self._processes[name]
        except KeyError:
            raise InstanceNotFound(name) from None

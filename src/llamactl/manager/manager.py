"""The instance manager: the registry of instances, kept true to the database.

Owns the in-memory registry and the rules around it (names, limits, defaults, what may be
deleted). It depends on a ``Database`` injected by the caller, never on a concrete store.
Processes are not started here yet.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping

from llamactl.backends import BackendType
from llamactl.config import AppConfig
from llamactl.database import Database
from llamactl.errors import Conflict, InstanceExists, InstanceNotFound, LimitReached
from llamactl.instance import Instance, InstanceDefaults, Options, Status, validate_name

__all__ = ["InstanceManager", "instance_defaults"]

# Statuses in which a backend process may be alive: such an instance cannot be deleted.
_ACTIVE = frozenset({Status.RUNNING, Status.RESTARTING, Status.SHUTTING_DOWN})


def instance_defaults(config: AppConfig, backend_type: BackendType) -> InstanceDefaults:
    """The ``instances.default_*`` settings, and the backend's docker default."""
    settings = config.instances
    return InstanceDefaults(
        auto_restart=settings.default_auto_restart,
        max_restarts=settings.default_max_restarts,
        restart_delay=settings.default_restart_delay,
        on_demand_start=settings.default_on_demand_start,
        idle_timeout=settings.default_idle_timeout,
        docker_enabled=_docker_default(config, backend_type),
    )


def _docker_default(config: AppConfig, backend_type: BackendType) -> bool:
    backend = {
        BackendType.LLAMA_CPP: config.backends.llama_cpp,
        BackendType.VLLM: config.backends.vllm,
        BackendType.MLX_LM: config.backends.mlx,
    }[backend_type]
    return backend.docker is not None and backend.docker.enabled


class InstanceManager:
    """Creates, reads, updates and deletes instances through the injected database."""

    def __init__(self, config: AppConfig, db: Database) -> None:
        self._config = config
        self._db = db
        self._instances: dict[str, Instance] = {}
        self._lock = threading.RLock()

    def load(self) -> None:
        """Read every stored instance into the registry (called once at startup)."""
        loaded = {inst.name: inst for inst in self._db.load_all()}
        with self._lock:
            self._instances = loaded

    def defaults_for(self, backend_type: BackendType) -> InstanceDefaults:
        return instance_defaults(self._config, backend_type)

    def list(self) -> list[Instance]:
        """Every instance, sorted by name."""
        with self._lock:
            return [self._instances[name] for name in sorted(self._instances)]

    def get(self, name: str) -> Instance:
        with self._lock:
            return self._require(name)

    def create(self, name: str, options: Options | Mapping[str, object]) -> Instance:
        """Create a stopped instance with the configured defaults filled in."""
        validate_name(name)
        options = self._complete(options)
        with self._lock:
            if name in self._instances:
                raise InstanceExists(name)
            self._check_instance_limit()
            inst = Instance(
                name=name, created=int(time.time()), status=Status.STOPPED, options=options
            )
            self._db.save(inst)
            self._instances[name] = inst
            return inst

    def update(self, name: str, options: Options | Mapping[str, object]) -> Instance:
        """Replace the options of an instance. Its nodes are kept: they never change."""
        options = self._complete(options)
        with self._lock:
            current = self._require(name)
            kept = dataclasses.replace(options, nodes=current.options.nodes)
            updated = current.with_options(kept)
            self._db.save(updated)
            self._instances[name] = updated
            return updated

    def delete(self, name: str) -> None:
        """Delete an instance; refused while its backend may be running."""
        with self._lock:
            inst = self._require(name)
            if inst.status in _ACTIVE:
                raise Conflict(
                    f"instance {name} is {inst.status.value}: stop it before deleting it"
                )
            self._db.delete(name)
            del self._instances[name]

    def _complete(self, options: Options | Mapping[str, object]) -> Options:
        if not isinstance(options, Options):
            options = Options.from_json(options)
        return options.with_defaults(self.defaults_for(options.backend_type))

    def _require(self, name: str) -> Instance:
        try:
            return self._instances[name]
        except KeyError:
            raise InstanceNotFound(name) from None

    def _check_instance_limit(self) -> None:
        limit = self._config.instances.max_instances
        if limit >= 0 and len(self._instances) >= limit:
            raise LimitReached(f"maximum number of instances ({limit}) reached")

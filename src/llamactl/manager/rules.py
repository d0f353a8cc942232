"""The manager's rules about options and limits: pure functions of the settings."""

from __future__ import annotations

from collections.abc import Mapping

from llamactl.backends import BackendType, instance_section
from llamactl.config import AppConfig
from llamactl.errors import LimitReached
from llamactl.instance import InstanceDefaults, Options
from llamactl.manager.instance_process import backend_config

__all__ = ["check_instance_limit", "check_running_limit", "complete", "instance_defaults"]


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


def complete(config: AppConfig, options: Options | Mapping[str, object]) -> Options:
    """``options`` validated, refused if no configuration section can run them, and
    completed with the configured defaults."""
    if not isinstance(options, Options):
        options = Options.from_json(options)
    instance_section(config.backends, options.backend_options)  # refuses if none
    return options.with_defaults(instance_defaults(config, options.backend_type))


def check_instance_limit(config: AppConfig, count: int) -> None:
    """``LimitReached`` if ``count`` instances (those being created included) are the most
    ``instances.max_instances`` allows."""
    limit = config.instances.max_instances
    if limit >= 0 and count >= limit:
        raise LimitReached(f"maximum number of instances ({limit}) reached")


def check_running_limit(config: AppConfig, running: int) -> None:
    """``LimitReached`` if ``running`` instances are the most ``max_running_instances``
    allows."""
    limit = config.instances.max_running_instances
    if limit >= 0 and running >= limit:
        raise LimitReached(f"maximum number of running instances ({limit}) reached: stop one first")

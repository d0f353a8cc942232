"""Reloading the configuration on SIGHUP: what changed, what applies, what needs a restart.

``Reloader.reload`` reads the configuration again the way it was read at start (the same
file, ``.env`` and environment), compares it with the running one setting by setting and
hands the new one to the application (``LlamactlApp.reconfigure``). Keys, limits, response
headers and instance defaults apply at once; backend commands and log rotation at each
instance's next start; the rest (addresses, folders, the database, CORS, nodes) only at a
restart: each such setting is named in the log and keeps its running value until then. A
configuration that cannot be loaded is logged and the running one is kept. Secrets never
reach a log line: only their names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel

from llamactl import auth
from llamactl.config import AppConfig, registry
from llamactl.errors import LlamactlError

__all__ = ["Change", "Effect", "Reconfigurable", "Reloader", "changes", "effective"]

logger = logging.getLogger("llamactl")


class Effect(StrEnum):
    """When a changed setting takes effect."""

    NOW = "applied"
    NEXT_START = "applies at each instance's next start"
    RESTART = "needs a restart of llamactl to take effect"


# Settings (dotted, "*" for any backend) that take effect without a restart.
_NOW = (
    "server.response_headers",
    "server.max_request_body_mb",
    "server.log_level",
    "backends.*.response_headers",
    "instances.max_instances",
    "instances.max_running_instances",
    "instances.enable_lru_eviction",
    "instances.default_*",
    "instances.on_demand_start_timeout",
    "instances.max_queued_requests",
    "auth.*",
)
_NEXT_START = (
    "backends.*.command",
    "backends.*.args",
    "backends.*.environment",
    "backends.*.docker.*",
    "backends.*.cache_dir",
    "instances.log_rotation_*",
)


@dataclass(frozen=True)
class Change:
    """One setting whose value differs between the running and the reloaded config."""

    key: str
    effect: Effect


class Reconfigurable(Protocol):
    """What takes a reloaded configuration (``LlamactlApp``)."""

    def reconfigure(self, config: AppConfig, keys: auth.Keys) -> None: ...


def _effect(key: str) -> Effect:
    for patterns, effect in ((_NOW, Effect.NOW), (_NEXT_START, Effect.NEXT_START)):
        if any(_matches(pattern, key) for pattern in patterns):
            return effect
    return Effect.RESTART


def _matches(pattern: str, key: str) -> bool:
    parts, wanted = key.split("."), pattern.split(".")
    if len(wanted) > len(parts):
        return False
    for part, want in zip(parts, wanted, strict=False):
        if want.endswith("*") and part.startswith(want[:-1]):
            continue
        if part != want:
            return False
    return len(wanted) == len(parts) or wanted[-1].endswith("*")


def _value(config: AppConfig, key: registry.Key) -> object:
    value: object = config
    for part in key:
        value = value[part] if isinstance(value, dict) else getattr(value, part.replace("-", "_"))
    return value


def effective(old: AppConfig, new: AppConfig, found: list[Change]) -> AppConfig:
    """``new`` with the settings that need a restart kept at their running values."""
    config, sources = new, dict(new.sources)
    for change in found:
        if change.effect is not Effect.RESTART:
            continue
        key = tuple(change.key.split("."))
        config = _replaced(config, key, _value(old, key))
        sources.pop(change.key, None)
        if change.key in old.sources:
            sources[change.key] = old.sources[change.key]
    return config.model_copy(update={"sources": sources})


def _replaced(model: BaseModel, key: registry.Key, value: object) -> Any:
    attribute = key[0].replace("-", "_")
    if len(key) > 1:
        value = _replaced(getattr(model, attribute), key[1:], value)
    return model.model_copy(update={attribute: value})


def changes(old: AppConfig, new: AppConfig) -> list[Change]:
    """Every setting whose value differs, in registry order, with when it applies."""
    found = [
        Change(registry.dotted(setting.key), _effect(registry.dotted(setting.key)))
        for setting in registry.SETTINGS
        if registry.WILDCARD not in setting.key
        and _value(old, setting.key) != _value(new, setting.key)
    ]
    found += _custom_changes(old, new)
    if old.nodes != new.nodes:
        found.append(Change("nodes", Effect.RESTART))
    return found


def _custom_changes(old: AppConfig, new: AppConfig) -> list[Change]:
    """The custom backend entries added, removed or edited; each applies at a next start."""
    before, after = old.backends.custom, new.backends.custom
    return [
        Change(f"backends.custom.{name}", Effect.NEXT_START)
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]


class Reloader:
    """Reloads the configuration into a running application, one reload at a time.

    ``load`` reads the configuration as at start; ``current`` returns the running one.
    """

    def __init__(
        self,
        load: Callable[[], AppConfig],
        current: Callable[[], AppConfig],
        target: Reconfigurable,
    ) -> None:
        self._load = load
        self._current = current
        self._target = target
        self._lock = asyncio.Lock()

    async def reload(self) -> list[Change] | None:
        """Reload; the changes, or ``None`` if the new configuration was refused."""
        async with self._lock:
            logger.info("SIGHUP: reloading the configuration")
            try:
                config, keys, found = await asyncio.to_thread(self._read, self._current())
            except LlamactlError as exc:
                logger.error("configuration not reloaded, the running one is kept: %s", exc.message)
                return None
            self._target.reconfigure(config, keys.keys)
            _report(found)
            if any(change.key.startswith("auth.") for change in found):
                for message in keys.messages:  # they name key files, never keys
                    logger.info("%s", message)
            return found

    def _read(self, running: AppConfig) -> tuple[AppConfig, auth.LoadedKeys, list[Change]]:
        loaded = self._load()
        found = changes(running, loaded)
        config = effective(running, loaded, found)
        return config, auth.load_keys(config), found


def _report(found: list[Change]) -> None:
    for change in found:
        log = logger.warning if change.effect is Effect.RESTART else logger.info
        log("configuration: %s changed: %s", change.key, change.effect.value)
    applied = sum(change.effect is not Effect.RESTART for change in found)
    logger.info(
        "configuration reloaded: %d changed, %d applied, %d need a restart",
        len(found),
        applied,
        len(found) - applied,
    )

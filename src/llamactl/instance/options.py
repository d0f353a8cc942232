"""The options of one instance: which backend, its typed options and the llamactl settings.

``Options.from_json`` reads the create/update request body (and the ``options`` object of
a stored instance) strictly: unknown keys, wrong types and out-of-range values raise
``InvalidOptions`` naming the key and the value, and so does a string that is not valid
Unicode text (a lone surrogate), which could be stored but never shown again. Unset
settings stay ``None`` until ``with_defaults`` fills them from configuration. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from llamactl.backends import (
    OPTIONS_CLASSES,
    BackendOptions,
    BackendType,
    parse_backend_options,
    parse_backend_type,
    spec_for,
)
from llamactl.backends.values import (
    check_bool,
    check_int,
    check_str,
    check_str_list,
    check_str_map,
    describe,
    expected,
    invalid,
    nested,
)
from llamactl.errors import InvalidOptions
from llamactl.instance.text import lone_surrogate

__all__ = ["InstanceDefaults", "Options"]

_T = TypeVar("_T")

# Every key of the JSON form, in the order ``to_json`` writes them.
_KEYS = (
    "nodes",
    "backend_type",
    "backend_options",
    "auto_restart",
    "max_restarts",
    "restart_delay",
    "on_demand_start",
    "idle_timeout",
    "loading_progress",
    "environment",
    "docker_enabled",
    "command_override",
)
_KEY_LIST = ", ".join(_KEYS)
_BACKEND_CHOICES = "one of " + ", ".join(repr(str(kind)) for kind in BackendType)
_FORBIDDEN_IN_ENV_NAME = frozenset("=\x00")
_NO_ENVIRONMENT: MappingProxyType[str, str] = MappingProxyType({})


# The largest value of an integer instance setting: they are stored as 32-bit-safe
# INTEGER columns, and nothing meaningful needs more.
MAX_SETTING = 2**31 - 1


@dataclass(frozen=True)
class InstanceDefaults:
    """The values configuration supplies for settings an instance leaves unset."""

    auto_restart: bool
    max_restarts: int
    restart_delay: int
    on_demand_start: bool
    idle_timeout: int
    docker_enabled: bool


@dataclass(frozen=True, kw_only=True)
class Options:
    """Everything needed to run one instance, validated; immutable and safe to share.

    ``None`` means "not given, use the configured default" for the six settings that
    ``InstanceDefaults`` covers, and for ``loading_progress``, which stays ``None`` (the
    proxy reads ``instances.loading_progress`` for it at each request). ``nodes`` is kept
    sorted and unique; ``environment`` is a read-only mapping (``dict(options.environment)``
    gives a copy). Construction checks ranges and combinations, so ``dataclasses.replace``
    copies are validated too.
    """

    backend_type: BackendType
    backend_options: BackendOptions
    auto_restart: bool | None = None
    max_restarts: int | None = None  # -1 unlimited, 0 never, N at most N in a row
    restart_delay: int | None = None  # seconds
    on_demand_start: bool | None = None
    idle_timeout: int | None = None  # minutes; 0 never stops an idle instance
    loading_progress: bool | None = None  # SSE comments while a streamed request waits
    docker_enabled: bool | None = None
    command_override: str | None = None
    nodes: tuple[str, ...] = ()
    environment: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalised in place; this runs for every stored row that load_all reads, so the
        # usual empty values take the short way.
        if self.nodes or type(self.nodes) is not tuple:
            object.__setattr__(self, "nodes", tuple(sorted(set(self.nodes))))
        environment = self.environment
        if environment:
            frozen_env = MappingProxyType(dict(sorted(environment.items())))
        else:
            frozen_env = _NO_ENVIRONMENT
        object.__setattr__(self, "environment", frozen_env)
        if self.command_override == "":
            object.__setattr__(self, "command_override", None)
        self._check_backend()
        self._check_ranges()
        self._check_combinations()

    def _check_backend(self) -> None:
        wanted = OPTIONS_CLASSES[self.backend_type]
        if not isinstance(self.backend_options, wanted):
            got = type(self.backend_options).__name__
            raise InvalidOptions(
                f"backend_options: expected {wanted.__name__} for backend type "
                f"'{self.backend_type}', got {got}",
                field="backend_options",
                value=self.backend_options,
            )

    def _check_ranges(self) -> None:
        if self.max_restarts is not None and not -1 <= self.max_restarts <= MAX_SETTING:
            what = f"-1 (unlimited), 0 (never) or a count up to {MAX_SETTING}"
            raise expected("max_restarts", what, self.max_restarts)
        if self.restart_delay is not None and not 0 <= self.restart_delay <= MAX_SETTING:
            what = f"a number of seconds from 0 to {MAX_SETTING}"
            raise expected("restart_delay", what, self.restart_delay)
        if self.idle_timeout is not None and not 0 <= self.idle_timeout <= MAX_SETTING:
            what = f"a number of minutes from 0 to {MAX_SETTING}"
            raise expected("idle_timeout", what, self.idle_timeout)

    def _check_combinations(self) -> None:
        if self.docker_enabled and not spec_for(self.backend_type).supports_docker:
            detail = f"the {self.backend_type} backend cannot run in docker, got true"
            raise invalid("docker_enabled", detail, True)
        if self.docker_enabled and self.command_override is not None:
            detail = f"cannot be combined with docker_enabled true, got {self.command_override!r}"
            raise invalid("command_override", detail, self.command_override)

    # -- JSON ------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Options:
        """Validate a create/update request body (or a stored ``options`` object)."""
        if not isinstance(data, Mapping):
            raise expected("options", "a JSON object", data)
        bad_text = lone_surrogate(data)
        if bad_text is not None:
            raise invalid(*bad_text, None)
        _reject_unknown_keys(data)
        _require(data, "backend_type", _BACKEND_CHOICES)
        backend_type = parse_backend_type(data["backend_type"])
        _require(data, "backend_options", "an object of backend options ({} for none)")
        return cls(
            backend_type=backend_type,
            backend_options=_backend_options(data["backend_options"], backend_type),
            auto_restart=_optional(data, "auto_restart", check_bool),
            max_restarts=_optional(data, "max_restarts", check_int),
            restart_delay=_optional(data, "restart_delay", check_int),
            on_demand_start=_optional(data, "on_demand_start", check_bool),
            idle_timeout=_optional(data, "idle_timeout", check_int),
            loading_progress=_optional(data, "loading_progress", check_bool),
            docker_enabled=_optional(data, "docker_enabled", check_bool),
            command_override=_optional(data, "command_override", check_str),
            nodes=_nodes(data.get("nodes")),
            environment=_environment(data.get("environment")),
        )

    def to_json(self) -> dict[str, object]:
        """The JSON form: unset settings and empty collections are left out."""
        values: dict[str, object] = {
            "nodes": list(self.nodes) or None,
            "backend_type": str(self.backend_type),
            "backend_options": self.backend_options.to_json(),
            "auto_restart": self.auto_restart,
            "max_restarts": self.max_restarts,
            "restart_delay": self.restart_delay,
            "on_demand_start": self.on_demand_start,
            "idle_timeout": self.idle_timeout,
            "loading_progress": self.loading_progress,
            "environment": dict(self.environment) or None,
            "docker_enabled": self.docker_enabled,
            "command_override": self.command_override,
        }
        return {key: values[key] for key in _KEYS if values[key] is not None}

    # -- defaults --------------------------------------------------------------------------

    def with_defaults(self, defaults: InstanceDefaults) -> Options:
        """A copy with every unset setting taken from ``defaults``; set values are kept.

        ``docker_enabled`` stays off for a backend without docker mode (mlx_lm) and for an
        instance with a ``command_override`` (an explicit command means a native run).
        """
        docker = self.docker_enabled
        if docker is None:
            runs_native = not spec_for(self.backend_type).supports_docker or self.command_override
            docker = False if runs_native else defaults.docker_enabled
        return dataclasses.replace(
            self,
            auto_restart=_pick(self.auto_restart, defaults.auto_restart),
            max_restarts=_pick(self.max_restarts, defaults.max_restarts),
            restart_delay=_pick(self.restart_delay, defaults.restart_delay),
            on_demand_start=_pick(self.on_demand_start, defaults.on_demand_start),
            idle_timeout=_pick(self.idle_timeout, defaults.idle_timeout),
            docker_enabled=docker,
        )


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _reject_unknown_keys(data: Mapping[str, object]) -> None:
    for key in data:
        if key not in _KEYS:
            value = data[key]
            detail = f"unknown instance option (value {describe(value)}); known: {_KEY_LIST}"
            raise invalid(str(key), detail, value)


def _optional(
    data: Mapping[str, object], key: str, check: Callable[[str, object], _T]
) -> _T | None:
    value = data.get(key)
    return None if value is None else check(key, value)


def _require(data: Mapping[str, object], key: str, what: str) -> None:
    if key not in data:
        raise invalid(key, f"this key is required, expected {what}", None)


def _backend_options(value: object, backend_type: BackendType) -> BackendOptions:
    if not isinstance(value, Mapping):
        raise expected("backend_options", "a JSON object", value)
    try:
        return parse_backend_options(backend_type, value)
    except InvalidOptions as exc:
        raise nested(exc, "backend_options") from exc


def _nodes(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    names = check_str_list("nodes", value)
    for index, name in enumerate(names):
        if not name:
            raise expected(f"nodes[{index}]", "a node name", name)
    return tuple(names)


def _environment(value: object) -> dict[str, str]:
    if value is None:
        return {}
    variables = check_str_map("environment", value)
    for name in variables:
        if not name or _FORBIDDEN_IN_ENV_NAME.intersection(name):
            raise expected("environment", "variable names without '='", name)
    return variables

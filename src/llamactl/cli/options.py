"""What ``--set``, ``--extra`` and ``--unset`` of ``llamactl instances create|edit`` change.

A ``--set`` key names either a typed option of the instance's backend, in any spelling
(``ctx_size``, ``ctx-size``, ``--ctx-size``, ``-c``), or an instance setting
(``restart_delay``, ``restart-delay``); anything else is refused with the closest known
names and a pointer to ``--extra``, which passes a flag llamactl does not know to the
backend unchanged. ``--unset`` removes a typed option, a setting or an extra argument.

``instance_settings`` declares the flags that create and edit share; ``Changes`` is what
they ask for. The functions change an instance's options as the API's JSON
(``{"backend_type": ..., "backend_options": {...}, ...}``) in place; the server still
validates the values. They raise ``click.BadParameter`` naming the option and the key.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from llamactl.backends import BackendOptionsBase

__all__ = [
    "INSTANCE_SETTINGS",
    "Changes",
    "apply_extras",
    "apply_settings",
    "apply_unsets",
    "instance_settings",
]

F = TypeVar("F", bound=Callable[..., object])

# The settings of an instance besides its backend and the backend's options.
INSTANCE_SETTINGS = (
    "auto_restart",
    "max_restarts",
    "restart_delay",
    "on_demand_start",
    "idle_timeout",
    "loading_progress",
    "environment",
    "docker_enabled",
    "command_override",
    "nodes",
)
_FIXED = ("backend_type", "backend_options")
_EXTRA_ARGS = "extra_args"
_SUGGESTIONS = 3
JsonObject = dict[str, object]


def _options_class(backend_type: object) -> type[BackendOptionsBase]:
    from llamactl.backends import options_class
    from llamactl.errors import InvalidOptions

    try:
        return options_class(str(backend_type))
    except InvalidOptions as exc:
        raise click.UsageError(exc.message) from exc


def _normal(key: str) -> str:
    return key.lstrip("-").replace("-", "_")


def _setting(key: str) -> str | None:
    name = _normal(key)
    return name if name in INSTANCE_SETTINGS else None


def _backend_options(options: JsonObject) -> dict[str, object]:
    current = options.get("backend_options")
    backend_options = dict(current) if isinstance(current, Mapping) else {}
    options["backend_options"] = backend_options
    return backend_options


def _extras(backend_options: Mapping[str, object]) -> dict[str, object]:
    current = backend_options.get(_EXTRA_ARGS)
    return dict(current) if isinstance(current, Mapping) else {}


def _store_extras(backend_options: dict[str, object], extras: Mapping[str, object]) -> None:
    if extras:
        backend_options[_EXTRA_ARGS] = dict(extras)
    else:
        backend_options.pop(_EXTRA_ARGS, None)


def _suggestions(cls: type[BackendOptionsBase], key: str) -> list[str]:
    """The known names closest to ``key``: fields, aliases (with their field), settings."""
    shown = {name: name for name in (*cls.FIELD_ORDER, *INSTANCE_SETTINGS)}
    shown.update({alias: f"{alias} ({field})" for alias, field in cls.ALIASES.items()})
    close = difflib.get_close_matches(_normal(key), list(shown), n=_SUGGESTIONS, cutoff=0.6)
    return [shown[name] for name in close]


def _unknown(cls: type[BackendOptionsBase], key: str) -> click.BadParameter:
    if _normal(key) in _FIXED:
        return click.BadParameter(
            f"{key!r} cannot be set: the backend of an instance is chosen at create "
            "(--backend), its options are set one by one",
            param_hint="--set",
        )
    close = _suggestions(cls, key)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    flag = key.lstrip("-")
    return click.BadParameter(
        f"unknown {cls.BACKEND_TYPE} option or instance setting {key!r}{hint}; to pass a "
        f"flag llamactl does not know to the backend unchanged, use --extra {flag}=VALUE",
        param_hint="--set",
    )


def _drop_extras_for(
    cls: type[BackendOptionsBase], backend_options: dict[str, object], field: str
) -> None:
    """Remove extra arguments that spell typed option ``field`` (so it is passed once)."""
    extras = _extras(backend_options)
    kept = {key: value for key, value in extras.items() if cls.field_for(key) != field}
    if kept != extras:
        _store_extras(backend_options, kept)


def apply_settings(options: JsonObject, settings: Iterable[tuple[str, object]]) -> None:
    """Apply ``--set KEY=VALUE`` pairs: typed backend options and instance settings."""
    cls = _options_class(options.get("backend_type"))
    backend_options = _backend_options(options)
    for key, value in settings:
        field = cls.field_for(key)
        setting = _setting(key)
        if field is not None:
            backend_options[field] = value
            _drop_extras_for(cls, backend_options, field)
        elif setting is not None:
            options[setting] = value
        else:
            raise _unknown(cls, key)


def apply_extras(options: JsonObject, extras: Iterable[tuple[str, str]]) -> None:
    """Apply ``--extra FLAG[=VALUE]``: passed to the backend as ``--FLAG VALUE``, verbatim."""
    cls = _options_class(options.get("backend_type"))
    backend_options = _backend_options(options)
    current = _extras(backend_options)
    for key, value in extras:
        flag = key.removeprefix("--")
        field = cls.field_for(flag)
        if field is not None:
            raise click.BadParameter(
                f"{key!r} is the {cls.BACKEND_TYPE} option {field}: use --set {field}=VALUE",
                param_hint="--extra",
            )
        if not flag or flag.startswith("-"):
            raise click.BadParameter(
                f"expected a long flag name such as my-flag or --my-flag, got {key!r}",
                param_hint="--extra",
            )
        current[flag] = value
    _store_extras(backend_options, current)


def apply_unsets(options: JsonObject, keys: Iterable[str], name: str) -> None:
    """Apply ``--unset KEY``: a typed option, an instance setting or an extra argument."""
    cls = _options_class(options.get("backend_type"))
    backend_options = _backend_options(options)
    for key in keys:
        if not _unset_one(cls, options, backend_options, key):
            raise click.BadParameter(
                f"{name} has no option, setting or extra argument {key!r} to remove"
                f" (set: {_set_names(options, backend_options)})",
                param_hint="--unset",
            )


def _unset_one(
    cls: type[BackendOptionsBase],
    options: JsonObject,
    backend_options: dict[str, object],
    key: str,
) -> bool:
    field = cls.field_for(key)
    setting = _setting(key)
    extras = _extras(backend_options)
    flag = key.lstrip("-")
    if field is not None and (field in backend_options or _spelled_in(cls, extras, field)):
        backend_options.pop(field, None)
        _drop_extras_for(cls, backend_options, field)
        return True
    if setting is not None and setting in options:
        del options[setting]
        return True
    if flag in extras:
        del extras[flag]
        _store_extras(backend_options, extras)
        return True
    return False


def _spelled_in(cls: type[BackendOptionsBase], extras: Mapping[str, object], field: str) -> bool:
    return any(cls.field_for(key) == field for key in extras)


def _set_names(options: Mapping[str, object], backend_options: Mapping[str, object]) -> str:
    names = [key for key in backend_options if key != _EXTRA_ARGS]
    names += [key for key in INSTANCE_SETTINGS if key in options]
    names += [f"--{key}" for key in _extras(backend_options)]
    return ", ".join(names) or "nothing"


# -- the flags of create and edit ---------------------------------------------------------


def _pairs(values: tuple[str, ...], option: str) -> Iterator[tuple[str, str]]:
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        yield key.strip(), value


def _parse_settings(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> object:
    """``--set key=value``: the value as JSON when it parses (4096, true), else the text."""
    settings: list[tuple[str, object]] = []
    for key, text in _pairs(values, "--set"):
        try:
            settings.append((key, json.loads(text)))
        except ValueError:
            settings.append((key, text))
    return settings


def _parse_extras(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> object:
    """``--extra flag=value`` or ``--extra flag`` (a flag without a value)."""
    extras: list[tuple[str, str]] = []
    for item in values:
        key, _, value = item.partition("=")
        if not key.strip():
            raise click.BadParameter(f"expected FLAG[=VALUE], got {item!r}", param_hint="--extra")
        extras.append((key.strip(), value))
    return extras


def _parse_env(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> object:
    return dict(_pairs(values, "--env"))


def instance_settings(command: F) -> F:
    """The options shared by create and edit."""
    decorators = [
        click.option("--model", help="The model (backend option `model`)."),
        click.option(
            "--set",
            "settings",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_parse_settings,
            help="A backend option (ctx_size, ctx-size, --ctx-size or -c) or an instance "
            "setting (restart_delay, ...); VALUE is read as JSON when it parses (4096, "
            "true), else as text. Repeatable.",
        ),
        click.option(
            "--extra",
            "extras",
            multiple=True,
            metavar="FLAG[=VALUE]",
            callback=_parse_extras,
            help="A flag llamactl does not know, passed to the backend as --FLAG VALUE "
            "unchanged. Repeatable.",
        ),
        click.option(
            "--on-demand/--no-on-demand", default=None, help="Start on the first request."
        ),
        click.option(
            "--auto-restart/--no-auto-restart", default=None, help="Restart when it exits."
        ),
        click.option(
            "--max-restarts",
            type=click.IntRange(min=-1),
            help="Restarts in a row before giving up (-1 unlimited, 0 never).",
        ),
        click.option(
            "--restart-delay", type=click.IntRange(min=0), help="Seconds before a restart."
        ),
        click.option(
            "--idle-timeout", type=click.IntRange(min=0), help="Minutes idle before a stop."
        ),
        click.option(
            "--docker/--no-docker",
            "docker_enabled",
            default=None,
            help="Run the backend in docker (backends.<backend>.docker), or natively.",
        ),
        click.option(
            "--command-override",
            help="The executable (and its first arguments) instead of the configured one; "
            "split like a shell would, never run by one.",
        ),
        click.option(
            "--env",
            "env",
            multiple=True,
            metavar="KEY=VALUE",
            callback=_parse_env,
            help="An environment variable of the backend. Repeatable.",
        ),
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


# The flags of ``instance_settings`` that set one instance setting each.
_SETTING_FLAGS = {
    "on_demand": "on_demand_start",
    "auto_restart": "auto_restart",
    "max_restarts": "max_restarts",
    "restart_delay": "restart_delay",
    "idle_timeout": "idle_timeout",
    "docker_enabled": "docker_enabled",
    "command_override": "command_override",
}


@dataclass(frozen=True)
class Changes:
    """What the flags of ``instance_settings`` ask to change, in the order it applies."""

    model: str | None
    settings: list[tuple[str, object]]
    extras: list[tuple[str, str]]
    flags: dict[str, object]  # instance settings given by their own flags
    env: dict[str, str]

    @classmethod
    def read(cls, params: Mapping[str, Any]) -> Changes:
        flags = {
            setting: params[flag]
            for flag, setting in _SETTING_FLAGS.items()
            if params.get(flag) is not None
        }
        return cls(params["model"], params["settings"], params["extras"], flags, params["env"])

    def apply(self, options: JsonObject) -> None:
        """Change ``options`` (the API's JSON) in place: --model, --set, --extra, flags, --env."""
        if self.model is not None:
            backend_options = options.get("backend_options")
            options["backend_options"] = {**_mapping(backend_options), "model": self.model}
        apply_settings(options, self.settings)
        apply_extras(options, self.extras)
        options.update(self.flags)
        if self.env:
            options["environment"] = {**_mapping(options.get("environment")), **self.env}


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}

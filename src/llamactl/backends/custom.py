"""The ``custom`` backend: any OpenAI-compatible server, run as configured.

A configuration entry ``backends.custom.<name>`` gives the program (``command``), its
``args``, ``environment``, an optional ``docker`` section and the readiness endpoint
(``health_path``, where any 2xx means ready). An instance names its entry and adds its own
arguments:

    {"backend_type": "custom",
     "backend_options": {"name": "sglang", "model": "org/m", "args": ["--tp", "2"]}}

Its argv is the entry's command, then the entry's arguments, then the instance's, with
``{port}``, ``{host}`` and ``{model}`` replaced in each (nothing else in an argument is
touched: braces of a JSON value stay as they are). An entry is usable when it exists, has
a command and some argument carries ``{port}``: llamactl chooses the port, so the server
must be told it. An instance with ``docker_enabled: true`` runs the entry's ``docker``
image (with the same arguments), and is refused when the entry has no ``docker`` part.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

from llamactl.backends.base import BackendOptionsBase, BackendType
from llamactl.backends.spec import ArgvStyle, BackendSpec
from llamactl.backends.values import describe, invalid
from llamactl.config.models import BackendConfig, BackendsConfig
from llamactl.errors import InvalidOptions

__all__ = ["PLACEHOLDERS", "SPEC", "CustomOptions", "custom_args"]

PLACEHOLDERS = ("{port}", "{host}", "{model}")
_KNOWN = "name, model, port, host, args"


class CustomOptions(BackendOptionsBase):
    """Options of a custom instance: its entry, its model and port, its own arguments."""

    BACKEND_TYPE: ClassVar[BackendType] = BackendType.CUSTOM

    name: str | None = None  # the entry under backends.custom
    model: str | None = None  # what {model} stands for, and the name requests carry
    host: str | None = None
    port: int | None = None
    args: list[str] | None = None  # after the entry's arguments

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Self:
        """As for every backend, except that unknown keys are refused: there are no flags
        to pass them as (``args`` holds the arguments)."""
        if isinstance(data, Mapping):
            for key, value in data.items():
                if key not in cls.FIELD_KINDS:
                    detail = f"unknown custom option (value {describe(value)}); known: {_KNOWN}"
                    raise invalid(str(key), detail, value)
        return super().from_json(data)


def custom_args(options: BackendOptionsBase, section: BackendConfig) -> list[str]:
    """The entry's arguments then the instance's, with the placeholders replaced."""
    assert isinstance(options, CustomOptions)
    values = {
        "{port}": "" if options.port is None else str(options.port),
        "{host}": options.host or "",
        "{model}": options.model or "",
    }
    return [_substitute(arg, values) for arg in (*section.args, *(options.args or ()))]


def _substitute(arg: str, values: Mapping[str, str]) -> str:
    for placeholder, value in values.items():
        arg = arg.replace(placeholder, value)
    return arg


def _entry(backends: BackendsConfig, options: BackendOptionsBase) -> BackendConfig:
    """The entry ``backends.custom.<name>`` of ``options``, if it can run an instance."""
    assert isinstance(options, CustomOptions)
    name = options.name
    configured = ", ".join(sorted(backends.custom)) or "none"
    if name is None:
        detail = (
            f"this key is required, expected a backends.custom entry (configured: {configured})"
        )
        raise invalid("backend_options.name", detail, None)
    section = backends.custom.get(name)
    if section is None:
        detail = (
            f"no entry backends.custom.{name} in the configuration, got {name!r} "
            f"(configured: {configured})"
        )
        raise invalid("backend_options.name", detail, name)
    _check_entry(name, section, options)
    return section


def _check_entry(name: str, section: BackendConfig, options: CustomOptions) -> None:
    key = f"backends.custom.{name}"
    if not section.command:
        raise InvalidOptions(
            f"{key}.command: the entry has no command to run, got ''",
            field=f"{key}.command",
            value="",
        )
    arguments = [*section.args, *(options.args or ())]
    if not any("{port}" in arg for arg in arguments):
        raise InvalidOptions(
            f"{key}.args: no argument carries {{port}}, so the server cannot be told the port "
            f"llamactl gives it (arguments: {describe(arguments)}); add one such as "
            "['--port', '{port}'] to the entry or to backend_options.args",
            field=f"{key}.args",
            value=arguments,
        )


def _entry_key(options: BackendOptionsBase) -> str:
    assert isinstance(options, CustomOptions)
    return f"backends.custom.{options.name}"


def _no_api_key(options: BackendOptionsBase) -> str | None:
    return None


def _served_model_name(options: BackendOptionsBase) -> str | None:
    assert isinstance(options, CustomOptions)
    return options.model


SPEC = BackendSpec(
    backend_type=BackendType.CUSTOM,
    config_key="custom",
    label="Custom (any OpenAI-compatible server)",
    executables=frozenset(),  # its command line is configured, not pasted
    options_class=CustomOptions,
    argv_style=ArgvStyle.TEMPLATE,
    positional_model=False,
    supports_docker=True,
    docker_section_required=True,  # an entry without a docker part cannot run in docker
    rewrites_model=True,  # requests carry the instance name; the server gets its model
    messages_api=True,  # llamactl cannot tell: the server answers for itself
    health_path="/health",
    api_key=_no_api_key,
    served_model_name=_served_model_name,
    top_fields=("name", "model", "args"),
    healthy_statuses=range(200, 300),
    section_of=_entry,
    section_key_of=_entry_key,
    template_args=custom_args,
)

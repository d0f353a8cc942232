"""The argv and environment that start a backend: pure functions of options and config.

Nothing here spawns a process, reads ``os.environ`` or touches a file; the manager runs the
``Command`` this module returns. There is no shell anywhere: every option value becomes one
argv item as it is, so ``; rm -rf ~`` in a value is just a string, and ``command_override``
is split into words with shell quoting rules but never run by a shell.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from llamactl.backends.base import MAX_PORT, BackendOptionsBase, FieldKind
from llamactl.backends.parse import CommandParseError, split_command
from llamactl.backends.registry import BackendOptions, section_key, spec_for
from llamactl.backends.spec import ArgvStyle
from llamactl.backends.values import invalid
from llamactl.config.models import BackendConfig, DockerConfig
from llamactl.errors import ConfigError

__all__ = ["Command", "CommandOptions", "backend_args", "build_command", "render"]

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Command:
    """A process to start: ``argv[0]`` is the executable (looked up on ``PATH``).

    ``environment`` holds the variables to ADD to the environment the process inherits;
    it is empty in docker mode, where the variables go into the container as ``-e``.
    """

    argv: tuple[str, ...]
    environment: Mapping[str, str]


class CommandOptions(Protocol):
    """What ``build_command`` reads from an instance's options (``instance.Options``)."""

    @property
    def backend_options(self) -> BackendOptions: ...

    @property
    def docker_enabled(self) -> bool | None: ...

    @property
    def command_override(self) -> str | None: ...

    @property
    def environment(self) -> Mapping[str, str]: ...


def backend_args(options: BackendOptionsBase, *, docker: bool = False) -> list[str]:
    """The server's flags for ``options``: set fields in command-line order, then extras.

    - a boolean field gives ``--flag`` when true and nothing when false: these servers
      have no way to pass false to a switch, so false and unset come out the same;
    - numbers and strings give ``--flag VALUE``, explicit zeros included (``--seed 0``);
      for the argparse-based servers (mlx_lm, vllm) a value starting with ``-`` is
      attached as ``--flag=VALUE`` so that it is not read as another flag;
    - lists: ``MULTI_VALUED`` repeat ``--flag v`` per value, ``VARIADIC`` give
      ``--flag v1 v2 ...``, others give ``--flag v1,v2``;
    - ``extra_args`` follow in key order as ``--<key>`` (the key verbatim) plus the value
      when it is not empty.

    vLLM run natively takes the model as its first, positional argument (after the
    ``serve`` from the configured args); inside its container image (``docker=True``)
    the model stays ``--model X``.
    """
    spec = spec_for(options.BACKEND_TYPE)
    attach = spec.argv_style is ArgvStyle.ARGPARSE
    positional_model = spec.positional_model and not docker
    head: list[str] = []
    args: list[str] = []
    for name, value in options.set_fields():
        if name == "model" and positional_model:
            head.append(str(value))
        else:
            args.extend(_field_args(options, name, value, attach))
    for key, value in sorted(options.extra_args.items()):
        args.extend(_flag_value(f"--{key}", value, attach) if value else [f"--{key}"])
    return head + args


def _field_args(options: BackendOptionsBase, name: str, value: object, attach: bool) -> list[str]:
    flag = options.flag_name(name)
    kind = options.FIELD_KINDS[name]
    if kind is FieldKind.BOOL:
        return [flag] if value else []
    if kind is FieldKind.LIST:
        assert isinstance(value, list)
        items = [str(item) for item in value]
        if not items:
            return []
        if name in options.MULTI_VALUED:
            return [arg for item in items for arg in _flag_value(flag, item, attach)]
        if name in options.VARIADIC:
            return [flag, *items]
        return _flag_value(flag, ",".join(items), attach)
    return _flag_value(flag, _format(value), attach)


def _flag_value(flag: str, value: str, attach: bool) -> list[str]:
    if attach and value.startswith("-"):
        return [f"{flag}={value}"]
    return [flag, value]


def _format(value: object) -> str:
    """``7`` → ``"7"``, ``0.7`` → ``"0.7"``, ``1e-05`` → ``"1e-05"`` (shortest round trip)."""
    if isinstance(value, float):
        return repr(value)
    return str(value)


def build_command(
    options: CommandOptions,
    backend: BackendConfig,
    *,
    port: int,
    host: str = DEFAULT_HOST,
    name: str | None = None,
) -> Command:
    """The command that runs an instance with ``options`` on ``port``.

    ``port`` always replaces the instance's port option; the instance's own ``host``
    option is kept, else ``host`` (loopback by default) is used. The command is, first
    match wins:

    1. docker mode (see ``runs_in_docker``): ``docker`` + ``docker.args`` + one
       ``-e NAME=VALUE`` per variable (backend, then docker, then instance environment;
       later ones win) + the image + the backend's flags; nothing is added to the docker
       client's own environment;
    2. ``command_override`` split into words + ``backend.args`` + the backend's flags;
    3. ``backend.command`` + ``backend.args`` + the backend's flags.

    A backend whose spec has ``template_args`` gets what that gives in place of
    ``backend.args`` and the flags (in docker mode too). A backend whose spec has
    ``docker_section_required`` refuses an instance with ``docker_enabled: true`` whose
    section has no ``docker`` part, rather than run it natively.

    With ``name`` (the instance name), a backend whose responses name the model by a
    field (its spec's ``served_name_field``: llama.cpp's ``--alias``) gets ``name`` there
    when the instance leaves it unset, so that responses carry the name the client asked
    for rather than a file path; not with a ``command_override``, whose program may not
    take that flag.

    Natively the process gets the backend's environment, then the instance's, on top of
    what it inherits. Raises ``InvalidOptions`` for a ``command_override`` that cannot be
    split into words and ``ConfigError`` for docker mode without an image (or, as above,
    without a docker section); the key named is the instance's section's
    (``backends.llama-cpp.docker.image``).
    """
    if not 1 <= port <= MAX_PORT:
        raise ValueError(f"port must be from 1 to {MAX_PORT}, got {port}")
    typed = options.backend_options
    typed = typed.replace(port=port, host=typed.host or host)
    if name is not None and not options.command_override:
        typed = _with_served_name(typed, name)
    docker = backend.docker
    if docker is not None and runs_in_docker(options, backend):
        return _docker_command(typed, options.environment, backend, docker)
    if options.docker_enabled and spec_for(typed.BACKEND_TYPE).docker_section_required:
        key = f"{section_key(typed)}.docker"
        raise ConfigError(
            f"{key}: the instance asks for docker (docker_enabled: true), but its section has "
            "no docker part to run it with; add one with an image, or set docker_enabled to "
            "false",
            key=key,
        )
    executable = _split_override(options.command_override) or [backend.command]
    argv = (*executable, *_server_args(typed, backend, docker=False))
    environment = {**backend.environment, **options.environment}
    return Command(argv, MappingProxyType(environment))


def _server_args(typed: BackendOptions, backend: BackendConfig, *, docker: bool) -> list[str]:
    """What follows the program: natively the section's ``args`` then the flags; in the
    container image the flags alone; for a template backend, what its spec gives."""
    template = spec_for(typed.BACKEND_TYPE).template_args
    if template is not None:
        return template(typed, backend)
    if docker:
        return backend_args(typed, docker=True)
    return [*backend.args, *backend_args(typed)]


def _with_served_name(typed: BackendOptions, name: str) -> BackendOptions:
    field = spec_for(typed.BACKEND_TYPE).served_name_field
    if field is None or getattr(typed, field) is not None:
        return typed
    return typed.replace(**{field: name})


def runs_in_docker(options: CommandOptions, backend: BackendConfig) -> bool:
    """Whether the instance runs in docker: never for a backend without docker support
    (mlx_lm) or without a docker section.

    The instance's ``docker_enabled`` decides when set; unset, the backend's
    ``docker.enabled`` does, unless the instance has a ``command_override``.
    """
    spec = spec_for(options.backend_options.BACKEND_TYPE)
    if backend.docker is None or not spec.supports_docker:
        return False
    if options.docker_enabled is not None:
        return options.docker_enabled
    return backend.docker.enabled and not options.command_override


def _docker_command(
    typed: BackendOptions,
    instance_environment: Mapping[str, str],
    backend: BackendConfig,
    docker: DockerConfig,
) -> Command:
    if not docker.image:
        key = f"{section_key(typed)}.docker.image"
        raise ConfigError(f"{key}: docker mode needs an image, got ''", key=key, value="")
    variables = {**backend.environment, **docker.environment, **instance_environment}
    env_args = [arg for name in sorted(variables) for arg in ("-e", f"{name}={variables[name]}")]
    server_args = _server_args(typed, backend, docker=True)
    argv = ("docker", *docker.args, *env_args, docker.image, *server_args)
    return Command(argv, MappingProxyType({}))


def _split_override(command_override: str | None) -> list[str]:
    """The words of ``command_override`` (empty when unset); never run by a shell."""
    if command_override is None:
        return []
    try:
        words = split_command(command_override)
    except CommandParseError as exc:
        raise invalid("command_override", exc.message, command_override) from exc
    return words


def render(argv: Iterable[str]) -> str:
    """``argv`` as one line a person can read or paste into a POSIX shell."""
    return shlex.join(argv)

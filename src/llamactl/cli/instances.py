"""``llamactl instances ...``: the management API of a running server, from a shell.

Each command parses its options, makes one or two ``ApiClient`` calls and prints the
answer: aligned columns for people (``tables``), ``--json`` for scripts (the server's
JSON, indented). It holds no rules of its own: the server validates; what ``--set`` and
``--unset`` mean is ``options``. Nothing heavy is imported until a command runs (httpx
with the first request, the option tables only for create and edit), so that ``--help``
and ``list`` start quickly. ``reports_client_errors`` is the one
place where failures become one line on stderr and an exit code:

    0  done
    1  the server answered with an error (unknown instance, name taken, wrong key, ...)
    2  usage error (click's own code)
    3  the server cannot be reached (refused, unknown host, timeout, connection cut)
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

from llamactl.cli.options import Changes, apply_unsets, instance_settings
from llamactl.errors import ApiError, ClientError, LlamactlError, Unreachable

if TYPE_CHECKING:
    from llamactl.client import ApiClient, JsonObject

__all__ = [
    "BACKENDS",
    "EXIT_ERROR",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "instances_group",
    "ps_command",
]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., object])

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3

# The values of ``backends.BackendType``, spelled out so that the CLI starts without
# importing the option tables (a test holds the two equal). Everything else about a
# backend is read from its spec, once a command needs it.
BACKENDS = ("llama_cpp", "mlx_lm", "vllm")
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_DEFAULT_URL_HELP = "http://$LLAMACTL_HOST:$LLAMACTL_PORT, else http://127.0.0.1:8080"


# -- errors --------------------------------------------------------------------------------


def reports_client_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn every ``LlamactlError`` into one line on stderr (plus details) and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except LlamactlError as exc:
            name = kwargs.get("name")
            url = kwargs.get("url")
            message, code = describe_failure(
                exc, name if isinstance(name, str) else None, _server_url(url)
            )
            click.echo(f"llamactl: {message}", err=True)
            for line in getattr(exc, "details", ()):
                click.echo(f"  {line}", err=True)
            sys.exit(code)

    return wrapper


def describe_failure(
    exc: LlamactlError, name: str | None = None, url: str | None = None
) -> tuple[str, int]:
    """The message and exit code for ``exc``: what happened and what to do."""
    if isinstance(exc, Unreachable):
        return (
            f"{exc.message} (is the server running? set --url or LLAMACTL_URL, or"
            " LLAMACTL_PORT for a local server on another port)",
            EXIT_UNREACHABLE,
        )
    if not isinstance(exc, ApiError):
        return exc.message, EXIT_ERROR
    if exc.status == 401:
        where = _key_file_hint()
        server = f"llamactl at {url}" if url else "the server"
        return (
            f"{server} refused the key: {exc.message} (set --api-key or LLAMACTL_API_KEY;"
            f" a local server keeps its key in {where})",
            EXIT_ERROR,
        )
    if exc.code == "instance_exists" and name:
        return f"{exc.message} (use `llamactl instances edit {name}` to change it)", EXIT_ERROR
    if exc.code == "instance_not_found":
        return f"{exc.message} (`llamactl instances list` shows them all)", EXIT_ERROR
    return exc.message, EXIT_ERROR


def _key_file_hint() -> str:
    from llamactl.client import key_file_path

    path = key_file_path(os.environ, _config_path())
    return str(path) if path is not None else "<data_dir>/management.key"


def _config_path() -> str | None:
    context = click.get_current_context(silent=True)
    path = context.find_root().obj if context is not None else None
    return path if isinstance(path, str) else None


# -- options -------------------------------------------------------------------------------


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise click.BadParameter(f"expected http://HOST:PORT, got {value!r}")
    return value


def connection_options(command: F) -> F:
    """``--url`` and ``--api-key``, also read from LLAMACTL_URL and LLAMACTL_API_KEY."""
    command = click.option(
        "--api-key",
        envvar="LLAMACTL_API_KEY",
        help="Management key [env: LLAMACTL_API_KEY; default: a local server's key file].",
    )(command)
    return click.option(
        "--url",
        envvar="LLAMACTL_URL",
        callback=_check_url,
        help=f"The llamactl server [env: LLAMACTL_URL; default: {_DEFAULT_URL_HELP}].",
    )(command)


def json_option(command: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")(command)


# -- output --------------------------------------------------------------------------------


def _echo_lines(lines: list[str]) -> None:
    click.echo("\n".join(lines))


def _print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2))


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _print_status(body: Mapping[str, object], as_json: bool) -> None:
    if as_json:
        _print_json(body)
        return
    line = f"{_text(body.get('name'))}: {_text(body.get('status'))}"
    if body.get("readiness") is not None:
        line += f" ({body['readiness']})"
    click.echo(line)


# -- commands ------------------------------------------------------------------------------


# Where the group keeps ``--url`` / ``--api-key`` given before the command name.
_GROUP_CONNECTION = "llamactl.instances.connection"


def _given(name: str, value: str | None) -> str | None:
    """The value of option ``name`` after the group's: the command's own flag wins, then
    the group's (``llamactl instances --url X list``), then the environment or default."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return value
    if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
        return value
    group: dict[str, str | None] = ctx.meta.get(_GROUP_CONNECTION, {})
    return group.get(name) or value


def _server_url(url: object) -> str | None:
    """The URL a command talks to (``None`` if that cannot be told, e.g. a bad variable)."""
    from llamactl.client import default_url

    try:
        return _given("url", url if isinstance(url, str) else None) or default_url(os.environ)
    except LlamactlError:
        return None


@contextmanager
def _client(url: str | None, api_key: str | None) -> Iterator[ApiClient]:
    from llamactl.client import ApiClient, default_api_key, default_url, likely_api_key

    url = _given("url", url) or default_url(os.environ)
    key = _given("api_key", api_key)
    config_path = _config_path()

    def configured_key() -> str | None:
        return default_api_key(url, os.environ, config_path)

    fallback = None
    if not key:
        key = likely_api_key(url, os.environ, config_path)
        fallback = configured_key if key else None
        key = key or configured_key()
    with ApiClient(url, key, key_fallback=fallback) as api:
        yield api


@click.group("instances")
@click.option(
    "--url",
    callback=_check_url,
    help="The llamactl server, for every command [env: LLAMACTL_URL; default: "
    f"{_DEFAULT_URL_HELP}]. Also accepted after the command.",
)
@click.option("--api-key", help="Management key, for every command. Also accepted after it.")
@click.pass_context
def instances_group(ctx: click.Context, url: str | None, api_key: str | None) -> None:
    """Manage the instances of a running llamactl server.

    Exit codes: 0 done, 1 error from the server, 2 usage error, 3 server unreachable.
    """
    ctx.meta[_GROUP_CONNECTION] = {"url": url, "api_key": api_key}


@instances_group.command("list")
@connection_options
@json_option
@reports_client_errors
def list_command(url: str | None, api_key: str | None, as_json: bool) -> None:
    """List every instance."""
    from llamactl.cli.tables import instances_lines

    with _client(url, api_key) as api:
        instances = api.list_instances()
    if as_json:
        _print_json(instances)
    elif not instances:
        click.echo("no instances (create one with `llamactl instances create`)")
    else:
        _echo_lines(instances_lines(instances))


@click.command("ps")
@connection_options
@json_option
@reports_client_errors
def ps_command(url: str | None, api_key: str | None, as_json: bool) -> None:
    """List the running instances: model, readiness, requests in flight, idle time."""
    from llamactl.cli.tables import running_lines

    with _client(url, api_key) as api:
        running = [body for body in api.list_instances() if body.get("status") == "running"]
    if as_json:
        _print_json(running)
    elif not running:
        click.echo("no instance is running (`llamactl instances list` shows them all)")
    else:
        _echo_lines(running_lines(running))


@instances_group.command("get")
@click.argument("name")
@connection_options
@json_option
@reports_client_errors
def get_command(name: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Show one instance: status, options and, if it failed, why."""
    from llamactl.cli.tables import instance_lines

    with _client(url, api_key) as api:
        body = api.get(name)
    if as_json:
        _print_json(body)
    else:
        _echo_lines(instance_lines(body))


def _infer_backend(command: str) -> str:
    """The backend of a pasted command line, from its executable."""
    from llamactl.backends import split_command

    try:
        words = split_command(command)
    except LlamactlError as exc:
        raise click.BadParameter(exc.message, param_hint="--from-command") from exc
    while len(words) > 1 and _ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    executable = PurePath(words[0]).name.lower()
    if executable.startswith("python") and len(words) > 2 and words[1] == "-m":
        executable = words[2]
    backend = _backend_of_executable(executable)
    if backend is None:
        raise click.UsageError(f"cannot tell the backend of {words[0]!r}: pass --backend")
    return backend


def _backend_of_executable(executable: str) -> str | None:
    """The backend type whose spec names ``executable`` (``llama-server``), if any."""
    from llamactl.backends import SPECS

    for spec in SPECS.values():
        if executable in spec.executables:
            return spec.backend_type.value
    return None


def _segment(backend_type: str) -> str:
    """The backend segment of /backends/{segment}/parse-command: its configuration key."""
    from llamactl.backends import spec_for

    return spec_for(backend_type).config_key


@instances_group.command("create")
@click.argument("name")
@click.option("--backend", type=click.Choice(BACKENDS), help="Default: from --from-command.")
@click.option("--from-command", help='A command line to read options from: "llama-server -m …".')
@instance_settings
@connection_options
@json_option
@reports_client_errors
def create_command(
    name: str,
    backend: str | None,
    from_command: str | None,
    url: str | None,
    api_key: str | None,
    as_json: bool,
    **params: Any,
) -> None:
    """Create a stopped instance NAME."""
    if backend is None and from_command is None:
        raise click.UsageError("pass --backend (llama_cpp, mlx_lm, vllm) or --from-command")
    backend_type = backend or _infer_backend(from_command or "")
    changes = Changes.read(params)
    options: JsonObject = {"backend_type": backend_type, "backend_options": {}}
    changes.apply(dict(options))  # usage errors before any request
    with _client(url, api_key) as api:
        if from_command is not None:
            parsed = api.parse_command(_segment(backend_type), from_command)
            options["backend_options"] = dict(_mapping(parsed.get("backend_options")))
        changes.apply(options)
        body = api.create(name, options)
    if as_json:
        _print_json(body)
    else:
        click.echo(f"created {name} ({backend_type}, {_text(body.get('status'))})")


@instances_group.command("edit")
@click.argument("name")
@instance_settings
@click.option(
    "--unset",
    multiple=True,
    metavar="KEY",
    help="Remove a backend option (any spelling), an instance setting (back to its default) "
    "or an extra argument. Repeatable.",
)
@connection_options
@json_option
@reports_client_errors
def edit_command(
    name: str,
    unset: tuple[str, ...],
    url: str | None,
    api_key: str | None,
    as_json: bool,
    **params: Any,
) -> None:
    """Change options of NAME; a running instance restarts with them."""
    changes = Changes.read(params)
    with _client(url, api_key) as api:
        options = dict(_mapping(api.get(name).get("options")))
        apply_unsets(options, unset, name)
        changes.apply(options)
        body = api.update(name, options)
    _print_status(body, as_json)


def _failure_details(api: ApiClient, name: str) -> tuple[str, ...]:
    """The last lines of output of a backend that failed to start, if the server kept them."""
    try:
        failure = _mapping(api.get(name).get("failure"))
    except ClientError:
        return ()
    last_lines = failure.get("last_lines")
    if not isinstance(last_lines, list) or not last_lines:
        return ()
    return ("last lines of its output:", *(f"  {line}" for line in last_lines))


@instances_group.command("start")
@click.argument("name")
@click.option("--wait", is_flag=True, help="Wait until the backend is ready; fail if it fails.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to wait with --wait (default: the server's on_demand_start_timeout).",
)
@connection_options
@json_option
@reports_client_errors
def start_command(
    name: str,
    wait: bool,
    timeout: float | None,
    url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Start NAME."""
    if timeout is not None and not wait:
        raise click.UsageError("--timeout applies only with --wait")
    with _client(url, api_key) as api:
        try:
            body = _start(api, name, wait, timeout)
        except ApiError as exc:
            if wait and exc.status not in {401, 404}:
                exc.details = _failure_details(api, name)
            raise
    _print_status(body, as_json)


@instances_group.command("stop")
@click.argument("name")
@connection_options
@json_option
@reports_client_errors
def stop_command(name: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Stop NAME, letting requests in flight finish."""
    with _client(url, api_key) as api:
        body = api.stop(name)
    _print_status(body, as_json)


@instances_group.command("restart")
@click.argument("name")
@connection_options
@json_option
@reports_client_errors
def restart_command(name: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Restart NAME."""
    with _client(url, api_key) as api:
        body = api.restart(name)
    _print_status(body, as_json)


def _start(api: ApiClient, name: str, wait: bool, timeout: float | None) -> JsonObject:
    """Start ``name``; on a terminal, a spinner while ``wait`` waits for readiness."""
    if not (wait and sys.stdout.isatty()):
        return api.start(name, wait=wait, timeout=timeout)
    from rich.console import Console

    with Console(highlight=False).status(f"starting {name}, waiting until it is ready…"):
        return api.start(name, wait=True, timeout=timeout)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


@instances_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@connection_options
@reports_client_errors
def delete_command(name: str, yes: bool, url: str | None, api_key: str | None) -> None:
    """Delete NAME (it must be stopped)."""
    if not yes:
        if not _stdin_is_terminal():
            raise click.UsageError("stdin is not a terminal: pass --yes to delete without asking")
        click.confirm(f"Delete instance {name}?", abort=True)
    with _client(url, api_key) as api:
        api.delete(name)
    click.echo(f"deleted {name}")


@instances_group.command("logs")
@click.argument("name")
@click.option(
    "--lines", "-n", type=click.IntRange(min=0), help="Only the last N lines (default: all)."
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until Ctrl-C.")
@connection_options
@reports_client_errors
def logs_command(
    name: str, lines: int | None, follow: bool, url: str | None, api_key: str | None
) -> None:
    """Print the log of NAME."""
    with _client(url, api_key) as api:
        if not follow:
            text = api.logs(name, lines)
            click.echo(text, nl=bool(text) and not text.endswith("\n"))
            return
        try:
            _follow(api, name, lines)
        except KeyboardInterrupt:
            return
    raise Unreachable(
        f"the log stream from llamactl at {api.url} ended: the server stopped or dropped"
        " a reader that fell behind"
    )


def _follow(api: ApiClient, name: str, lines: int | None) -> None:
    for event, data in api.follow_logs(name, lines):
        text = data.get("text")
        if event == "log" and isinstance(text, str):
            click.echo(text, nl=False)
        elif event == "status":
            status, readiness = _text(data.get("status")), _text(data.get("readiness"))
            click.echo(f"[status: {status}, readiness: {readiness}]", err=True)

"""``llamactl instances ...`` and ``llamactl ps``: the management API of a running server.

Each command parses its options, makes one or two ``ApiClient`` calls (``connection``)
and prints the answer: aligned columns for people (``tables``), ``--json`` for scripts
(the server's JSON, indented). It holds no rules of its own: the server validates; what
``--set`` and ``--unset`` mean is ``options``. Nothing heavy is imported until a command
runs (the client with the first request, the option tables only for create and edit), so
that ``--help`` and ``list`` start quickly. Every failure ends the command through
``exits`` with the message of ``messages``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import click

from llamactl.cli.connection import (
    client,
    connection_options,
    group_connection_options,
    remember_connection,
)
from llamactl.cli.exits import reports_failures
from llamactl.cli.messages import describe_client_failure
from llamactl.cli.options import Changes, apply_unsets, instance_settings
from llamactl.cli.output import confirm, echo_lines, json_option, print_json
from llamactl.errors import ApiError, ClientError, LlamactlError, Unreachable

if TYPE_CHECKING:
    from llamactl.client import ApiClient, JsonObject

__all__ = ["BACKENDS", "instances_group", "ps_command"]

# The values of ``backends.BackendType``, spelled out so that the CLI starts without
# importing the option tables: even ``llamactl.backends.base`` loads the whole package,
# pydantic and the configuration (0.15-0.3 s, more than the CLI's own start). A test
# holds the two equal; --backend's choices and messages are built from this tuple only.
# Everything else about a backend is read from its spec, once a command needs it.
BACKENDS = ("llama_cpp", "mlx_lm", "vllm", "custom")
_ENV_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")

# How every command here fails: one line (plus details) on stderr, a code of ``exits``.
reports_client_failures = reports_failures(describe_client_failure)


# -- output --------------------------------------------------------------------------------


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _print_status(body: Mapping[str, object], as_json: bool) -> None:
    if as_json:
        print_json(body)
        return
    line = f"{_text(body.get('name'))}: {_text(body.get('status'))}"
    if body.get("readiness") is not None:
        line += f" ({body['readiness']})"
    click.echo(line)


# -- commands ------------------------------------------------------------------------------


@click.group("instances")
@group_connection_options
@click.pass_context
def instances_group(ctx: click.Context, url: str | None, api_key: str | None) -> None:
    """Manage the instances of a running llamactl server.

    Exit codes: 0 done, 1 error from the server, 2 usage error, 3 server unreachable.
    """
    remember_connection(ctx, url, api_key)


@instances_group.command("list")
@connection_options
@json_option
@reports_client_failures
def list_command(url: str | None, api_key: str | None, as_json: bool) -> None:
    """List every instance."""
    from llamactl.cli.tables import instances_lines

    with client(url, api_key) as api:
        instances = api.list_instances()
    if as_json:
        print_json(instances)
    elif not instances:
        click.echo("no instances (create one with `llamactl instances create`)")
    else:
        echo_lines(instances_lines(instances))


@click.command("ps")
@connection_options
@json_option
@reports_client_failures
def ps_command(url: str | None, api_key: str | None, as_json: bool) -> None:
    """List the running instances: model, readiness, requests in flight, idle time."""
    from llamactl.cli.tables import running_lines

    with client(url, api_key) as api:
        running = [body for body in api.list_instances() if body.get("status") == "running"]
    if as_json:
        print_json(running)
    elif not running:
        click.echo("no instance is running (`llamactl instances list` shows them all)")
    else:
        echo_lines(running_lines(running))


@instances_group.command("get")
@click.argument("name")
@connection_options
@json_option
@reports_client_failures
def get_command(name: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Show one instance: status, options and, if it failed, why."""
    from llamactl.cli.tables import instance_lines

    with client(url, api_key) as api:
        body = api.get(name)
    if as_json:
        print_json(body)
    else:
        echo_lines(instance_lines(body))


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
@reports_client_failures
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
        raise click.UsageError(f"pass --backend ({', '.join(BACKENDS)}) or --from-command")
    backend_type = backend or _infer_backend(from_command or "")
    changes = Changes.read(params)
    options: JsonObject = {"backend_type": backend_type, "backend_options": {}}
    changes.apply(dict(options))  # usage errors before any request
    with client(url, api_key) as api:
        if from_command is not None:
            parsed = api.parse_command(_segment(backend_type), from_command)
            options["backend_options"] = dict(_mapping(parsed.get("backend_options")))
        changes.apply(options)
        body = api.create(name, options)
    if as_json:
        print_json(body)
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
@reports_client_failures
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
    with client(url, api_key) as api:
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
@reports_client_failures
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
    with client(url, api_key) as api:
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
@reports_client_failures
def stop_command(name: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Stop NAME, letting requests in flight finish."""
    with client(url, api_key) as api:
        body = api.stop(name)
    _print_status(body, as_json)


@instances_group.command("restart")
@click.argument("name")
@connection_options
@json_option
@reports_client_failures
def restart_command(name: str, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Restart NAME."""
    with client(url, api_key) as api:
        body = api.restart(name)
    _print_status(body, as_json)


def _start(api: ApiClient, name: str, wait: bool, timeout: float | None) -> JsonObject:
    """Start ``name``; on a terminal, a spinner while ``wait`` waits for readiness."""
    if not (wait and sys.stdout.isatty()):
        return api.start(name, wait=wait, timeout=timeout)
    from rich.console import Console

    with Console(highlight=False).status(f"starting {name}, waiting until it is ready…"):
        return api.start(name, wait=True, timeout=timeout)


@instances_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@connection_options
@reports_client_failures
def delete_command(name: str, yes: bool, url: str | None, api_key: str | None) -> None:
    """Delete NAME (it must be stopped)."""
    if not yes:
        confirm(f"Delete instance {name}?")
    with client(url, api_key) as api:
        api.delete(name)
    click.echo(f"deleted {name}")


@instances_group.command("logs")
@click.argument("name")
@click.option(
    "--lines", "-n", type=click.IntRange(min=0), help="Only the last N lines (default: all)."
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until Ctrl-C.")
@connection_options
@reports_client_failures
def logs_command(
    name: str, lines: int | None, follow: bool, url: str | None, api_key: str | None
) -> None:
    """Print the log of NAME."""
    with client(url, api_key) as api:
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

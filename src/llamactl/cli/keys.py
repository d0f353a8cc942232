"""``llamactl keys ...``: the inference keys a running server keeps in its database.

Each command reads its flags into the keys API's JSON (``key_options``), makes one or two
``ApiClient`` calls and prints the answer: lines for people (``tables``), ``--json`` for
scripts (the server's JSON). A flag is checked only as far as reading it needs; the server
judges the rest (that each instance exists, the name). The key itself is printed once, by
``create``, whose answer alone carries it: the server keeps only a hash, so nothing can
show it again. Every failure ends the command through ``exits`` with the message of
``messages``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import click

from llamactl.cli.connection import (
    client,
    connection_options,
    group_connection_options,
    remember_connection,
)
from llamactl.cli.exits import reports_failures
from llamactl.cli.key_options import key_changes, new_key, parse_expiry, parse_grants
from llamactl.cli.messages import describe_client_failure
from llamactl.cli.output import confirm, echo_lines, ensure_can_ask, json_option, print_json

__all__ = ["keys_group"]

reports_client_failures = reports_failures(describe_client_failure)

_KEY_ID = click.IntRange(min=1)
_LIMIT = click.IntRange(min=1)
_INSTANCE_HELP = (
    "An instance the key may use, at LEVEL: use (while it runs), start (may start it), "
    "evict (may start it, stopping others to make room; the default). Repeatable."
)
_EXPIRES_HELP = (
    "When the key stops working: a duration from now (30d, 12h, 90m, 1d12h) or an ISO "
    "date or time (2030-01-31, 2030-01-31T18:00, local unless it ends in Z or +HH:MM)."
)


def _described(body: Mapping[str, object]) -> str:
    """``key 3 (ci)``."""
    return f"key {body.get('id')} ({body.get('name')})"


def _reach(body: Mapping[str, object]) -> str:
    """What a key opens: ``every instance``, ``alpha:use, beta:evict``."""
    from llamactl.cli.tables import grants

    if body.get("permission_mode") == "allow_all":
        return "every instance"
    return ", ".join(grants(body)) or "no instance"


@click.group("keys")
@group_connection_options
@click.pass_context
def keys_group(ctx: click.Context, url: str | None, api_key: str | None) -> None:
    """Manage the inference keys a running llamactl server stores.

    A key opens the inference routes (/v1/..., /llama-cpp/...) of every instance or of
    those it names, never the management API. Exit codes: 0 done, 1 error from the server,
    2 usage error, 3 server unreachable.
    """
    remember_connection(ctx, url, api_key)


@keys_group.command("create")
@click.argument("name")
@click.option(
    "--instance",
    "grants",
    multiple=True,
    metavar="NAME[:LEVEL]",
    callback=parse_grants,
    help=_INSTANCE_HELP + " Without it: every instance.",
)
@click.option(
    "--expires",
    "expires_at",
    metavar="DURATION|DATE",
    callback=parse_expiry,
    help=_EXPIRES_HELP + " Default: never.",
)
@click.option("--max-concurrent", type=_LIMIT, help="Requests at once, beyond which 429.")
@click.option("--rpm", type=_LIMIT, help="Requests a minute, beyond which 429.")
@click.option("--disabled", is_flag=True, help="Create it refused until `keys edit --enable`.")
@connection_options
@json_option
@reports_client_failures
def create_command(
    name: str,
    grants: list[dict[str, object]],
    expires_at: int | None,
    max_concurrent: int | None,
    rpm: int | None,
    disabled: bool,
    url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Create the key NAME and print it, the only time it is shown."""
    limits = {
        "expires_at": expires_at,
        "max_concurrent": max_concurrent,
        "requests_per_minute": rpm,
    }
    with client(url, api_key) as api:
        body = api.create_key(new_key(name, grants, limits, disabled))
    if as_json:
        print_json(body)
        return
    key_id = body.get("id")
    click.echo(f"created {_described(body)}, for {_reach(body)}")
    click.echo(f"key: {body.get('key')}")
    click.echo(
        "shown only now: store it (the server keeps only a hash;"
        f" `llamactl keys show {key_id}` shows the rest)"
    )


@keys_group.command("list")
@connection_options
@json_option
@reports_client_failures
def list_command(url: str | None, api_key: str | None, as_json: bool) -> None:
    """List every stored key: what it opens, its limits, when it expires and was used."""
    from llamactl.cli.tables import keys_lines

    with client(url, api_key) as api:
        keys = api.list_keys()
    if as_json:
        print_json(keys)
    elif not keys:
        click.echo("no keys (create one with `llamactl keys create NAME`)")
    else:
        echo_lines(keys_lines(keys, time.time()))


@keys_group.command("show")
@click.argument("key_id", metavar="ID", type=_KEY_ID)
@connection_options
@json_option
@reports_client_failures
def show_command(key_id: int, url: str | None, api_key: str | None, as_json: bool) -> None:
    """Show the key ID field by field (never the key itself: the server keeps a hash)."""
    from llamactl.cli.tables import key_lines

    with client(url, api_key) as api:
        body = api.get_key(key_id)
    if as_json:
        print_json(body)
    else:
        echo_lines(key_lines(body, time.time()))


def _one_of(value: object, cleared: bool, flag: str, no_flag: str) -> None:
    if cleared and value is not None:
        raise click.UsageError(f"{flag} and {no_flag} contradict each other: give one")


@keys_group.command("edit")
@click.argument("key_id", metavar="ID", type=_KEY_ID)
@click.option("--name", help="A new name.")
@click.option(
    "--instance",
    "grants",
    multiple=True,
    metavar="NAME[:LEVEL]",
    callback=parse_grants,
    help=_INSTANCE_HELP + " The key's instances become those given.",
)
@click.option("--no-instances", is_flag=True, help="Let the key use every instance.")
@click.option(
    "--expires", "expires_at", metavar="DURATION|DATE", callback=parse_expiry, help=_EXPIRES_HELP
)
@click.option("--no-expiry", is_flag=True, help="Let the key work until it is deleted.")
@click.option("--max-concurrent", type=_LIMIT, help="Requests at once, beyond which 429.")
@click.option("--no-max-concurrent", is_flag=True, help="No limit on requests at once.")
@click.option("--rpm", type=_LIMIT, help="Requests a minute, beyond which 429.")
@click.option("--no-rpm", is_flag=True, help="No limit on requests a minute.")
@click.option(
    "--disable/--enable",
    "disabled",
    default=None,
    help="Refuse the key (until --enable), or accept it again.",
)
@connection_options
@json_option
@reports_client_failures
def edit_command(
    key_id: int,
    name: str | None,
    grants: list[dict[str, object]],
    no_instances: bool,
    expires_at: int | None,
    no_expiry: bool,
    max_concurrent: int | None,
    no_max_concurrent: bool,
    rpm: int | None,
    no_rpm: bool,
    disabled: bool | None,
    url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Change what the flags name of the key ID; the rest stays as it is."""
    _one_of(grants or None, no_instances, "--instance", "--no-instances")
    _one_of(expires_at, no_expiry, "--expires", "--no-expiry")
    _one_of(max_concurrent, no_max_concurrent, "--max-concurrent", "--no-max-concurrent")
    _one_of(rpm, no_rpm, "--rpm", "--no-rpm")
    changes = key_changes(
        name,
        [] if no_instances else (grants or None),
        {
            "expires_at": (expires_at, no_expiry),
            "max_concurrent": (max_concurrent, no_max_concurrent),
            "requests_per_minute": (rpm, no_rpm),
        },
        disabled,
    )
    if not changes:
        raise click.UsageError(
            "nothing to change: give --name, --instance, --no-instances, --expires,"
            " --no-expiry, --max-concurrent, --no-max-concurrent, --rpm, --no-rpm,"
            " --disable or --enable"
        )
    with client(url, api_key) as api:
        body = api.update_key(key_id, changes)
    if as_json:
        print_json(body)
    else:
        disabled_now = " (disabled)" if body.get("disabled") is True else ""
        click.echo(f"updated {_described(body)}, for {_reach(body)}{disabled_now}")


@keys_group.command("delete")
@click.argument("key_id", metavar="ID", type=_KEY_ID)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@connection_options
@reports_client_failures
def delete_command(key_id: int, yes: bool, url: str | None, api_key: str | None) -> None:
    """Delete the key ID: requests with it are refused from then on."""
    if not yes:
        ensure_can_ask()
    with client(url, api_key) as api:
        if not yes:
            body = api.get_key(key_id)
            confirm(f"Delete {_described(body)}? Requests with it will be refused.")
        api.delete_key(key_id)
    click.echo(f"deleted key {key_id}")

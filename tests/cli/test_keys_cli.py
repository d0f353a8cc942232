"""``llamactl keys ...`` against a real server on a socket (see ``conftest.py``).

What a command did is read back through the keys API with the management key; the key a
create prints is used on ``/v1/models``, as a client of the inference routes would.
"""

from __future__ import annotations

import calendar
import datetime
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import httpx
import pytest

from llamactl.cli.exits import ExitCode
from llamactl.client import ApiClient, ApiError
from tests.support.cli import Server, api_get, create, invoke
from tests.support.net import free_port

INSTANCES = ("alpha", "beta", "gamma")
DAY = 86400


@pytest.fixture(scope="module")
def instances(server: Server) -> Iterator[tuple[str, ...]]:
    for name in INSTANCES:
        create(server, name)
    yield INSTANCES
    for name in INSTANCES:
        deleted = server.run("instances", "delete", name, "--yes")
        assert deleted.exit_code == ExitCode.OK, deleted.output


@pytest.fixture
def keys(server: Server, instances: tuple[str, ...]) -> Iterator[Server]:
    """The server, with no stored key left behind by the test."""
    yield server
    for body in stored_keys(server):
        answer = httpx.delete(
            f"{server.url}/api/v1/auth/keys/{body['id']}", headers=bearer(server.key), timeout=10
        )
        assert answer.status_code == 204, answer.text


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def stored_keys(server: Server) -> list[dict[str, Any]]:
    answer = api_get(server, "/auth/keys")
    assert answer.status_code == 200, answer.text
    listed: list[dict[str, Any]] = answer.json()
    return listed


def stored(server: Server, key_id: int) -> dict[str, Any]:
    answer = api_get(server, f"/auth/keys/{key_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def make(server: Server, name: str, *args: str) -> tuple[int, str]:
    """``keys create NAME ARGS``: the new key's id and the key it printed."""
    result = server.run("keys", "create", name, *args)
    assert result.exit_code == ExitCode.OK, result.output
    first, key_line, notice = result.stdout.splitlines()
    found = re.fullmatch(rf"created key (\d+) \({re.escape(name)}\), for .+", first)
    assert found, first
    assert key_line.startswith("key: llamactl-")
    assert notice.startswith("shown only now: store it")
    return int(found[1]), key_line.removeprefix("key: ")


def models(server: Server, key: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/models", headers=bearer(key), timeout=10)


def model_ids(server: Server, key: str) -> list[str]:
    answer = models(server, key)
    assert answer.status_code == 200, answer.text
    return [model["id"] for model in answer.json()["data"]]


def permissions(body: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    return {
        item["instance_name"]: (item["can_start"], item["can_evict"])
        for item in body["permissions"]
    }


def cells(stdout: str) -> list[dict[str, str]]:
    """A table's rows by heading, each cell read from where its heading starts."""
    header, *rows = stdout.splitlines()
    headings = re.findall(r"\S+(?: \S+)*", header)
    starts = [header.index(heading) for heading in headings]
    ends = [*starts[1:], None]
    return [
        {
            heading: row[start:end].strip()
            for heading, start, end in zip(headings, starts, ends, strict=True)
        }
        for row in rows
    ]


def fields(stdout: str) -> dict[str, str]:
    """``key  value`` lines; continuation lines (no key) are left out."""
    pairs = (line.split(None, 1) for line in stdout.splitlines() if not line.startswith(" "))
    return {pair[0]: pair[1] if len(pair) > 1 else "" for pair in pairs}


def one_error_line(result: Any, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line: str = lines[0]
    return line


# -- create --------------------------------------------------------------------------------


def test_create_without_instances_makes_an_allow_all_key_that_works(keys: Server) -> None:
    key_id, key = make(keys, "ci")
    body = stored(keys, key_id)
    assert (body["name"], body["permission_mode"], body["permissions"]) == ("ci", "allow_all", [])
    assert (body["expires_at"], body["max_concurrent"], body["requests_per_minute"]) == (
        None, None, None,
    )  # fmt: skip
    assert body["disabled"] is False
    assert key.startswith(body["prefix"])
    assert model_ids(keys, key) == list(INSTANCES)


def test_create_with_instances_stores_each_level(keys: Server) -> None:
    key_id, key = make(
        keys, "per", "--instance", "alpha:use", "--instance", "beta:start", "--instance", "gamma"
    )
    body = stored(keys, key_id)
    assert body["permission_mode"] == "per_instance"
    assert permissions(body) == {
        "alpha": (False, False),  # use: while it runs
        "beta": (True, False),  # start: no evicting
        "gamma": (True, True),  # evict, the default
    }
    assert model_ids(keys, key) == list(INSTANCES)
    only_alpha = make(keys, "one", "--instance", "alpha:evict")[1]
    assert model_ids(keys, only_alpha) == ["alpha"]


def test_create_with_limits_an_expiry_and_disabled(keys: Server) -> None:
    before = int(time.time())
    key_id, key = make(
        keys, "limited", "--expires", "30d", "--max-concurrent", "2", "--rpm", "60", "--disabled"
    )
    after = int(time.time())
    body = stored(keys, key_id)
    assert before + 30 * DAY <= body["expires_at"] <= after + 30 * DAY
    assert (body["max_concurrent"], body["requests_per_minute"]) == (2, 60)
    assert body["disabled"] is True
    refused = models(keys, key)
    assert refused.status_code == 401, refused.text


def test_create_expires_at_a_date_or_time(keys: Server) -> None:
    year = datetime.date.today().year + 1
    local = make(keys, "local", "--expires", f"{year}-06-30T18:00")[0]
    expected = int(datetime.datetime(year, 6, 30, 18, 0).timestamp())
    assert stored(keys, local)["expires_at"] == expected
    utc = make(keys, "utc", "--expires", f"{year}-06-30T18:00Z")[0]
    assert stored(keys, utc)["expires_at"] == calendar.timegm((year, 6, 30, 18, 0, 0))


def test_create_json_is_the_servers_answer_with_the_key(keys: Server) -> None:
    result = keys.run("keys", "create", "scripted", "--instance", "beta:use", "--json")
    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout.startswith("{\n  ")  # indented for reading
    printed = json.loads(result.stdout)
    key = printed.pop("key")
    assert printed == stored(keys, printed["id"])
    assert model_ids(keys, key) == ["beta"]


# -- list and show -------------------------------------------------------------------------


def test_list_shows_a_table_and_json_is_the_servers(keys: Server) -> None:
    open_id, open_key = make(keys, "open")
    held_id, held_key = make(
        keys, "held", "--instance", "alpha:use", "--instance", "beta:start",
        "--expires", "30d", "--max-concurrent", "2", "--rpm", "60", "--disabled",
    )  # fmt: skip
    table = keys.run("keys", "list")
    assert table.exit_code == ExitCode.OK, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "ID", "NAME", "PREFIX", "MODE", "INSTANCES", "LIMITS", "EXPIRES", "DISABLED", "LAST",
        "USED", "REQUESTS",
    ]  # fmt: skip
    assert all(line == line.rstrip() for line in lines)
    rows = {row["ID"]: row for row in cells(table.stdout)}
    assert rows[str(open_id)] == {
        "ID": str(open_id), "NAME": "open", "PREFIX": stored(keys, open_id)["prefix"],
        "MODE": "allow_all", "INSTANCES": "all", "LIMITS": "-", "EXPIRES": "never",
        "DISABLED": "no", "LAST USED": "never", "REQUESTS": "0",
    }  # fmt: skip
    held = rows[str(held_id)]
    assert (held["MODE"], held["INSTANCES"]) == ("per_instance", "alpha:use,beta:start")
    assert (held["LIMITS"], held["EXPIRES"], held["DISABLED"]) == (
        "2 at once, 60/min", "in 29d 23h", "yes",
    )  # fmt: skip

    as_json = keys.run("keys", "list", "--json")
    assert as_json.exit_code == ExitCode.OK, as_json.output
    assert json.loads(as_json.stdout) == stored_keys(keys)
    for printed in (table.stdout, as_json.stdout):
        assert open_key not in printed and held_key not in printed


def test_list_without_keys_says_how_to_make_one(keys: Server) -> None:
    result = keys.run("keys", "list")
    assert result.exit_code == ExitCode.OK, result.output
    assert result.stdout == "no keys (create one with `llamactl keys create NAME`)\n"
    assert json.loads(keys.run("keys", "list", "--json").stdout) == []


def test_show_gives_a_line_per_field_and_never_the_key(keys: Server) -> None:
    key_id, key = make(keys, "shown", "--instance", "alpha:use", "--instance", "gamma")
    view = keys.run("keys", "show", str(key_id))
    assert view.exit_code == ExitCode.OK, view.output
    body = stored(keys, key_id)
    shown = fields(view.stdout)
    assert list(shown) == list(body)  # every field, in the server's order
    assert (shown["id"], shown["name"], shown["prefix"]) == (str(key_id), "shown", body["prefix"])
    assert shown["permissions"] == "alpha:use (while it runs)"
    assert "  gamma:evict (may start it, stopping others to make room)" in view.stdout
    assert (shown["expires_at"], shown["last_used_at"], shown["disabled"]) == (
        "never", "never", "false",
    )  # fmt: skip
    created = datetime.datetime.fromtimestamp(body["created_at"]).isoformat(sep=" ")
    assert shown["created_at"].startswith(f"{created} (")

    as_json = keys.run("keys", "show", str(key_id), "--json")
    assert as_json.exit_code == ExitCode.OK, as_json.output
    assert json.loads(as_json.stdout) == body
    assert key not in view.stdout and key not in as_json.stdout


# -- edit ----------------------------------------------------------------------------------


def test_edit_changes_only_what_it_is_told(keys: Server) -> None:
    key_id, key = make(keys, "edited", "--max-concurrent", "2", "--rpm", "30")
    first = stored(keys, key_id)

    renamed = keys.run("keys", "edit", str(key_id), "--name", "renamed", "--instance", "beta:use")
    assert renamed.exit_code == ExitCode.OK, renamed.output
    assert renamed.stdout == f"updated key {key_id} (renamed), for beta:use\n"
    body = stored(keys, key_id)
    assert (body["name"], body["permission_mode"]) == ("renamed", "per_instance")
    assert permissions(body) == {"beta": (False, False)}
    assert (body["max_concurrent"], body["requests_per_minute"]) == (2, 30)  # kept
    assert body["prefix"] == first["prefix"] and body["created_at"] == first["created_at"]
    assert model_ids(keys, key) == ["beta"]

    before = int(time.time())
    limited = keys.run(
        "keys", "edit", str(key_id), "--expires", "12h", "--max-concurrent", "5",
        "--no-rpm", "--disable", "--json",
    )  # fmt: skip
    assert limited.exit_code == ExitCode.OK, limited.output
    body = stored(keys, key_id)
    assert json.loads(limited.stdout) == body
    assert before + 12 * 3600 <= body["expires_at"] <= int(time.time()) + 12 * 3600
    assert (body["max_concurrent"], body["requests_per_minute"], body["disabled"]) == (
        5, None, True,
    )  # fmt: skip
    assert models(keys, key).status_code == 401

    opened = keys.run(
        "keys", "edit", str(key_id), "--no-instances", "--no-expiry", "--no-max-concurrent",
        "--rpm", "100", "--enable",
    )  # fmt: skip
    assert opened.exit_code == ExitCode.OK, opened.output
    assert opened.stdout == f"updated key {key_id} (renamed), for every instance\n"
    body = stored(keys, key_id)
    assert (body["permission_mode"], body["permissions"]) == ("allow_all", [])
    assert (body["expires_at"], body["max_concurrent"], body["requests_per_minute"]) == (
        None, None, 100,
    )  # fmt: skip
    assert body["disabled"] is False
    assert model_ids(keys, key) == list(INSTANCES)


# -- delete --------------------------------------------------------------------------------


def test_delete_removes_the_key_and_it_stops_working(keys: Server) -> None:
    key_id, key = make(keys, "doomed")
    assert model_ids(keys, key) == list(INSTANCES)
    deleted = keys.run("keys", "delete", str(key_id), "--yes")
    assert deleted.exit_code == ExitCode.OK, deleted.output
    assert deleted.stdout == f"deleted key {key_id}\n"
    assert api_get(keys, f"/auth/keys/{key_id}").status_code == 404
    assert models(keys, key).status_code == 401


def test_delete_asks_for_confirmation_on_a_terminal(keys: Server) -> None:
    key_id = make(keys, "asked")[0]
    with mock.patch("llamactl.cli.output.stdin_is_terminal", return_value=True):
        declined = keys.run("keys", "delete", str(key_id), input="n\n")
        assert declined.exit_code == ExitCode.ERROR
        assert f"Delete key {key_id} (asked)?" in declined.stdout
        assert api_get(keys, f"/auth/keys/{key_id}").status_code == 200
        accepted = keys.run("keys", "delete", str(key_id), input="y\n")
    assert accepted.exit_code == ExitCode.OK, accepted.output
    assert api_get(keys, f"/auth/keys/{key_id}").status_code == 404


def test_delete_without_yes_off_a_terminal_is_a_usage_error(keys: Server) -> None:
    key_id = make(keys, "kept")[0]
    result = keys.run("keys", "delete", str(key_id))
    assert result.exit_code == ExitCode.USAGE
    assert "--yes" in result.stderr
    assert api_get(keys, f"/auth/keys/{key_id}").status_code == 200


# -- failures ------------------------------------------------------------------------------


def test_an_unknown_instance_exits_1_with_the_servers_message(keys: Server) -> None:
    result = keys.run("keys", "create", "lost", "--instance", "alpha", "--instance", "ghost")
    line = one_error_line(result, ExitCode.ERROR)
    assert line == "llamactl: permissions[1].instance: no instance is called 'ghost'"
    assert stored_keys(keys) == []
    key_id = make(keys, "found")[0]
    edited = keys.run("keys", "edit", str(key_id), "--instance", "ghost:use")
    assert "no instance is called 'ghost'" in one_error_line(edited, ExitCode.ERROR)
    assert stored(keys, key_id)["permission_mode"] == "allow_all"


def test_a_value_the_server_refuses_exits_1_naming_the_field(keys: Server) -> None:
    result = keys.run("keys", "create", "x" * 101)
    assert one_error_line(result, ExitCode.ERROR) == "llamactl: name: 101 characters, at most 100"
    key_id = make(keys, "named")[0]
    blank = keys.run("keys", "edit", str(key_id), "--name", " ")
    assert one_error_line(blank, ExitCode.ERROR).startswith("llamactl: name: expected a name")


def test_an_unknown_key_exits_1_and_points_to_the_list(keys: Server) -> None:
    for args in (["show", "999"], ["edit", "999", "--disable"], ["delete", "999", "--yes"]):
        result = keys.run("keys", *args)
        line = one_error_line(result, ExitCode.ERROR)
        assert line == "llamactl: key not found: 999 (`llamactl keys list` shows them all)", args
    with mock.patch("llamactl.cli.output.stdin_is_terminal", return_value=True):
        asked = keys.run("keys", "delete", "999", input="y\n")  # found missing before asking
    assert "key not found: 999" in one_error_line(asked, ExitCode.ERROR)
    assert "Delete" not in asked.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["create", "x", "--instance", "x:fly"], "--instance: 'x:fly': the level 'fly'"),
        (["create", "x", "--instance", ":use"], "--instance"),
        (["create", "x", "--instance", "a", "--instance", "a:use"], "'a' is given twice"),
        (["create", "x", "--expires", "soon"], "--expires"),
        (["create", "x", "--expires", "2001-01-01"], "'2001-01-01' is in the past"),
        (["create", "x", "--max-concurrent", "0"], "--max-concurrent"),
        (["create", "x", "--rpm", "many"], "--rpm"),
        (["create"], "NAME"),
        (["show", "abc"], "ID"),
        (["show", "0"], "ID"),
        (["edit", "1"], "nothing to change"),
        (["edit", "1", "--instance", "a", "--no-instances"], "--instance and --no-instances"),
        (["edit", "1", "--expires", "1d", "--no-expiry"], "--expires and --no-expiry"),
        (["edit", "1", "--rpm", "5", "--no-rpm"], "--rpm and --no-rpm"),
        (["edit", "1", "--max-concurrent", "5", "--no-max-concurrent"], "--no-max-concurrent"),
        (["edit", "1", "--instance", "b:all"], "--instance"),
        (["delete", "1"], "--yes"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_usage_errors_exit_2_naming_the_flag(args: list[str], named: str) -> None:
    # A closed port: a usage error must be found before any request is made (else 3).
    result = invoke("keys", *args, LLAMACTL_URL=f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Traceback" not in result.output
    assert named in result.stderr


def test_an_unreachable_server_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["show", "1"], ["create", "x"], ["delete", "1", "--yes"]):
        result = invoke("keys", *args, "--url", url, "--api-key", "k")
        line = one_error_line(result, ExitCode.UNREACHABLE)
        assert line.startswith(f"llamactl: cannot reach llamactl at {url}"), args


def test_the_keys_help_names_every_code() -> None:
    result = invoke("keys", "--help")
    assert result.exit_code == ExitCode.OK, result.output
    sentence = " ".join(result.stdout.split()).split("Exit codes: ", 1)[1].split(".")[0]
    assert [int(code) for code in re.findall(r"\b(\d+) ", sentence)] == list(ExitCode)


def test_connection_options_before_the_command(keys: Server) -> None:
    result = invoke("keys", "--url", keys.url, "--api-key", keys.key, "list", "--json")
    assert result.exit_code == ExitCode.OK, result.output
    assert json.loads(result.stdout) == []


# -- the client ----------------------------------------------------------------------------


def test_the_client_methods_are_the_keys_api(keys: Server) -> None:
    with ApiClient(keys.url, keys.key) as api:
        created = api.create_key({"name": "direct", "requests_per_minute": 10})
        key = created.pop("key")
        assert isinstance(key, str) and key.startswith("llamactl-")
        key_id = created["id"]
        assert isinstance(key_id, int)
        assert api.get_key(key_id) == created
        assert api.list_keys() == [created]
        changed = api.update_key(key_id, {"requests_per_minute": None, "disabled": True})
        assert (changed["requests_per_minute"], changed["disabled"]) == (None, True)
        api.delete_key(key_id)
        with pytest.raises(ApiError) as caught:
            api.get_key(key_id)
        assert (caught.value.status, caught.value.code) == (404, "key_not_found")
        with pytest.raises(ApiError) as refused:
            api.create_key({"name": "x", "max_concurrent": 0})
        assert refused.value.status == 400
        assert refused.value.message.startswith("max_concurrent")

"""The client commands start without the server's stack, and their tables read in a pipe.

``llamactl --help`` and ``llamactl instances list`` must not import SQLAlchemy, FastAPI or
uvicorn (they cost a second of start-up); ``scripts/bench_cli`` measures the time. The
tables (``list``, ``ps``) are plain columns: whole values, no trailing spaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llamactl.backends import BackendType
from llamactl.cli.instances import BACKENDS
from llamactl.cli.tables import columns, format_idle
from tests.support.cli import Server, api_get, create, invoke

SERVER_STACK = ("sqlalchemy", "alembic", "fastapi", "starlette", "uvicorn")
SUBPROCESS_SECONDS = 60


def imported_modules(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """Top-level packages that ``python -X importtime -m llamactl ARGS`` imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "llamactl", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=SUBPROCESS_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "llamactl" in names  # the timing lines were read
    return names


def clean_environ(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LLAMACTL_")}
    return {**env, **extra}


def test_importing_the_cli_loads_only_click() -> None:
    code = "import json, sys, llamactl.cli; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    top = {name.split(".")[0] for name in json.loads(result.stdout)}
    heavy = {*SERVER_STACK, "pydantic", "httpx", "rich", "yaml"}
    assert top.isdisjoint(heavy), sorted(top & heavy)
    assert "importlib.metadata" not in json.loads(result.stdout)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["instances", "--help"],
        ["ps", "--help"],
        ["nodes", "--help"],
        ["keys", "--help"],
    ],
)
def test_help_imports_nothing_of_the_server(args: list[str]) -> None:
    assert imported_modules(*args).isdisjoint(SERVER_STACK)


def test_list_against_a_server_imports_nothing_of_the_server(
    server: Server, tmp_path: Path
) -> None:
    given_key = imported_modules("instances", "list", "--url", server.url, "--api-key", server.key)
    assert given_key.isdisjoint(SERVER_STACK), sorted(given_key & set(SERVER_STACK))
    keys = imported_modules("keys", "list", "--url", server.url, "--api-key", server.key)
    assert keys.isdisjoint(SERVER_STACK), sorted(keys & set(SERVER_STACK))

    # Without a key, the local key file is read.
    (tmp_path / "management.key").write_text(server.key)
    env = clean_environ(LLAMACTL_URL=server.url, LLAMACTL_DATA_DIRECTORY=str(tmp_path))
    from_file = imported_modules("ps", env=env)
    assert from_file.isdisjoint(SERVER_STACK), sorted(from_file & set(SERVER_STACK))
    assert "pydantic" not in from_file  # the key file was found without the configuration


def test_the_backend_choices_are_the_backend_types() -> None:
    assert tuple(kind.value for kind in BackendType) == BACKENDS


def test_the_backend_messages_list_every_backend_type() -> None:
    names = [kind.value for kind in BackendType]
    usage = invoke("instances", "create", "x")
    assert usage.exit_code == 2
    assert f"pass --backend ({', '.join(names)}) or --from-command" in usage.stderr
    shown = invoke("instances", "create", "--help")
    assert f"--backend [{'|'.join(names)}]" in shown.stdout


# -- tables ------------------------------------------------------------------------------


def test_columns_are_aligned_without_trailing_spaces() -> None:
    lines = columns([("A", "BB", "C"), ("long value", "x", ""), ("y", "two\nlines", "z")])
    assert lines == ["A           BB         C", "long value  x", "y           two lines  z"]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m 00s"), (3599, "59m 59s"), (7260, "2h 01m")],
)
def test_idle_times(seconds: float | None, shown: str) -> None:
    assert format_idle(seconds) == shown


def test_list_in_a_pipe_has_whole_failures_and_no_trailing_spaces(server: Server) -> None:
    missing = "/nonexistent/" + "deep/" * 12 + "llama-server"
    create(server, "fails-in-list", "--no-auto-restart", "--command-override", missing)
    failed = server.run("instances", "start", "fails-in-list", "--wait", "--timeout", "20")
    assert failed.exit_code == 1
    reason = api_get(server, "/instances/fails-in-list").json()["failure"]["reason"]
    assert len(reason) > 60  # longer than the old cut

    listed = server.run("instances", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert all(line == line.rstrip() for line in lines)
    header = lines[0]
    row = next(line for line in lines if line.startswith("fails-in-list "))
    assert row[header.index("FAILURE") :] == " ".join(reason.split())
    assert row.split()[:3] == ["fails-in-list", "llama_cpp", "failed"]


def test_ps_shows_running_instances_with_requests_in_flight(server: Server) -> None:
    create(server, "ps-idle", "--set", "alias=ps-idle")
    create(server, "ps-stopped")
    create(server, "ps-busy", "--env", "FAKE_LLAMA_STREAM_INTERVAL=2", "--idle-timeout", "30")
    for name in ("ps-idle", "ps-busy"):
        started = server.run("instances", "start", name, "--wait", "--timeout", "20")
        assert started.exit_code == 0, started.output

    body = {"model": "ps-busy", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": "Bearer sk-inf"}
    url = f"{server.url}/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        events = response.iter_lines()  # kept: closing it would close the connection
        assert next(events).startswith("data:")
        shown = server.run("ps")  # while the stream is open: one request in flight
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "MODEL", "BACKEND", "PORT", "READINESS", "IN", "FLIGHT", "IDLE", "UNTIL"
    ]  # fmt: skip
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "ps-stopped" not in rows
    assert all(line == line.rstrip() for line in lines)
    header = lines[0]
    busy = rows["ps-busy"]
    assert busy.split()[1:3] == ["/m/x.gguf", "llama_cpp"]
    assert busy[header.index("READINESS") :].split()[:2] == ["ready", "1"], shown.stdout
    assert busy[header.index("IDLE") :].split() == ["-", "-"]
    idle = rows["ps-idle"]
    assert idle[header.index("IN FLIGHT") :].split()[0] == "0"
    assert idle[header.index("IDLE") :].split()[0].endswith("s")

    as_json = server.run("ps", "--json")
    names = [instance["name"] for instance in json.loads(as_json.stdout)]
    assert "ps-idle" in names and "ps-busy" in names and "ps-stopped" not in names
    for name in ("ps-idle", "ps-busy"):
        server.run("instances", "stop", name)

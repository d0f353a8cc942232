"""The exit codes: one table (``cli/exits.py``), documented in the README, each one
produced by real commands against a real server (see ``conftest.py``)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import Result

from llamactl.cli.exits import ExitCode, exit_code
from llamactl.errors import (
    ApiError,
    ConfigError,
    DatabaseError,
    JsonImportError,
    LlamactlError,
    Unreachable,
)
from tests.support.cli import Server, create, invoke
from tests.support.net import free_port
from tests.support.server_process import environment

README = Path(__file__).resolve().parents[2] / "README.md"
SUBPROCESS_SECONDS = 60


def readme_rows() -> list[tuple[str, str, str]]:
    """The rows of the README's exit-code table: code, name, meaning."""
    text = README.read_text(encoding="utf-8")
    table = text.split("| code | name | meaning |\n|---|---|---|\n", 1)[1]
    rows = []
    for line in table.splitlines():
        if not line.startswith("| "):
            break
        code, name, meaning = (cell.strip() for cell in line.strip("|").split(" | "))
        rows.append((code, name, meaning))
    return rows


def test_the_codes_never_change() -> None:
    # Scripts test these numbers: a new kind of failure gets a new number.
    assert {code.name: code.value for code in ExitCode} == {
        "OK": 0,
        "ERROR": 1,
        "USAGE": 2,
        "UNREACHABLE": 3,
    }


def test_the_readme_lists_the_table() -> None:
    assert readme_rows() == [(str(code.value), f"`{code.name}`", code.meaning) for code in ExitCode]


def test_the_instances_help_names_every_code() -> None:
    result = invoke("instances", "--help")
    assert result.exit_code == ExitCode.OK, result.output
    sentence = " ".join(result.stdout.split()).split("Exit codes: ", 1)[1].split(".")[0]
    assert [int(code) for code in re.findall(r"\b(\d+) ", sentence)] == list(ExitCode)


def test_click_gives_its_errors_the_tables_codes() -> None:
    assert click.UsageError("x").exit_code == ExitCode.USAGE
    assert click.BadParameter("x").exit_code == ExitCode.USAGE
    assert click.ClickException("x").exit_code == ExitCode.ERROR


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Unreachable("cannot reach llamactl at http://h:1: timed out"), ExitCode.UNREACHABLE),
        (ApiError(401, "unauthorized", "Invalid API key"), ExitCode.ERROR),
        (ApiError(404, "instance_not_found", "instance not found: x"), ExitCode.ERROR),
        (ApiError(409, "instance_exists", "instance already exists: x"), ExitCode.ERROR),
        (ApiError(422, "invalid_options", "ctx_size: expected an integer"), ExitCode.ERROR),
        (ApiError(502, "http_error", "HTTP 502 Bad Gateway"), ExitCode.ERROR),
        (ConfigError("server.port: port 80 is already in use"), ExitCode.ERROR),
        (DatabaseError("not a llamactl database"), ExitCode.ERROR),
        (JsonImportError("bad.json is not valid JSON"), ExitCode.ERROR),
    ],
)
def test_each_failure_maps_to_its_code(error: LlamactlError, code: ExitCode) -> None:
    assert exit_code(error) is code


# -- real commands -------------------------------------------------------------------------

Run = Callable[[Server, Path], Result]


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def taken_name(server: Server, tmp_path: Path) -> Result:
    create(server, "exits-taken")
    return server.run("instances", "create", "exits-taken", "--backend", "llama_cpp")


def failed_start(server: Server, tmp_path: Path) -> Result:
    create(server, "exits-broken", "--no-auto-restart", "--env", "FAKE_LLAMA_EXIT_AT_START=3")
    return server.run("instances", "start", "exits-broken", "--wait", "--timeout", "20")


def declined(server: Server, tmp_path: Path) -> Result:
    config = tmp_path / "llamactl.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    return invoke("--config", str(config), "db", "downgrade", "base", input="n\n")


COMMANDS: dict[str, tuple[ExitCode, Run]] = {
    "list": (ExitCode.OK, lambda server, _: server.run("instances", "list")),
    "version": (ExitCode.OK, lambda _, __: invoke("--version")),
    "not found": (ExitCode.ERROR, lambda server, _: server.run("instances", "get", "ghost")),
    "name taken": (ExitCode.ERROR, taken_name),
    "wrong key": (
        ExitCode.ERROR,
        lambda server, _: invoke("ps", "--url", server.url, "--api-key", "sk-wrong"),
    ),
    "invalid options": (
        ExitCode.ERROR,
        lambda server, _: server.run(
            "instances", "create", "exits-bad", "--backend", "llama_cpp", "--set", "ctx_size=big"
        ),
    ),
    "failed start": (ExitCode.ERROR, failed_start),
    "bad configuration": (
        ExitCode.ERROR,
        lambda _, tmp_path: invoke("--config", str(tmp_path / "absent.yaml"), "config", "show"),
    ),
    "declined": (ExitCode.ERROR, declined),
    "no backend": (ExitCode.USAGE, lambda server, _: server.run("instances", "create", "x")),
    "unknown command": (ExitCode.USAGE, lambda _, __: invoke("instances", "frobnicate")),
    "bad port": (ExitCode.USAGE, lambda _, __: invoke("serve", "--port", "70000")),
    "unknown key": (
        ExitCode.USAGE,
        lambda server, _: server.run(
            "instances", "create", "x", "--backend", "llama_cpp", "--set", "nope=1"
        ),
    ),
    "closed port": (
        ExitCode.UNREACHABLE,
        lambda _, __: invoke("instances", "list", "--url", closed_url(), "--api-key", "k"),
    ),
}


def test_every_code_has_a_command_that_produces_it() -> None:
    assert {code for code, _ in COMMANDS.values()} == set(ExitCode)


@pytest.mark.parametrize("case", list(COMMANDS))
def test_the_command_exits_with_its_code(server: Server, tmp_path: Path, case: str) -> None:
    code, run = COMMANDS[case]
    result = run(server, tmp_path)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if code is ExitCode.ERROR:
        assert result.stderr.strip(), "a failure says what happened"


PROCESS_COMMANDS: dict[ExitCode, Callable[[Server], list[str]]] = {
    ExitCode.OK: lambda server: ["instances", "list", "--url", server.url],
    ExitCode.ERROR: lambda server: ["instances", "get", "ghost", "--url", server.url],
    ExitCode.USAGE: lambda server: ["instances", "create", "x", "--url", server.url],
    ExitCode.UNREACHABLE: lambda _: ["instances", "list", "--url", closed_url()],
}


@pytest.mark.parametrize("code", list(ExitCode))
def test_the_process_exits_with_the_code(server: Server, tmp_path: Path, code: ExitCode) -> None:
    args = PROCESS_COMMANDS[code](server)
    result = subprocess.run(
        [sys.executable, "-m", "llamactl", *args],
        env=environment(tmp_path, LLAMACTL_API_KEY=server.key),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
        check=False,
    )
    assert result.returncode == code, result.stdout + result.stderr

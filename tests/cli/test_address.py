"""Where the server listens and where the client looks for it.

``llamactl serve --host/--port`` (and bare ``llamactl --port``) choose the address; a port
already in use is one line that names it and says how to choose another; the client's
default URL follows ``LLAMACTL_HOST`` and ``LLAMACTL_PORT``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from llamactl.client import default_url
from llamactl.errors import ConfigError
from tests.support.cli import Server, invoke
from tests.support.net import free_port
from tests.support.server_process import environment, stop, wait_healthy

EXIT_SECONDS = 60


def launch(home: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "llamactl", *args],
        cwd=home,
        env=environment(home, LLAMACTL_DATA_DIRECTORY=str(home / "data"), **env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://127.0.0.1:8080"),
        ({"LLAMACTL_PORT": "9123"}, "http://127.0.0.1:9123"),
        ({"LLAMACTL_HOST": "0.0.0.0", "LLAMACTL_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"LLAMACTL_HOST": "::"}, "http://127.0.0.1:8080"),
        ({"LLAMACTL_HOST": "192.168.1.5"}, "http://192.168.1.5:8080"),
        ({"LLAMACTL_HOST": "::1", "LLAMACTL_PORT": " 81 "}, "http://[::1]:81"),
    ],
)
def test_the_default_url_follows_the_server_settings(environ: dict[str, str], url: str) -> None:
    assert default_url(environ) == url


@pytest.mark.parametrize("port", ["http", "0", "70000", "-1"])
def test_a_bad_port_variable_is_named(port: str) -> None:
    with pytest.raises(ConfigError, match=r"^LLAMACTL_PORT: expected a port from 1 to 65535"):
        default_url({"LLAMACTL_PORT": port})


def test_the_client_finds_a_server_on_llamactl_port(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    result = invoke("instances", "list", "--api-key", server.key, LLAMACTL_PORT=port)
    assert result.exit_code == 0, result.output
    ps = invoke("ps", "--api-key", server.key, LLAMACTL_HOST="0.0.0.0", LLAMACTL_PORT=port)
    assert ps.exit_code == 0, ps.output

    bad = invoke("instances", "list", "--api-key", server.key, LLAMACTL_PORT="eighty")
    assert bad.exit_code == 1
    assert bad.stderr.startswith("llamactl: LLAMACTL_PORT: expected a port from 1 to 65535")


def test_an_unreachable_default_points_to_llamactl_port() -> None:
    result = invoke("instances", "list", "--api-key", "k", LLAMACTL_PORT=str(free_port()))
    assert result.exit_code == 3
    assert "LLAMACTL_PORT" in result.stderr and "LLAMACTL_URL" in result.stderr


@pytest.mark.parametrize("args", [["serve", "--port"], ["--port"]])
def test_serve_listens_on_the_port_given(tmp_path: Path, args: list[str]) -> None:
    port = free_port()
    process = launch(tmp_path, *args, str(port), LLAMACTL_PORT=str(free_port()))
    try:
        health = wait_healthy(process, f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 200
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert f"listening on http://127.0.0.1:{port}" in output


def test_a_busy_port_says_which_and_how_to_choose_another(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        process = launch(tmp_path, "serve", LLAMACTL_PORT=str(port))
        output, _ = process.communicate(timeout=EXIT_SECONDS)
    assert process.returncode == 1, output
    last = output.strip().splitlines()[-1]
    assert last == (
        f"llamactl: server.port: port {port} on 127.0.0.1 is already in use (another llamactl?):"
        " start with --port N or set LLAMACTL_PORT (or server.port in the configuration)"
    )
    assert "Errno" not in output and "Traceback" not in output
    assert not (tmp_path / "data" / "llamactl.db").exists()  # nothing started


def test_serve_refuses_a_port_out_of_range() -> None:
    result = invoke("serve", "--port", "70000")
    assert result.exit_code == 2
    assert "--port" in result.stderr


def test_a_name_with_a_slash_gets_the_naming_rule(server: Server) -> None:
    result = server.run("instances", "create", "org/model", "--backend", "llama_cpp")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("llamactl: Invalid instance name 'org/model': it cannot contain '/';")
    assert "letters, digits" in line


@pytest.mark.parametrize(
    ("platform", "environ"),
    [
        ("linux", {"HOME": "/home/u"}),
        ("linux", {"HOME": "."}),
        ("darwin", {"HOME": "/Users/u"}),
        ("win32", {"USERPROFILE": "C:\\Users\\u", "LOCALAPPDATA": "C:\\Users\\u\\AppData"}),
        ("win32", {"USERPROFILE": "C:\\Users\\u", "PROGRAMDATA": "D:\\Data"}),
        ("win32", {"USERPROFILE": "C:\\Users\\u"}),
    ],
)
def test_the_quick_data_dir_is_the_platform_default(
    monkeypatch: pytest.MonkeyPatch, platform: str, environ: dict[str, str]
) -> None:
    from llamactl import client
    from llamactl.config import default_data_dir

    monkeypatch.setattr(client.sys, "platform", platform)
    home = Path(environ.get("HOME") or environ["USERPROFILE"])
    assert client._platform_data_dir(environ) == default_data_dir(platform, environ, home)


def test_a_key_file_elsewhere_is_found_after_the_guess_is_refused(
    server: Server, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    guessed = home / ".local" / "share" / "llamactl" / "management.key"
    guessed.parent.mkdir(parents=True)
    guessed.write_text("sk-stale-default\n")
    real = tmp_path / "real-data"
    real.mkdir()
    (real / "management.key").write_text(server.key)
    config = tmp_path / "llamactl.yaml"
    config.write_text(f"data_dir: {real}\n")
    env = {"HOME": str(home), "LLAMACTL_URL": server.url}

    result = invoke("instances", "list", "--json", LLAMACTL_CONFIG_PATH=str(config), **env)
    assert result.exit_code == 0, result.output
    followed = invoke("--config", str(config), "ps", **env)
    assert followed.exit_code == 0, followed.output

    (real / "management.key").write_text("sk-also-wrong")
    refused = invoke("instances", "list", LLAMACTL_CONFIG_PATH=str(config), **env)
    assert refused.exit_code == 1
    assert str(real / "management.key") in refused.stderr

"""``llamactl instances ...`` against a real server on a socket (see ``conftest.py``)."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from unittest import mock

import pytest

from llamactl.client import ApiClient, ApiError, Unreachable
from tests.support.cli import Server, api_get, create, invoke, launch
from tests.support.net import free_port
from tests.support.server_process import environment, stop

DEADLINE_SECONDS = 15


def assert_one_line_error(stderr: str, code: int, exit_code: int) -> str:
    assert exit_code == code, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# -- reading -------------------------------------------------------------------------------


def test_list_shows_a_table_and_json_is_the_servers(server: Server) -> None:
    create(server, "listed", "--set", "ctx_size=1024")
    table = server.run("instances", "list")
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[0].split()
    assert header == [
        "NAME", "BACKEND", "STATUS", "READINESS", "PORT", "RESTARTS", "NODE", "FAILURE"
    ]  # fmt: skip
    port = api_get(server, "/instances/listed").json()["options"]["backend_options"]["port"]
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith("listed "))
    assert row == ["listed", "llama_cpp", "stopped", "-", str(port), "0", "main", "-"]

    as_json = server.run("instances", "list", "--json")
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == api_get(server, "/instances").json()
    assert as_json.stdout.startswith("[\n  {")  # indented for reading


def test_get_shows_options_and_json(server: Server) -> None:
    create(server, "shown", "--set", "ctx_size=2048", "--env", "A=b")
    view = server.run("instances", "get", "shown")
    assert view.exit_code == 0, view.output
    fields = {
        parts[0]: parts[1].strip() if len(parts) > 1 else ""
        for parts in (line.split(None, 1) for line in view.stdout.splitlines())
    }
    assert fields["status"] == "stopped"
    assert fields["backend_type"] == "llama_cpp"
    assert fields["backend_options.ctx_size"] == "2048"
    assert fields["backend_options.model"] == "/m/x.gguf"
    assert fields["environment"] == '{"A": "b"}'

    as_json = server.run("instances", "get", "shown", "--json")
    assert json.loads(as_json.stdout) == api_get(server, "/instances/shown").json()


# -- create and edit -----------------------------------------------------------------------


def test_set_values_are_typed_as_json_when_they_parse(server: Server) -> None:
    result = server.run(
        "instances", "create", "typed", "--backend", "llama_cpp",
        "--model", "/m/typed.gguf",
        "--set", "ctx_size=4096", "--set", "jinja=true", "--set", "alias=small model",
        "--no-on-demand", "--no-auto-restart", "--idle-timeout", "7",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    options = json.loads(result.stdout)["options"]
    assert options["backend_options"]["ctx_size"] == 4096
    assert options["backend_options"]["jinja"] is True
    assert options["backend_options"]["alias"] == "small model"
    assert options["backend_options"]["model"] == "/m/typed.gguf"
    assert (options["on_demand_start"], options["auto_restart"], options["idle_timeout"]) == (
        False,
        False,
        7,
    )


def test_create_from_a_command_line_infers_the_backend(server: Server) -> None:
    result = server.run(
        "instances", "create", "pasted",
        "--from-command", "llama-server -m /m/pasted.gguf -c 2048 --jinja",
        "--set", "ctx_size=8192",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    options = json.loads(result.stdout)["options"]
    assert options["backend_type"] == "llama_cpp"
    backend_options = options["backend_options"]
    assert backend_options["model"] == "/m/pasted.gguf"
    assert backend_options["jinja"] is True
    assert backend_options["ctx_size"] == 8192  # --set wins over the command line


def test_from_command_with_an_unknown_executable_needs_backend(server: Server) -> None:
    result = server.run("instances", "create", "unknown-exe", "--from-command", "myserver -m x")
    assert result.exit_code == 2
    assert "Error: cannot tell the backend of 'myserver': pass --backend" in result.stderr
    assert api_get(server, "/instances/unknown-exe").status_code == 404


def test_edit_changes_only_what_it_is_told(server: Server) -> None:
    create(server, "edited", "--set", "ctx_size=1024", "--set", "jinja=true", "--env", "A=1")
    result = server.run(
        "instances", "edit", "edited",
        "--set", "ctx_size=8192", "--unset", "jinja", "--idle-timeout", "5", "--env", "B=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "edited: stopped"
    options = api_get(server, "/instances/edited").json()["options"]
    assert options["backend_options"]["ctx_size"] == 8192
    assert "jinja" not in options["backend_options"]
    assert options["backend_options"]["model"] == "/m/x.gguf"
    assert options["idle_timeout"] == 5
    assert options["environment"] == {"A": "1", "B": "2"}


def test_edit_unset_of_a_missing_option_is_a_usage_error(server: Server) -> None:
    create(server, "unset-missing")
    result = server.run("instances", "edit", "unset-missing", "--unset", "nope")
    assert result.exit_code == 2
    assert "unset-missing has no option, setting or extra argument 'nope'" in result.stderr
    assert "(set: model, port," in result.stderr


# -- running -------------------------------------------------------------------------------


def test_start_wait_stop_restart_logs_delete(server: Server) -> None:
    create(server, "runner")
    started = server.run("instances", "start", "runner", "--wait", "--timeout", "20")
    assert started.exit_code == 0, started.output
    assert started.stdout.strip() == "runner: running (ready)"

    logs = server.run("instances", "logs", "runner")
    assert logs.exit_code == 0
    assert "=== Instance runner started" in logs.stdout
    assert "main: model loaded" in logs.stdout
    last = server.run("instances", "logs", "runner", "--lines", "1")
    assert last.stdout.count("\n") == 1 and last.stdout in logs.stdout
    assert logs.stdout.endswith("\n")

    restarted = server.run("instances", "restart", "runner", "--json")
    assert restarted.exit_code == 0, restarted.output
    assert json.loads(restarted.stdout)["status"] == "running"

    stopped = server.run("instances", "stop", "runner")
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.strip() == "runner: stopped"

    deleted = server.run("instances", "delete", "runner", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert api_get(server, "/instances/runner").status_code == 404


def test_start_wait_of_a_failing_backend_says_why(server: Server) -> None:
    create(server, "broken", "--no-auto-restart", "--env", "FAKE_LLAMA_EXIT_AT_START=3")
    result = server.run("instances", "start", "broken", "--wait", "--timeout", "20")
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr
    first, *details = result.stderr.strip().splitlines()
    assert first.startswith("llamactl: ") and "exited with code 3" in first
    assert any("FAKE_LLAMA_EXIT_AT_START=3" in line for line in details), result.stderr


def test_delete_asks_for_confirmation_on_a_terminal(server: Server) -> None:
    create(server, "confirmed")
    with mock.patch("llamactl.cli.output.stdin_is_terminal", return_value=True):
        declined = server.run("instances", "delete", "confirmed", input="n\n")
        assert declined.exit_code == 1
        assert api_get(server, "/instances/confirmed").status_code == 200
        accepted = server.run("instances", "delete", "confirmed", input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert api_get(server, "/instances/confirmed").status_code == 404


def test_delete_without_yes_off_a_terminal_is_a_usage_error(server: Server) -> None:
    create(server, "kept")
    result = server.run("instances", "delete", "kept")
    assert result.exit_code == 2
    assert "--yes" in result.stderr
    assert api_get(server, "/instances/kept").status_code == 200


# -- logs -f ---------------------------------------------------------------------------------


class Pump:
    """The lines of a text stream, read by a thread; ``None`` marks the end."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.lines.put(line)
        self.lines.put(None)

    def join(self) -> None:
        self._thread.join(timeout=DEADLINE_SECONDS)

    def read_until(self, wanted: str) -> list[str]:
        """Lines up to the first that contains ``wanted``; fail after DEADLINE_SECONDS."""
        seen: list[str] = []
        deadline = time.monotonic() + DEADLINE_SECONDS
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            if wanted in line:
                return seen
        pytest.fail(f"{wanted!r} did not appear in time; saw {seen!r}")


@dataclass
class Follower:
    process: subprocess.Popen[str]
    stdout: Pump
    stderr: Pump


@contextmanager
def following(server: Server, name: str, home: Path) -> Iterator[Follower]:
    """``llamactl instances logs NAME -f`` in a process, configured by environment."""
    env = environment(home, LLAMACTL_URL=server.url, LLAMACTL_API_KEY=server.key)
    process = subprocess.Popen(
        [sys.executable, "-m", "llamactl", "instances", "logs", name, "-f"],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    follower = Follower(process, Pump(process.stdout), Pump(process.stderr))
    try:
        yield follower
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=DEADLINE_SECONDS)
        follower.stdout.join()
        follower.stderr.join()


def test_logs_follow_prints_output_and_status_until_ctrl_c(server: Server, tmp_path: Path) -> None:
    create(server, "followed")
    with following(server, "followed", tmp_path) as follower:
        follower.stderr.read_until("[status: stopped, readiness: -]")
        started = server.run("instances", "start", "followed", "--wait", "--timeout", "20")
        assert started.exit_code == 0, started.output
        follower.stdout.read_until("=== Instance followed started")
        follower.stdout.read_until("main: model loaded")
        follower.stderr.read_until("[status: running, readiness: ready]")
        follower.process.send_signal(signal.SIGINT)
        assert follower.process.wait(timeout=DEADLINE_SECONDS) == 0
    assert server.run("instances", "stop", "followed").exit_code == 0


def test_logs_follow_exits_3_when_the_server_goes_away(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    process, lone = launch(home)
    try:
        create(lone, "orphan")  # stopped: killing the server leaves no backend behind
        with following(lone, "orphan", tmp_path) as follower:
            follower.stderr.read_until("[status: stopped, readiness: -]")
            process.kill()  # gone without a goodbye
            process.wait(timeout=DEADLINE_SECONDS)
            assert follower.process.wait(timeout=DEADLINE_SECONDS) == 3
            last = follower.stderr.read_until("is the server running?")[-1]
            assert last.startswith("llamactl: ") and lone.url in last
    finally:
        stop(process)


def test_logs_follow_of_an_unknown_instance(server: Server) -> None:
    result = server.run("instances", "logs", "nobody", "-f")
    line = assert_one_line_error(result.stderr, 1, result.exit_code)
    assert "instance not found: nobody" in line


class OneAnswer:
    """A raw socket server that answers one request with ``reply`` bytes, then closes.

    ``request`` is what the client sent (request line and headers), set once it arrived.
    """

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.request = b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        connection, _ = self.listener.accept()
        with connection:
            while b"\r\n\r\n" not in self.request:
                chunk = connection.recv(65536)
                if not chunk:
                    break
                self.request += chunk
            connection.sendall(self.reply)
        self.listener.close()

    def close(self) -> None:
        self.thread.join(DEADLINE_SECONDS)


def test_follow_logs_parses_events_and_comments() -> None:
    stream = (
        b": keep-alive\n\n"
        b'event: log\ndata: {"text": "one\\ntwo\\n"}\n\n'
        b": keep-alive\r\n\r\n"
        b'event: status\ndata: {"status": "running", "readiness": "loading"}\n\n'
    )
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    server = OneAnswer(head + stream)
    with ApiClient(server.url, "k") as api:
        events = list(api.follow_logs("a", 5))
    server.close()
    assert events == [
        ("log", {"text": "one\ntwo\n"}),
        ("status", {"status": "running", "readiness": "loading"}),
    ]
    request_line, *headers = server.request.decode().split("\r\n")
    assert request_line == "GET /api/v1/instances/a/logs/follow?lines=5 HTTP/1.1"
    assert "Authorization: Bearer k" in headers


def test_follow_logs_reports_a_cut_connection() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    server = OneAnswer(head + b"20\r\nevent: log\n")  # a chunk cut short, then closed
    with (
        ApiClient(server.url, None) as api,
        pytest.raises(Unreachable, match=f"cannot reach llamactl at {server.url}"),
    ):
        list(api.follow_logs("a"))
    server.close()


def test_a_non_json_error_names_the_status() -> None:
    reply = (
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 12\r\nConnection: close\r\n\r\nupstream bad"
    )
    server = OneAnswer(reply)
    with ApiClient(server.url, None) as api, pytest.raises(ApiError) as caught:
        api.list_instances()
    server.close()
    assert caught.value.message == "HTTP 502 Bad Gateway: upstream bad"


# -- failures ------------------------------------------------------------------------------


def test_an_unreachable_server_exits_3() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke("instances", "list", "--url", url, "--api-key", "k")
    line = assert_one_line_error(result.stderr, 3, result.exit_code)
    assert line.startswith(f"llamactl: cannot reach llamactl at {url}: ")
    assert "LLAMACTL_URL" in line

    from_env = invoke("instances", "get", "x", LLAMACTL_URL=url)
    assert from_env.exit_code == 3 and url in from_env.stderr


def test_connection_options_before_the_command(server: Server) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    before = invoke("instances", "--url", server.url, "--api-key", server.key, "list", "--json")
    assert before.exit_code == 0, before.output
    assert isinstance(json.loads(before.stdout), list)

    # The group's flags beat the environment; the command's own flags beat the group's.
    over_env = invoke(
        "instances", "--url", server.url, "--api-key", server.key, "list", LLAMACTL_URL=dead
    )
    assert over_env.exit_code == 0, over_env.output
    inner = invoke(
        "instances", "--url", dead, "--api-key", "sk-wrong",
        "list", "--url", server.url, "--api-key", server.key,
    )  # fmt: skip
    assert inner.exit_code == 0, inner.output
    outer_key = invoke("instances", "--api-key", "sk-wrong", "list", "--url", server.url)
    assert outer_key.exit_code == 1 and "refused the key" in outer_key.stderr

    bad = invoke("instances", "--url", "localhost:8080", "list", LLAMACTL_URL=server.url)
    assert bad.exit_code == 2 and "localhost:8080" in bad.output


def test_a_wrong_key_exits_1_and_says_where_keys_come_from(server: Server) -> None:
    result = invoke("instances", "list", "--url", server.url, "--api-key", "sk-wrong")
    line = assert_one_line_error(result.stderr, 1, result.exit_code)
    assert f"llamactl at {server.url} refused the key: Invalid API key" in line
    assert "--api-key" in line and "LLAMACTL_API_KEY" in line and "management.key" in line


def test_a_local_server_key_file_is_used_without_api_key(server: Server, tmp_path: Path) -> None:
    key_file = tmp_path / "management.key"
    key_file.write_text(f"{server.key}\n")
    result = invoke(
        "instances",
        "list",
        "--json",
        LLAMACTL_URL=server.url,
        LLAMACTL_DATA_DIRECTORY=str(tmp_path),
    )
    assert result.exit_code == 0, result.output

    key_file.write_text("sk-stale\n")
    refused = invoke(
        "instances", "list", LLAMACTL_URL=server.url, LLAMACTL_DATA_DIRECTORY=str(tmp_path)
    )
    line = assert_one_line_error(refused.stderr, 1, refused.exit_code)
    assert str(key_file) in line


def test_an_unknown_instance_exits_1(server: Server) -> None:
    for command in ("get", "start", "stop", "restart", "logs"):
        result = server.run("instances", command, "ghost")
        line = assert_one_line_error(result.stderr, 1, result.exit_code)
        assert line.startswith("llamactl: instance not found: ghost"), command
    deleted = server.run("instances", "delete", "ghost", "--yes")
    assert deleted.exit_code == 1 and "instance not found: ghost" in deleted.stderr


def test_a_taken_name_exits_1_and_points_to_edit(server: Server) -> None:
    create(server, "taken")
    result = server.run("instances", "create", "taken", "--backend", "llama_cpp", "--model", "y")
    line = assert_one_line_error(result.stderr, 1, result.exit_code)
    assert "instance already exists: taken" in line
    assert "llamactl instances edit taken" in line


def test_the_servers_validation_message_is_shown(server: Server) -> None:
    result = server.run(
        "instances", "create", "bad-opts", "--backend", "llama_cpp", "--set", "ctx_size=big"
    )
    line = assert_one_line_error(result.stderr, 1, result.exit_code)
    assert "ctx_size" in line


@pytest.mark.parametrize(
    "args",
    [
        ["instances", "create", "x"],  # no backend
        ["instances", "create", "x", "--backend", "llama_cpp", "--set", "novalue"],
        ["instances", "create", "x", "--backend", "tgi"],
        ["instances", "start", "x", "--timeout", "5"],  # --timeout without --wait
        ["instances", "logs", "x", "--lines", "-1"],
        ["instances", "list", "--url", "localhost:8080"],
        ["instances", "frobnicate"],
        ["instances", "get"],
    ],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    # A closed port: a usage error must be found before any request is made (else 3).
    result = invoke(*args, LLAMACTL_URL=f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_loading_progress_is_set_and_unset_like_any_instance_setting(server: Server) -> None:
    create(server, "quiet", "--set", "loading_progress=false")
    assert api_get(server, "/instances/quiet").json()["options"]["loading_progress"] is False
    result = server.run("instances", "edit", "quiet", "--set", "loading_progress=true")
    assert result.exit_code == 0, result.output
    assert api_get(server, "/instances/quiet").json()["options"]["loading_progress"] is True
    result = server.run("instances", "edit", "quiet", "--unset", "loading_progress")
    assert result.exit_code == 0, result.output
    assert "loading_progress" not in api_get(server, "/instances/quiet").json()["options"]
    result = server.run("instances", "edit", "quiet", "--set", "loading_progress=often")
    assert result.exit_code != 0
    assert "loading_progress" in result.output and "often" in result.output

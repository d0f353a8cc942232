"""`llamactl` with no arguments: a real server process on a real socket."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.net import free_port
from tests.support.schema import describe_table, spec_schema
from tests.support.server_process import environment, start, stop, wait_healthy


@pytest.fixture
def server(home: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    port = free_port()
    data_dir = home / ".local" / "share" / "llamactl"
    process = start(home, environment(home, LLAMACTL_PORT=str(port)))
    try:
        yield process, f"http://127.0.0.1:{port}", data_dir
    finally:
        stop(process)


def test_default_server_creates_the_database_and_answers(
    server: tuple[subprocess.Popen[str], str, Path],
) -> None:
    process, url, data_dir = server
    health = wait_healthy(process, f"{url}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert httpx.get(f"{url}/api/v1/version", timeout=5).status_code == 401
    key_file = data_dir / "management.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    version = httpx.get(
        f"{url}/api/v1/version", headers={"Authorization": f"Bearer {key}"}, timeout=5
    )
    assert version.status_code == 200 and version.text.startswith("Version: ")
    database = data_dir / "llamactl.db"
    assert database.is_file()
    with sqlite3.connect(database) as connection:
        columns = describe_table(connection, "instances").columns
        spec = spec_schema().columns
        assert columns[: len(spec)] == spec  # then the columns of migrations 0003 and 0007
        assert [column.name for column in columns[len(spec) :]] == [
            "failure_reason",
            "failure_output",
            "loading_progress",
        ]
    connection.close()
    assert (data_dir / "instances").is_dir() and (data_dir / "logs").is_dir()
    output = stop(process)
    assert process.returncode == 0, output


def test_startup_imports_legacy_files(home: Path) -> None:
    data_dir = home / "data"
    legacy = data_dir / "instances"
    legacy.mkdir(parents=True)
    (legacy / "old.json").write_text(
        json.dumps(
            {
                "name": "old",
                "status": "stopped",
                "created": 1_731_000_000,
                "options": {"backend_type": "llama_cpp", "backend_options": {"model": "/m/x.gguf"}},
            }
        )
    )
    port = free_port()
    process = start(
        home, environment(home, LLAMACTL_PORT=str(port), LLAMACTL_DATA_DIRECTORY=str(data_dir))
    )
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}/healthz")
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    with sqlite3.connect(data_dir / "llamactl.db") as connection:
        rows = connection.execute("SELECT name, created_at FROM instances").fetchall()
    connection.close()
    assert rows == [("old", 1_731_000_000)]
    assert (legacy / "json_archive" / "old.json").is_file() and not (legacy / "old.json").exists()


def test_a_corrupt_legacy_file_stops_startup(home: Path) -> None:
    data_dir = home / "data"
    legacy = data_dir / "instances"
    legacy.mkdir(parents=True)
    (legacy / "broken.json").write_text("{oops")
    result = subprocess.run(
        [sys.executable, "-m", "llamactl"],
        cwd=home,
        text=True,
        capture_output=True,
        env=environment(
            home, LLAMACTL_PORT=str(free_port()), LLAMACTL_DATA_DIRECTORY=str(data_dir)
        ),
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{legacy / 'broken.json'} is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    assert (legacy / "broken.json").read_text() == "{oops"


def test_a_bad_configuration_value_stops_startup_with_one_line(home: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "llamactl"],
        cwd=home,
        text=True,
        capture_output=True,
        env=environment(home, LLAMACTL_DATABASE_MAX_OPEN_CONNECTIONS="lots"),
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "database.max_open_connections" in lines[0]
    assert "lots" in lines[0] and "LLAMACTL_DATABASE_MAX_OPEN_CONNECTIONS" in lines[0]


def test_a_setting_without_effect_is_reported(home: Path, caplog: pytest.LogCaptureFixture) -> None:
    from llamactl.config import load_config
    from llamactl.server.lifecycle import warn_about_settings

    warn_about_settings(load_config(None, {}, cwd=home, home=home))
    assert caplog.records == []
    warn_about_settings(
        load_config(None, {"LLAMACTL_TIMEOUT_CHECK_INTERVAL": "1"}, cwd=home, home=home)
    )
    assert "timeout_check_interval has no effect" in caplog.text


def test_sigterm_with_a_log_follower_connected_exits_promptly(home: Path) -> None:

    port = free_port()
    key = "sk-follow"
    process = start(home, environment(home, LLAMACTL_PORT=str(port), LLAMACTL_MANAGEMENT_KEYS=key))
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    try:
        wait_healthy(process, f"{url}/healthz")
        created = httpx.post(
            f"{url}/api/v1/instances/quiet",
            json={"backend_type": "llama_cpp", "backend_options": {"model": "m"}},
            headers=auth,
        )
        assert created.status_code == 201
        with httpx.stream(
            "GET", f"{url}/api/v1/instances/quiet/logs/follow", headers=auth, timeout=30
        ) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("event: ")  # the stream is open
            began = time.monotonic()
            process.send_signal(signal.SIGTERM)
            for _line in lines:  # ends when the server closes the stream
                pass
        process.wait(timeout=15)
        took = time.monotonic() - began
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert took < 5, f"the server took {took:.1f} s to stop"

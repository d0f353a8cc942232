"""File modes: what llamactl writes is private to its user, and an old install is tightened."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamactl.instance import Status
from llamactl.manager.logs import InstanceLog
from llamactl.server.lifecycle import start_services, stop_services
from tests.support.config import fake_config, fake_options


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def _wide_umask() -> Iterator[None]:
    """The usual umask 022, whatever the test runner has: modes must not depend on it."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_install_is_private(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    services = start_services(config)
    try:
        data = tmp_path / "data"
        assert mode(data) == 0o700
        assert mode(data / "instances") == 0o700
        assert mode(data / "logs") == 0o700
        assert mode(data / "llamactl.db") == 0o600
        assert mode(data / "llamactl.lock") == 0o600
        wal = [data / "llamactl.db-wal", data / "llamactl.db-shm"]
        services.db.count()  # a connection is open: the WAL files exist
        assert all(path.exists() for path in wal)
        assert [mode(path) for path in wal] == [0o600, 0o600]
    finally:
        stop_services(services)


def test_an_instance_log_is_created_private(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    services = start_services(config)
    manager = services.manager

    async def run() -> None:
        await manager.create("one", fake_options())
        await manager.start("one")
        await manager.stop("one")

    try:
        asyncio.run(run())
        assert manager.get("one").status is Status.STOPPED
        log = tmp_path / "data" / "logs" / "one.log"
        assert "=== Instance one started" in log.read_text()
        assert mode(log) == 0o600
    finally:
        stop_services(services)


def test_a_rotated_and_compressed_log_stays_private(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "a.log"
    log = InstanceLog(path, max_bytes=10, compress=True)
    log.open()
    log.write(b"0123456789abc")
    log.close()
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600
    # The rotated file is compressed on a thread of its own: wait until it is done.
    deadline = time.monotonic() + 10
    while list(path.parent.glob("a-*.log")) and time.monotonic() < deadline:
        time.sleep(0.01)
    rotated = list(path.parent.glob("a-*.log*"))
    assert [p.suffix for p in rotated] == [".gz"]
    assert mode(rotated[0]) == 0o600


def test_an_existing_install_is_tightened_with_a_line_each(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = fake_config(tmp_path)
    stop_services(start_services(config))  # an install, as an earlier version left it:
    data = tmp_path / "data"
    logs = data / "logs"
    (logs / "one.log").write_text("HF_TOKEN=hf_secret\n")
    (logs / "one-20260101-000000.log.gz").write_bytes(b"")
    (data / "instances" / "json_archive").mkdir()
    (data / "instances" / "json_archive" / "old.json").write_text("{}")
    singly = {
        data: 0o755,
        data / "instances": 0o755,
        data / "instances" / "json_archive": 0o777,
        logs: 0o755,
        data / "llamactl.db": 0o644,
    }
    in_folders = {
        logs / "one.log": 0o644,
        logs / "one-20260101-000000.log.gz": 0o664,
        data / "instances" / "json_archive" / "old.json": 0o644,
    }
    for path, wider in {**singly, **in_folders}.items():
        path.chmod(wider)
    untouched = logs / "notes.txt"
    untouched.write_text("")
    untouched.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="llamactl"):
        services = start_services(config)
    stop_services(services)

    for path in [*singly, *in_folders]:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    lines = [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()]
    for path, wider in singly.items():
        expected = 0o700 if path.is_dir() else 0o600
        assert f"tightened the mode of {path} from {wider:04o} to {expected:04o} (" in caplog.text
    assert f"tightened the mode of 2 files in {logs} to 0600 at most" in caplog.text
    archive = data / "instances" / "json_archive"
    assert f"tightened the mode of 1 files in {archive} to 0600 at most" in caplog.text
    # SQLite gave the -wal and -shm files it created at open the database file's old mode
    side = {f"{data / 'llamactl.db'}-wal", f"{data / 'llamactl.db'}-shm"}
    named = {line.split()[4] for line in lines if " files in " not in line}
    assert {str(path) for path in singly} <= named <= {str(path) for path in singly} | side
    assert len(lines) == len(named) + 2
    assert mode(untouched) == 0o644  # not llamactl's file


def test_a_second_start_tightens_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = fake_config(tmp_path)
    stop_services(start_services(config))
    with caplog.at_level(logging.WARNING, logger="llamactl"):
        stop_services(start_services(config))
    assert "tightened" not in caplog.text

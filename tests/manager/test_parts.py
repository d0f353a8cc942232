"""The manager's parts on their own: logs, ports, exit statuses, health probe, reaper."""

from __future__ import annotations

import gzip
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llamactl.database.processes import ProcessRecord
from llamactl.errors import Conflict, LimitReached
from llamactl.manager.logs import InstanceLog, read_log, tail_lines
from llamactl.manager.ports import PortAllocator, is_port_free
from llamactl.manager.process import ExitStatus, kill_group
from llamactl.manager.processinfo import process_start_ticks
from llamactl.manager.reaper import is_alive, reap
from tests.support.clock import FakeClock

# -- logs ---------------------------------------------------------------------------------


def test_markers_and_raw_output(tmp_path: Path) -> None:
    log = InstanceLog(tmp_path / "a.log", clock=FakeClock(1_750_000_000.0))
    log.open()
    log.marker("a", "started")
    log.write(b"line one\nline two\n")
    log.marker("a", "stopped")
    log.close()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1_750_000_000))
    assert read_log(tmp_path / "a.log") == (
        f"\n=== Instance a started at {stamp} ===\nline one\nline two\n"
        f"=== Instance a stopped at {stamp} ===\n\n"
    )


def test_log_appends_across_runs_and_drops_writes_after_close(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    for run in ("first", "second"):
        log = InstanceLog(path)
        log.open()
        log.write(f"{run}\n".encode())
        log.close()
        log.write(b"late output\n")
    assert path.read_text() == "first\nsecond\n"


def test_last_lines_for_failure_reasons(tmp_path: Path) -> None:
    log = InstanceLog(tmp_path / "a.log")
    log.open()
    log.write(b"".join(f"line {n}\n".encode() for n in range(100)) + b"\n\npartial")
    assert log.last_lines(3) == ["line 98", "line 99", "partial"]
    log.close()


def test_rotation_by_size(tmp_path: Path) -> None:
    clock = FakeClock(1_750_000_000.0)
    log = InstanceLog(tmp_path / "a.log", max_bytes=100, clock=clock)
    log.open()
    log.write(b"x" * 60 + b"\n")
    log.write(b"y" * 60 + b"\n")  # crosses 100 bytes: rotated after this write
    clock.now += 1
    log.write(b"z\n")
    log.write(b"w" * 120)  # crosses again within the same second
    log.close()
    rotated = sorted(path.name for path in tmp_path.glob("a-*.log"))
    assert len(rotated) == 2
    assert (tmp_path / rotated[0]).read_bytes() == b"x" * 60 + b"\n" + b"y" * 60 + b"\n"
    assert (tmp_path / "a.log").read_bytes() == b""


def test_rotation_can_compress(tmp_path: Path) -> None:
    log = InstanceLog(tmp_path / "a.log", max_bytes=10, compress=True)
    log.open()
    log.write(b"0123456789abc")
    log.close()
    deadline = time.monotonic() + 5
    while not list(tmp_path.glob("a-*.log.gz")):  # compressed by a background thread
        assert time.monotonic() < deadline, "no compressed log appeared"
        time.sleep(0.01)
    (compressed,) = tmp_path.glob("a-*.log.gz")
    deadline = time.monotonic() + 5
    while list(tmp_path.glob("a-*.log")):  # the uncompressed copy goes once it is done
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert gzip.decompress(compressed.read_bytes()) == b"0123456789abc"


def test_tail_lines(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("".join(f"{n:06d} {'x' * 200}\n" for n in range(5000)))
    tail = tail_lines(path, 3).splitlines()
    assert [line[:6] for line in tail] == ["004997", "004998", "004999"]
    assert tail_lines(path, 0) == path.read_text()
    assert tail_lines(tmp_path / "missing.log", 10) == ""
    assert read_log(tmp_path / "missing.log") == ""


# -- ports --------------------------------------------------------------------------------


def test_ports_lowest_free_skipping_taken_ones() -> None:
    held = {8001}
    ports = PortAllocator((8000, 8003), is_free=lambda port: port not in held)
    assert ports.allocate("a") == 8000
    assert ports.allocate("b") == 8002
    ports.reserve("c", 9999)  # outside the range is fine when explicit
    with pytest.raises(Conflict, match="port 9999 is already used by instance c"):
        ports.reserve("d", 9999)
    assert ports.allocate("d") == 8003
    with pytest.raises(LimitReached, match="8000-8003"):
        ports.allocate("e")
    ports.release("b")
    assert ports.allocate("e") == 8002


def test_a_port_the_os_holds_is_not_free() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert not is_port_free(port)
        allocator = PortAllocator((port, port + 1))
        try:
            allocated: int | None = allocator.allocate("a")
        except LimitReached:  # another program on the machine holds port + 1 as well
            allocated = None
        assert allocated != port
    assert is_port_free(port)


# -- processes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returncode", "text", "clean"),
    [
        (0, "exited with code 0", True),
        (3, "exited with code 3", False),
        (-9, "killed by SIGKILL (9)", False),
        (-15, "killed by SIGTERM (15)", False),
    ],
)
def test_exit_status(returncode: int, text: str, clean: bool) -> None:
    status = ExitStatus.from_returncode(returncode)
    assert (status.describe(), status.is_clean) == (text, clean)


def sleeper(*, ignore_term: bool = False) -> subprocess.Popen[bytes]:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('up', flush=True)\ntime.sleep(3600)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"up\n"  # its handlers are installed
    return process


@pytest.mark.anyio
async def test_reap_stops_a_leftover_that_ignores_sigterm() -> None:
    process = sleeper(ignore_term=True)
    try:
        entry = ProcessRecord("x", process.pid, process_start_ticks(process.pid), 0)
        assert await reap([entry], timeout=0.3) == ["x"]
        assert process.wait(timeout=5) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.anyio
async def test_reap_leaves_a_reused_pid_alone() -> None:
    process = sleeper()
    try:
        ticks = process_start_ticks(process.pid)
        assert ticks is not None
        entry = ProcessRecord("x", process.pid, ticks - 1, 0)  # recorded for another process
        assert await reap([entry], timeout=0.3) == []
        assert is_alive(process.pid)
    finally:
        await kill_group(process.pid, 5)
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.anyio
async def test_reap_of_a_dead_pid_is_nothing() -> None:
    process = sleeper()
    process.kill()
    process.wait()
    assert process.stdout is not None
    process.stdout.close()
    assert not is_alive(process.pid)
    assert await reap([ProcessRecord("x", process.pid, None, 0)], timeout=0.3) == []

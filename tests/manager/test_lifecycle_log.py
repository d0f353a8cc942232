"""One INFO line on the ``llamactl`` logger per lifecycle event, over real fake backends."""

from __future__ import annotations

import logging
import re
import socket
from pathlib import Path

import pytest

from llamactl import database
from llamactl.errors import BackendFailed
from llamactl.instance import Status
from llamactl.manager import InstanceManager
from llamactl.proxy import Scheduler
from tests.support.clock import FakeClock
from tests.support.config import FAST, fake_config, fake_options
from tests.support.waiting import status_is, until

pytestmark = pytest.mark.anyio


def lines(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    """The INFO-or-above messages about instance ``name``, in order."""
    prefix = f"instance {name}: "
    return [
        record.getMessage().removeprefix(prefix)
        for record in caplog.records
        if record.name.startswith("llamactl")
        and record.levelno >= logging.INFO
        and record.getMessage().startswith(prefix)
    ]


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llamactl")


async def test_start_ready_and_stop_are_logged(
    manager: InstanceManager, caplog: pytest.LogCaptureFixture
) -> None:
    await manager.create("smollm2", fake_options())
    await manager.start("smollm2")
    await manager.wait_ready("smollm2", timeout=10)
    pid, port = manager.info("smollm2").pid, manager.get("smollm2").options.backend_options.port
    await manager.stop("smollm2")
    started, ready, stopped = lines(caplog, "smollm2")
    assert started == f"started (pid {pid}, port {port})"
    assert re.fullmatch(r"ready in \d+\.\d\d s", ready)
    assert re.fullmatch(r"stopped; took \d+\.\d\d s", stopped)


async def test_crashes_restarts_and_the_final_failure_are_logged(
    manager: InstanceManager, caplog: pytest.LogCaptureFixture
) -> None:
    await manager.create(
        "loop",
        fake_options(
            auto_restart=True,
            max_restarts=2,
            restart_delay=0,
            environment={"FAKE_LLAMA_EXIT_AT_START": "7"},
        ),
    )
    await manager.start("loop")
    await until(manager, "loop", status_is(Status.FAILED))
    events = [
        re.sub(r"\(pid \d+, port \d+\)", "(pid, port)", line) for line in lines(caplog, "loop")
    ]
    assert events == [
        "started (pid, port)",
        "exited with code 7; restarting in 0 s (1/2)",
        "started (pid, port)",
        "exited with code 7; restarting in 0 s (2/2)",
        "started (pid, port)",
        "failed: exited with code 7 (after 2 restarts)",
    ]


async def test_a_clean_exit_is_logged_as_stopped(
    manager: InstanceManager, caplog: pytest.LogCaptureFixture
) -> None:
    await manager.create("clean", fake_options(environment={"FAKE_LLAMA_EXIT_AT_START": "0"}))
    await manager.start("clean")
    await until(manager, "clean", status_is(Status.STOPPED))
    assert lines(caplog, "clean")[-1] == "exited with code 0; stopped"


async def test_a_start_that_cannot_spawn_is_logged_as_failed(
    manager: InstanceManager, caplog: pytest.LogCaptureFixture
) -> None:
    await manager.create("busy", fake_options())
    port = manager.get("busy").options.backend_options.port
    assert port is not None
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAIT
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(BackendFailed):
            await manager.start("busy")
    assert lines(caplog, "busy") == [f"failed: port {port} is in use by another program"]


async def test_an_idle_stop_says_how_long_it_was_idle(
    manager: InstanceManager,
    scheduler: Scheduler,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await manager.create("sleepy", fake_options(idle_timeout=5))
    await manager.start("sleepy")
    await manager.wait_ready("sleepy", timeout=10)
    clock.now += 300
    assert await scheduler.check_idle() == ["sleepy"]
    assert re.fullmatch(
        r"stopped \(idle for 300 s\); took \d+\.\d\d s", lines(caplog, "sleepy")[-1]
    )


async def test_an_eviction_names_the_instance_it_makes_room_for(
    tmp_path: Path, db: database.DB, caplog: pytest.LogCaptureFixture
) -> None:
    config = fake_config(tmp_path, LLAMACTL_MAX_RUNNING_INSTANCES="1")
    manager = InstanceManager(config, db, timings=FAST)
    manager.load()
    scheduler = Scheduler(manager, config)
    try:
        for name in ("a", "b"):
            await manager.create(name, fake_options(on_demand_start=True))
        await scheduler.ready("a")
        await scheduler.ready("b")
    finally:
        await manager.shutdown()
    assert re.fullmatch(
        r"stopped to make room for b \(max_running_instances=1\); took \d+\.\d\d s",
        lines(caplog, "a")[2],
    )
    assert re.fullmatch(r"ready in \d+\.\d\d s", lines(caplog, "b")[1])


async def test_shutdown_is_logged_per_instance(
    manager: InstanceManager, caplog: pytest.LogCaptureFixture
) -> None:
    await manager.create("last", fake_options())
    await manager.start("last")
    await manager.shutdown()
    assert re.fullmatch(
        r"stopped \(llamactl is shutting down\); took \d+\.\d\d s", lines(caplog, "last")[-1]
    )

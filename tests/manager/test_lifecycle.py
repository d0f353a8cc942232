"""Backends as real processes: start, readiness, stop, crashes, restarts, idle stop, limits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from llamactl import database
from llamactl.errors import BackendFailed, Conflict, LimitReached
from llamactl.instance import Instance, Status
from llamactl.manager import InstanceManager
from llamactl.manager.reaper import is_alive
from llamactl.manager.runtime import Readiness
from llamactl.proxy import Scheduler
from tests.support.clock import FakeClock
from tests.support.config import FAST, SESSION_PORTS, fake_config, fake_options
from tests.support.records import stored_status
from tests.support.waiting import is_ready, status_is, until

pytestmark = pytest.mark.anyio


def argv_seen(log: Path) -> list[str]:
    """The argv the fake server printed as its first stdout line, from the instance log."""
    for line in log.read_text().splitlines():
        if line.startswith('{"argv"'):
            return list(json.loads(line)["argv"])
    raise AssertionError(f"no argv line in {log}")


async def test_start_starting_ready_stop(manager: InstanceManager, db_path: Path) -> None:
    created = await manager.create(
        "alpha", fake_options(environment={"FAKE_LLAMA_LOAD_SECONDS": "0.4"})
    )
    port = created.options.backend_options.port
    assert port is not None and SESSION_PORTS <= port <= SESSION_PORTS + 99

    started = await manager.start("alpha")
    assert started.status is Status.RUNNING
    assert stored_status(db_path, "alpha") == "running"
    assert manager.info("alpha").readiness is Readiness.STARTING

    await manager.wait_ready("alpha", timeout=10)
    info = manager.info("alpha")
    assert info.readiness is Readiness.READY and info.pid is not None
    reply = httpx.post(
        f"http://127.0.0.1:{port}/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.json()["choices"][0]["message"]["content"] == "echo: hi"

    stopped = await manager.stop("alpha")
    assert stopped.status is Status.STOPPED
    assert stored_status(db_path, "alpha") == "stopped"
    assert not is_alive(info.pid)
    assert manager.info("alpha").readiness is None

    log = manager.log_path("alpha").read_text()
    assert "=== Instance alpha started at " in log and "=== Instance alpha stopped at " in log
    argv = argv_seen(manager.log_path("alpha"))
    assert argv[argv.index("--port") + 1] == str(port)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"


async def test_start_is_idempotent_and_stop_of_stopped_is_a_no_op(
    manager: InstanceManager,
) -> None:
    await manager.create("alpha", fake_options())
    assert (await manager.stop("alpha")).status is Status.STOPPED
    await manager.start("alpha")
    pid = manager.info("alpha").pid
    await manager.start("alpha")
    assert manager.info("alpha").pid == pid


async def test_crash_restarts_after_the_delay_and_becomes_ready(
    manager: InstanceManager, db_path: Path
) -> None:
    await manager.create(
        "crashy",
        fake_options(
            auto_restart=True,
            max_restarts=3,
            restart_delay=1,
            environment={"FAKE_LLAMA_CRASH_AFTER_REQUESTS": "1"},
        ),
    )
    await manager.start("crashy")
    inst = await manager.wait_ready("crashy", timeout=10)
    first_pid = manager.info("crashy").pid
    port = inst.options.backend_options.port
    with pytest.raises(httpx.HTTPError):  # the fake dies after answering; the client may
        httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "x"})
        httpx.post(f"http://127.0.0.1:{port}/v1/completions", json={"prompt": "x"})

    await until(manager, "crashy", status_is(Status.RESTARTING))
    await manager.flush()  # status changes are written behind the manager's memory
    assert stored_status(db_path, "crashy") == "restarting"
    failure = manager.info("crashy").failure
    assert failure is not None and failure.reason == "exited with code 3"

    await until(manager, "crashy", is_ready)
    info = manager.info("crashy")
    assert info.pid != first_pid and info.restarts == 1
    await manager.flush()
    assert stored_status(db_path, "crashy") == "running"


async def test_crash_loop_ends_failed_with_the_reason(
    manager: InstanceManager, db_path: Path
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
    await manager.flush()  # status changes are written behind the manager's memory
    assert stored_status(db_path, "loop") == "failed"
    failure = manager.info("loop").failure
    assert failure is not None
    assert failure.reason == "exited with code 7 (after 2 restarts)"
    assert any("FAKE_LLAMA_EXIT_AT_START" in line or "exit" in line for line in failure.last_lines)
    log = manager.log_path("loop").read_text()
    assert log.count("=== Instance loop started at") == 3
    with pytest.raises(BackendFailed, match="exited with code 7"):
        await manager.wait_ready("loop", timeout=1)


async def test_no_restart_when_max_restarts_is_zero(manager: InstanceManager) -> None:
    await manager.create(
        "once",
        fake_options(
            auto_restart=True, max_restarts=0, environment={"FAKE_LLAMA_EXIT_AT_START": "2"}
        ),
    )
    await manager.start("once")
    await until(manager, "once", status_is(Status.FAILED))
    assert manager.log_path("once").read_text().count("started at") == 1


async def test_stop_during_the_restart_delay_cancels_the_restart(
    manager: InstanceManager, db_path: Path
) -> None:
    await manager.create(
        "delayed",
        fake_options(
            auto_restart=True,
            max_restarts=-1,
            restart_delay=30,
            environment={"FAKE_LLAMA_EXIT_AT_START": "5"},
        ),
    )
    await manager.start("delayed")
    await until(manager, "delayed", status_is(Status.RESTARTING))
    stopped = await manager.stop("delayed")
    assert stopped.status is Status.STOPPED
    assert stored_status(db_path, "delayed") == "stopped"
    assert manager.log_path("delayed").read_text().count("started at") == 1
    assert not await manager.wait_until(
        "delayed", lambda inst, _info: inst.status is not Status.STOPPED, timeout=0.3
    )


async def test_clean_exit_is_stopped_not_restarted(manager: InstanceManager) -> None:
    await manager.create(
        "clean", fake_options(auto_restart=True, environment={"FAKE_LLAMA_EXIT_AT_START": "0"})
    )
    await manager.start("clean")
    await until(manager, "clean", status_is(Status.STOPPED))
    assert manager.info("clean").failure is None


async def test_stop_escalates_to_sigkill(tmp_path: Path, db: database.DB) -> None:
    from dataclasses import replace

    manager = InstanceManager(fake_config(tmp_path), db, timings=replace(FAST, stop_timeout=0.5))
    manager.load()
    try:
        await manager.create(
            "stubborn", fake_options(environment={"FAKE_LLAMA_IGNORE_SIGTERM": "1"})
        )
        await manager.start("stubborn")
        await manager.wait_ready("stubborn", timeout=10)
        pid = manager.info("stubborn").pid
        assert pid is not None
        await manager.stop("stubborn")
        assert not is_alive(pid)
        assert "killed by SIGKILL (9)" in manager.log_path("stubborn").read_text()
    finally:
        await manager.shutdown()


async def test_stop_kills_the_whole_process_group(manager: InstanceManager) -> None:
    await manager.create("family", fake_options(environment={"FAKE_LLAMA_CHILD": "1"}))
    await manager.start("family")
    await manager.wait_ready("family", timeout=10)
    log = manager.log_path("family")
    child = next(
        json.loads(line)["child_pid"]
        for line in log.read_text().splitlines()
        if line.startswith('{"child_pid"')
    )
    assert is_alive(child)
    await manager.stop("family")
    assert not is_alive(child)


async def test_missing_executable_fails_that_instance_only(
    tmp_path: Path, db: database.DB, db_path: Path
) -> None:
    manager = InstanceManager(
        fake_config(tmp_path, LLAMACTL_VLLM_COMMAND="no-such-vllm-here"), db, timings=FAST
    )
    manager.load()
    try:
        await manager.create("good", fake_options())
        await manager.create("broken", {"backend_type": "vllm", "backend_options": {"model": "m"}})
        await manager.start("good")
        with pytest.raises(
            BackendFailed,
            match=r"no-such-vllm-here not found: install it or set backends\.vllm\.command",
        ):
            await manager.start("broken")
        assert manager.get("broken").status is Status.FAILED
        assert stored_status(db_path, "broken") == "failed"
        failure = manager.info("broken").failure
        assert failure is not None and "not found" in failure.reason
        await manager.wait_ready("good", timeout=10)
    finally:
        await manager.shutdown()


async def test_option_values_reach_the_backend_literally(
    manager: InstanceManager, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    hostile = [
        f"; touch {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        'it\'s "quoted"',
        "line\nbreak",
    ]
    await manager.create(
        "literal",
        fake_options(
            backend_options={
                "model": hostile[1],
                "alias": hostile[0],
                "chat_template": hostile[4],
                "extra_args": {"system-prompt": hostile[3], "api-key": hostile[2]},
            }
        ),
    )
    await manager.start("literal")
    await manager.wait_ready("literal", timeout=10)
    argv = argv_seen(manager.log_path("literal"))
    for value in hostile:
        assert value in argv
    assert not marker.exists()


async def test_very_long_output_lines_are_logged_whole(manager: InstanceManager) -> None:
    await manager.create("chatty", fake_options(environment={"FAKE_LLAMA_LONG_LINE": "200000"}))
    await manager.start("chatty")
    await manager.wait_ready("chatty", timeout=10)
    await manager.stop("chatty")
    lines = manager.log_path("chatty").read_text().splitlines()
    assert max(len(line) for line in lines) == 200_000


async def test_idle_timeout_stops_an_idle_instance_and_spares_a_busy_one(
    manager: InstanceManager, scheduler: Scheduler, clock: FakeClock, db_path: Path
) -> None:
    for name in ("idle", "busy", "forever"):
        minutes = 0 if name == "forever" else 1
        await manager.create(name, fake_options(idle_timeout=minutes))
        await manager.start(name)
        await manager.wait_ready(name, timeout=10)

    clock.now += 30
    assert await scheduler.check_idle() == []
    assert manager.info("idle").idle_seconds == pytest.approx(30)
    scheduler.begin("busy")
    assert manager.info("busy").idle_seconds is None  # a request is in flight
    clock.now += 90
    assert await scheduler.check_idle() == ["idle"]
    assert stored_status(db_path, "idle") == "stopped"
    scheduler.end("busy")  # idle time counts from the end of the request
    clock.now += 59
    assert await scheduler.check_idle() == []
    clock.now += 2
    assert await scheduler.check_idle() == ["busy"]
    clock.now += 24 * 3600
    assert await scheduler.check_idle() == []
    assert manager.get("forever").status is Status.RUNNING


async def stop_with_a_request_in_flight(
    manager: InstanceManager, scheduler: Scheduler
) -> asyncio.Task[Instance]:
    """Start "draining", begin a request on it and ask for a stop; return once it drains."""
    await manager.create("draining", fake_options())
    await manager.start("draining")
    await manager.wait_ready("draining", timeout=10)
    scheduler.begin("draining")
    stopping = asyncio.create_task(manager.stop("draining"))
    await until(manager, "draining", status_is(Status.SHUTTING_DOWN))
    return stopping


async def test_stop_waits_for_requests_in_flight(
    manager: InstanceManager, scheduler: Scheduler, db_path: Path
) -> None:
    stopping = await stop_with_a_request_in_flight(manager, scheduler)
    await manager.flush()  # status changes are written behind the manager's memory
    assert stored_status(db_path, "draining") == "shutting_down"
    assert manager.info("draining").pid is not None
    scheduler.end("draining")
    assert (await stopping).status is Status.STOPPED


async def test_a_stop_does_not_wait_for_requests_queued_behind_it(
    manager: InstanceManager, scheduler: Scheduler
) -> None:
    stopping = await stop_with_a_request_in_flight(manager, scheduler)
    scheduler.begin("draining")  # arrives during the stop: it waits for the stop
    scheduler.requests.enter_queue("draining")
    scheduler.end("draining")  # the one forwarded request ends: the drain is over
    # Well before the drain timeout (FAST: 2 s), which a queued request must not hold up.
    stopped = await asyncio.wait_for(stopping, timeout=FAST.drain_timeout / 2)
    assert stopped.status is Status.STOPPED
    info = manager.info("draining")
    assert (info.in_flight, info.queued) == (1, 1)


async def test_limits_refuse_with_clear_errors(tmp_path: Path, db: database.DB) -> None:
    manager = InstanceManager(
        fake_config(
            tmp_path,
            LLAMACTL_MAX_RUNNING_INSTANCES="1",
            LLAMACTL_MAX_INSTANCES="3",
            LLAMACTL_INSTANCE_PORT_RANGE="31500-31501",
        ),
        db,
        timings=FAST,
    )
    manager.load()
    try:
        await manager.create("one", fake_options())
        await manager.create("two", fake_options())
        with pytest.raises(
            LimitReached, match=r"no free port left in instances\.port_range 31500-31501"
        ):
            await manager.create("three", fake_options())
        with pytest.raises(Conflict, match="port 31500 is already used by instance one"):
            await manager.create(
                "three", fake_options(backend_options={"model": "m", "port": 31500})
            )
        await manager.create("three", fake_options(backend_options={"model": "m", "port": 31999}))
        with pytest.raises(LimitReached, match=r"maximum number of instances \(3\) reached"):
            await manager.create("four", fake_options())
        await manager.start("one")
        with pytest.raises(LimitReached, match=r"maximum number of running instances \(1\)"):
            await manager.start("two")
        assert manager.get("two").status is Status.STOPPED
        with pytest.raises(Conflict, match="one is running: stop it before deleting it"):
            await manager.delete("one")
        await manager.delete("two")
        await manager.create("again", fake_options())  # the port of "two" is free again
        assert manager.get("again").options.backend_options.port == 31501
    finally:
        await manager.shutdown()


async def test_update_of_a_running_instance_restarts_it(
    manager: InstanceManager, db_path: Path
) -> None:
    await manager.create("upd", fake_options())
    await manager.start("upd")
    await manager.wait_ready("upd", timeout=10)
    old_pid = manager.info("upd").pid
    old_port = manager.get("upd").options.backend_options.port
    updated = await manager.update(
        "upd", fake_options(backend_options={"model": "/models/new.gguf", "port": 31900})
    )
    assert updated.status is Status.RUNNING
    assert updated.options.backend_options.port == 31900
    await manager.wait_ready("upd", timeout=10)
    assert manager.info("upd").pid != old_pid and not is_alive(old_pid or 0)
    log = manager.log_path("upd").read_text()
    assert "/models/new.gguf" in log.split("=== Instance upd started at")[-1]
    assert stored_status(db_path, "upd") == "running"
    reused = await manager.create("reuse", fake_options())
    assert reused.options.backend_options.port == old_port


async def test_shutdown_stops_all_and_keeps_running_rows(
    tmp_path: Path, db: database.DB, db_path: Path
) -> None:
    manager = InstanceManager(fake_config(tmp_path), db, timings=FAST)
    manager.load()
    pids = []
    for name in ("s1", "s2", "s3"):
        await manager.create(name, fake_options())
        await manager.start(name)
        await manager.wait_ready(name, timeout=10)
        pids.append(manager.info(name).pid)
    await manager.shutdown()
    assert not any(is_alive(pid or 0) for pid in pids)
    assert [stored_status(db_path, name) for name in ("s1", "s2", "s3")] == ["running"] * 3
    assert db.recorded_processes() == []


async def test_boot_reaps_leftovers_and_resumes(tmp_path: Path, db_path: Path) -> None:
    """A manager that vanished without stopping its backend: the next boot reaps and resumes."""
    first_db = database.open(database.DatabaseSettings(path=str(db_path)))
    database.run_migrations(first_db)
    first = InstanceManager(fake_config(tmp_path), first_db, timings=FAST)
    first.load()
    await first.create("kept", fake_options(auto_restart=True))
    await first.create("plain", fake_options(auto_restart=False))
    for name in ("kept", "plain"):
        await first.start(name)
        await first.wait_ready(name, timeout=10)
    old = {name: first.info(name).pid for name in ("kept", "plain")}
    for owner in first._processes.values():  # forget the processes without stopping them
        owner.abandon()
    first_db.close()

    second_db = database.open(database.DatabaseSettings(path=str(db_path)))
    second = InstanceManager(fake_config(tmp_path), second_db, timings=FAST)
    try:
        await second.boot()
        assert not any(is_alive(pid or 0) for pid in old.values())
        assert second.get("plain").status is Status.STOPPED
        assert stored_status(db_path, "plain") == "stopped"
        await second.wait_ready("kept", timeout=10)
        assert second.info("kept").pid not in old.values()
        assert [entry.instance_name for entry in second_db.recorded_processes()] == ["kept"]
    finally:
        await second.shutdown()
        second_db.close()
        for pid in old.values():
            if pid and is_alive(pid):
                os.kill(pid, signal.SIGKILL)


async def test_instances_beyond_the_port_range_load_and_get_a_port_when_one_frees(
    tmp_path: Path, db: database.DB, caplog: pytest.LogCaptureFixture
) -> None:
    from llamactl.instance import Instance, Options

    for name in ("a", "b", "c"):  # stored without ports, as legacy imports can be
        options = Options.from_json(fake_options())
        db.save(Instance(name=name, created=1, status=Status.STOPPED, options=options))
    manager = InstanceManager(
        fake_config(tmp_path, LLAMACTL_INSTANCE_PORT_RANGE="31600-31601"), db, timings=FAST
    )
    manager.load()
    try:
        ports = {name: manager.get(name).options.backend_options.port for name in "abc"}
        assert ports == {"a": 31600, "b": 31601, "c": None}
        assert "1 instances have no port because instances.port_range 31600-31601" in caplog.text
        with pytest.raises(LimitReached, match="no free port left"):
            await manager.start("c")
        await manager.delete("a")
        await manager.start("c")
        assert manager.get("c").options.backend_options.port == 31600
        await manager.wait_ready("c", timeout=10)
    finally:
        await manager.shutdown()


async def test_the_failure_reason_survives_a_restart_of_the_manager(
    tmp_path: Path, db_path: Path, clock: FakeClock
) -> None:
    """Status ``failed`` with its reason and last lines after a restart; cleared by a start."""

    def stored_failure() -> tuple[str | None, list[str] | None]:
        import sqlite3

        connection = sqlite3.connect(db_path)
        try:
            reason, output = connection.execute(
                "SELECT failure_reason, failure_output FROM instances WHERE name = 'dies'"
            ).fetchone()
        finally:
            connection.close()
        return reason, json.loads(output) if output else None

    config = fake_config(tmp_path)
    first_db = database.open(database.DatabaseSettings(path=str(db_path)))
    database.run_migrations(first_db)
    first = InstanceManager(config, first_db, clock=clock, timings=FAST)
    first.load()
    try:
        await first.create("dies", fake_options(environment={"FAKE_LLAMA_EXIT_AT_START": "4"}))
        await first.start("dies")
        await until(first, "dies", status_is(Status.FAILED))
        before = first.info("dies").failure
        assert before is not None and before.reason == "exited with code 4"
        assert before.last_lines
    finally:
        await first.shutdown()
        first_db.close()
    assert stored_failure() == ("exited with code 4", list(before.last_lines))

    second_db = database.open(database.DatabaseSettings(path=str(db_path)))
    database.run_migrations(second_db)
    second = InstanceManager(config, second_db, clock=clock, timings=FAST)
    try:
        await second.boot()
        assert second.get("dies").status is Status.FAILED
        assert second.info("dies").failure == before

        # a start that gets the process up clears it, in memory and on disk
        await second.update("dies", fake_options())
        await second.start("dies")
        await second.wait_ready("dies", timeout=10)
        assert second.info("dies").failure is None
        await second.flush()  # status changes are written behind memory
        assert stored_failure() == (None, None)

        # and a stop after a failure clears it too
        await second.update("dies", fake_options(environment={"FAKE_LLAMA_EXIT_AT_START": "4"}))
        await second.restart("dies")
        await until(second, "dies", status_is(Status.FAILED))
        await second.flush()
        assert stored_failure()[0] == "exited with code 4"
        await second.stop("dies")
        await second.flush()
        assert stored_failure() == (None, None)
    finally:
        await second.shutdown()
        second_db.close()

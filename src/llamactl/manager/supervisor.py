"""Running the backend of an instance: launch, readiness, exit, crash restarts, halt.

The supervisor owns what happens to one backend process from spawn to exit: the command,
the log, the health polling (``starting`` until the first healthy answer, then ``ready``),
and the decision after an exit (``stopped``, ``restarting`` after ``restart_delay``, or
``failed`` with the exit status and the last output lines). Statuses are set through its
host, the manager, which persists each change.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from llamactl.backends import BackendType, instance_section, spec_for
from llamactl.backends.command import build_command, render
from llamactl.config import AppConfig, BackendConfig
from llamactl.database.processes import ProcessRecord
from llamactl.errors import BackendFailed, InvalidOptions
from llamactl.instance import Instance, Options, Status
from llamactl.manager.logs import InstanceLog
from llamactl.manager.persistence import Persistence
from llamactl.manager.ports import connect_host, is_port_free
from llamactl.manager.process import BackendProcess, ExitStatus, spawn
from llamactl.manager.processinfo import process_start_ticks
from llamactl.manager.runtime import Failure, Readiness, Runtime, Timings
from llamactl.transport import Transport

__all__ = ["Host", "Supervisor", "backend_config", "log_stopped"]

logger = logging.getLogger(__name__)
# One INFO line per lifecycle event of an instance (start, ready, exit, restart, stop).
events = logging.getLogger("llamactl")

LOOPBACK = "127.0.0.1"
FAILURE_LINES = 20


def backend_config(config: AppConfig, backend_type: BackendType) -> BackendConfig:
    """The ``backends.<type>`` section for ``backend_type``."""
    return config.backends.section(spec_for(backend_type).config_key)


def log_stopped(name: str, reason: str | None, took: float | None = None) -> None:
    """``instance a: stopped to make room for b (max_running_instances=1); took 0.31 s``."""
    text = f"stopped {reason}" if reason else "stopped"
    if took is not None:
        text += f"; took {took:.2f} s"
    events.info("instance %s: %s", name, text)


class Host(Protocol):
    """What the supervisor needs from the manager."""

    def exists(self, name: str) -> bool: ...

    def instance(self, name: str) -> Instance: ...

    def runtime(self, name: str) -> Runtime: ...

    def set_status(self, name: str, status: Status) -> None:
        """Take ``status`` (written to the database soon) and wake everything waiting."""

    def publish_status(self, name: str) -> None:
        """Tell waiters and followers that the status or readiness of ``name`` changed."""

    async def drained(self, name: str, timeout: float) -> bool:
        """Wait until the backend of ``name`` serves no request; False after ``timeout``."""


class Supervisor:
    """Starts backends and watches them until they end."""

    def __init__(
        self,
        config: AppConfig,
        store: Persistence,
        host: Host,
        *,
        clock: Callable[[], float],
        timings: Timings,
        logs_dir: Path,
        transport: Transport,
    ) -> None:
        self._config = config
        self._transport = transport
        self._store = store
        self._host = host
        self._clock = clock
        self._timings = timings
        self._logs_dir = logs_dir

    def reconfigure(self, config: AppConfig) -> None:
        self._config = config

    def log_path(self, name: str) -> Path:
        return self._logs_dir / f"{name}.log"

    async def halt(self, name: str) -> None:
        runtime = self._host.runtime(name)
        if runtime.restart_task is not None:
            runtime.restart_task.cancel()
        process = runtime.process
        if process is not None:
            runtime.stopping = True
            began = time.monotonic()
            await process.stop(self._timings.stop_timeout)
            await runtime.wait_for(lambda: runtime.process is None, 5.0)
            log_stopped(name, "(llamactl is shutting down)", time.monotonic() - began)
        for task in list(runtime.tasks):
            task.cancel()

    def restore_failure(self, name: str, failure: Failure) -> None:
        """Remember the failure a stored instance carries (from before a restart)."""
        self._host.runtime(name).failure = failure

    async def stop(self, name: str, reason: str | None = None) -> None:
        """Stop ``name`` (lock held): cancel a pending restart, let the requests the
        backend serves end (within ``drain_timeout``), signal, wait for the exit.

        ``reason`` completes the log line ("stopped to make room for b").
        """
        runtime = self._host.runtime(name)
        if runtime.restart_task is not None:
            runtime.restart_task.cancel()
            runtime.restart_task = None
        process = runtime.process
        if process is None:
            status = self._host.instance(name).status
            runtime.failure = None
            self._host.set_status(name, Status.STOPPED)  # also stores the cleared failure
            if status is not Status.STOPPED:
                called_off = "(its restart is called off)" if status is Status.RESTARTING else ""
                log_stopped(name, reason or called_off)
            return
        began = time.monotonic()
        runtime.stopping = True
        self._host.set_status(name, Status.SHUTTING_DOWN)
        # Requests queued meanwhile wait for this stop (then start the instance again):
        # the drain waits only for those the backend is serving.
        await self._host.drained(name, self._timings.drain_timeout)
        await process.stop(self._timings.stop_timeout)
        await runtime.wait_for(lambda: runtime.process is None, 5.0)
        runtime.failure = None
        self._host.set_status(name, Status.STOPPED)
        log_stopped(name, reason, time.monotonic() - began)

    async def launch(self, name: str, *, fresh: bool = False) -> None:
        """Spawn the backend of ``name`` (lock held); ``running`` once the process is up.

        ``fresh``: a start asked for (not a crash restart), so the restart budget is full.
        """
        inst = self._host.instance(name)
        runtime = self._host.runtime(name)
        if fresh:
            runtime.restarts = 0
        options = inst.options
        port = options.backend_options.port
        assert port is not None, "every instance holds a port"
        host = options.backend_options.host or LOOPBACK
        backend = instance_section(self._config.backends, options.backend_options)
        command = build_command(options, backend, port=port, host=LOOPBACK, name=name)
        log = self._open_log(name)
        log.write(f"$ {render(command.argv)}\n".encode())
        try:
            if not is_port_free(port, LOOPBACK):
                raise BackendFailed(f"port {port} is in use by another program")
            process = await spawn(
                command.argv, command.environment, log, command_hint=self._hint(options)
            )
        except BackendFailed as exc:
            log.write(f"{exc.message}\n".encode())
            log.marker(name, "stopped")
            log.close()
            runtime.failure = Failure(exc.message)
            self._host.set_status(name, Status.FAILED)
            events.info("instance %s: failed: %s", name, exc.message)
            raise
        self._adopt(name, runtime, process, log)
        events.info("instance %s: started (pid %d, port %d)", name, process.pid, port)
        self._track(runtime, self._supervise(name, process))
        self._track(runtime, self._watch_health(name, process, host, port, time.monotonic()))

    def _adopt(
        self, name: str, runtime: Runtime, process: BackendProcess, log: InstanceLog
    ) -> None:
        runtime.process, runtime.log = process, log
        runtime.readiness, runtime.ready_since = Readiness.STARTING, None
        runtime.stopping, runtime.failure = False, None
        runtime.active_since = self._clock()
        entry = ProcessRecord(name, process.pid, process_start_ticks(process.pid), int(time.time()))
        self._store.defer_record(entry)
        self._host.set_status(name, Status.RUNNING)

    def _open_log(self, name: str) -> InstanceLog:
        settings = self._config.instances
        max_bytes = settings.log_rotation_max_size * 1024 * 1024
        runtime = self._host.runtime(name)
        log = InstanceLog(
            self.log_path(name),
            max_bytes=max_bytes if settings.log_rotation_enabled else None,
            compress=settings.log_rotation_compress,
            on_write=lambda data: runtime.publish("log", {"text": data.decode("utf-8", "replace")}),
        )
        try:
            log.open()
        except OSError as exc:
            raise BackendFailed(f"cannot open the log file {log.path}: {_reason(exc)}") from exc
        log.marker(name, "started")
        if log.error is not None:  # a backend is not started without a log it can write
            error = log.error
            log.close()
            raise BackendFailed(
                f"cannot write the log file {log.path}: {_reason(error)}"
            ) from error
        return log

    def _hint(self, options: Options) -> str:
        if options.command_override:
            return "command_override"
        return f"backends.{spec_for(options.backend_type).config_key}.command"

    async def _supervise(self, name: str, process: BackendProcess) -> None:
        """Wait for the process to end; decide between stopped, restarting and failed."""
        status = await process.wait()
        runtime = self._host.runtime(name)
        self._release_process(name, runtime, status)
        if runtime.stopping or not self._host.exists(name):
            runtime.stopping = False
            runtime.notify()
            return
        async with runtime.lock:
            self._after_crash(name, runtime, status)
        runtime.notify()

    def _release_process(self, name: str, runtime: Runtime, status: ExitStatus) -> None:
        log = runtime.log
        if log is not None:
            log.write(f"process {status.describe()}\n".encode())
            runtime.failure = Failure(status.describe(), tuple(log.last_lines(FAILURE_LINES)))
            log.marker(name, "stopped")
            log.close()
        runtime.process, runtime.log, runtime.readiness = None, None, None
        if self._host.exists(name):
            self._store.defer_forget(name)

    def _after_crash(self, name: str, runtime: Runtime, status: ExitStatus) -> None:
        inst = self._host.instance(name)
        if status.is_clean:
            runtime.failure = None
            self._host.set_status(name, Status.STOPPED)
            events.info("instance %s: %s; stopped", name, status.describe())
            return
        stable_since = runtime.ready_since
        if stable_since is not None and self._clock() - stable_since >= self._timings.stable_after:
            runtime.restarts = 0
        options = inst.options
        limit = options.max_restarts if options.max_restarts is not None else 0
        if options.auto_restart and (limit < 0 or runtime.restarts < limit):
            self._host.set_status(name, Status.RESTARTING)
            delay = float(options.restart_delay or 0)
            runtime.restart_task = asyncio.create_task(self._restart_later(name, delay))
            count = f"{runtime.restarts + 1}" + (f"/{limit}" if limit >= 0 else "")
            events.info(
                "instance %s: %s; restarting in %g s (%s)", name, status.describe(), delay, count
            )
            return
        if runtime.failure is not None and runtime.restarts:
            reason = f"{runtime.failure.reason} (after {runtime.restarts} restarts)"
            runtime.failure = dataclasses.replace(runtime.failure, reason=reason)
        self._host.set_status(name, Status.FAILED)
        reason = runtime.failure.reason if runtime.failure else status.describe()
        events.info("instance %s: failed: %s", name, reason)

    async def _restart_later(self, name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        runtime = self._host.runtime(name)
        async with runtime.lock:
            runtime.restart_task = None
            if (
                not self._host.exists(name)
                or self._host.instance(name).status is not Status.RESTARTING
            ):
                return
            runtime.restarts += 1
            with contextlib.suppress(BackendFailed):  # launch logged why; it is failed
                await self.launch(name)
        runtime.notify()

    async def _watch_health(
        self, name: str, process: BackendProcess, host: str, port: int, began: float
    ) -> None:
        """Poll the health endpoint: ``starting`` until the first 200, then ``ready``.

        ``began`` is when the process was spawned (``time.monotonic``), for the log line.
        """
        runtime = self._host.runtime(name)
        path, statuses = self._health_check(self._host.instance(name).options)
        failures = 0
        while runtime.process is process:
            status = await self._transport.probe(connect_host(host), port, path, 2.0)
            healthy = status in statuses
            if runtime.process is not process:
                return
            failures = 0 if healthy else failures + 1
            self._record_health(name, runtime, healthy, failures, began)
            starting = runtime.readiness is Readiness.STARTING
            await asyncio.sleep(
                self._timings.health_poll if starting else self._timings.health_interval
            )

    def _health_check(self, options: Options) -> tuple[str, range]:
        """The readiness endpoint of an instance and the statuses that mean ready."""
        spec = spec_for(options.backend_type)
        try:
            section = instance_section(self._config.backends, options.backend_options)
        except InvalidOptions:  # its entry went in a reload while it runs: the default
            return spec.health_path, spec.healthy_statuses
        return section.health_path or spec.health_path, spec.healthy_statuses

    def _record_health(
        self, name: str, runtime: Runtime, healthy: bool, failures: int, began: float
    ) -> None:
        if healthy and runtime.readiness is not Readiness.READY:
            if runtime.ready_since is None:
                runtime.ready_since = self._clock()
                runtime.active_since = self._clock()
                events.info("instance %s: ready in %.2f s", name, time.monotonic() - began)
            else:
                events.info("instance %s: healthy again", name)
            runtime.readiness = Readiness.READY
            self._host.publish_status(name)
        elif runtime.readiness is Readiness.READY and failures >= self._timings.unhealthy_after:
            runtime.readiness = Readiness.UNHEALTHY
            self._host.publish_status(name)
            events.warning(
                "instance %s: unhealthy (%d health checks failed in a row)", name, failures
            )

    def _track(self, runtime: Runtime, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        runtime.tasks.add(task)
        task.add_done_callback(runtime.tasks.discard)


def _reason(exc: OSError) -> str:
    """``no space left on device``, ``permission denied``: the system's words for it."""
    return os.strerror(exc.errno).lower() if exc.errno is not None else str(exc)

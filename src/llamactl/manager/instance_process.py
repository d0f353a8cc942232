"""The owner of one instance's backend process, from spawn to exit.

An ``InstanceProcess`` is the only writer of what an instance is beyond its stored row:
the status it runs in, the process, its log, readiness (``starting`` until the health
endpoint first answers, then ``ready``), the failure and the restart budget, the restart
task, and the lock that serialises operations on the instance. After every change it
calls its one callback, with which the manager stores the status and the failure.

Its interface is small: ``start``, ``stop`` (draining the requests the backend serves),
``halt``, ``wait_ready``, ``info``, and following its log and status.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamactl.backends import BackendType, instance_section, section_key, spec_for
from llamactl.backends.command import Command, build_command, render
from llamactl.config import AppConfig, BackendConfig
from llamactl.database.processes import ProcessRecord
from llamactl.errors import BackendFailed, ConfigError, InvalidOptions
from llamactl.instance import Options, Status
from llamactl.manager.lifecycle import Lifecycle, NoLifecycle, StopCause
from llamactl.manager.logs import InstanceLog
from llamactl.manager.persistence import Persistence
from llamactl.manager.ports import LOOPBACK, connect_host, is_port_free
from llamactl.manager.process import BackendProcess, ExitStatus, spawn
from llamactl.manager.processinfo import process_start_ticks
from llamactl.manager.registry import OCCUPYING
from llamactl.manager.runtime import (
    Event,
    Failure,
    Followers,
    Readiness,
    RuntimeInfo,
    Signal,
    Timings,
)
from llamactl.manager.traffic import NoTraffic, Traffic
from llamactl.transport import Transport

__all__ = ["LOOPBACK", "Environment", "InstanceProcess", "backend_config", "log_stopped"]

logger = logging.getLogger(__name__)
# One INFO line per lifecycle event of an instance (start, ready, exit, restart, stop).
events = logging.getLogger("llamactl")

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


@dataclass
class Environment:
    """What every instance process shares: the settings (replaced on a reload), where
    process records are written, the clock, the intervals, the logs folder, the transport
    of the health probes, and the requests (the proxy's scheduler, once there is one)."""

    config: AppConfig
    store: Persistence
    clock: Callable[[], float]
    timings: Timings
    logs_dir: Path
    transport: Transport
    traffic: Traffic = dataclasses.field(default_factory=NoTraffic)
    lifecycle: Lifecycle = dataclasses.field(default_factory=NoLifecycle)


class InstanceProcess:
    """The backend of one instance; see the module docstring.

    ``on_change(self)`` runs after every change of status, readiness or failure.
    """

    def __init__(
        self,
        name: str,
        env: Environment,
        on_change: Callable[[InstanceProcess], None],
        *,
        status: Status = Status.STOPPED,
        failure: Failure | None = None,
    ) -> None:
        self.name = name
        self.lock = asyncio.Lock()
        self._env = env
        self._on_change = on_change
        self._status = status
        self._failure = failure  # the reason of a failure, also from before a restart
        self._readiness: Readiness | None = None
        self._process: BackendProcess | None = None
        self._log: InstanceLog | None = None
        self._options: Options | None = None  # what the process was started with
        self._ready_since: float | None = None
        # Clock time of the start of the process, then of its first readiness: idle time
        # counts from it (or from the end of a later request).
        self._active_since: float | None = None
        self._restarts = 0
        self._stopping = False
        self._deleted = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._restart_task: asyncio.Task[None] | None = None
        self._changed = Signal()  # notified on every change: waiters look again
        self._followers = Followers()

    # -- state --------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self._status

    @property
    def failure(self) -> Failure | None:
        return self._failure

    @property
    def readiness(self) -> Readiness | None:
        return self._readiness

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def ready(self) -> bool:
        """Whether requests may be forwarded now (cheap: the proxy asks often)."""
        return self._status is Status.RUNNING and self._readiness is Readiness.READY

    def info(self, now: float) -> RuntimeInfo:
        traffic = self._env.traffic.info(self.name)
        times = [t for t in (self._active_since, traffic.last_end) if t is not None]
        last_activity = max(times) if times else None
        idle = (
            max(0.0, now - last_activity)
            if last_activity is not None and traffic.in_flight == 0 and self._process
            else None
        )
        return RuntimeInfo(
            readiness=self._readiness,
            pid=self.pid,
            failure=self._failure,
            restarts=self._restarts,
            in_flight=traffic.in_flight,
            queued=traffic.queued,
            last_activity=last_activity,
            idle_seconds=idle,
        )

    def status_event(self) -> dict[str, object]:
        """The status and readiness, as a follower's ``status`` event carries them."""
        readiness = self._readiness.value if self._readiness else None
        return {"status": self._status.value, "readiness": readiness}

    def log_path(self) -> Path:
        return self._env.logs_dir / f"{self.name}.log"

    async def wait_for(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``done()``, looking again at every change; False after ``timeout`` s."""
        return await self._changed.wait_for(done, timeout)

    async def wait_ready(self, timeout: float) -> None:
        """Wait until the backend answers its health check; ``BackendFailed`` if it cannot."""

        def settled() -> bool:
            return self._status not in OCCUPYING or self._readiness is Readiness.READY

        if not await self.wait_for(settled, timeout):
            raise BackendFailed(f"instance {self.name} did not become ready within {timeout:g} s")
        if self._status is not Status.RUNNING:
            failure = self._failure.reason if self._failure else self._status.value
            raise BackendFailed(f"instance {self.name} is not running: {failure}")

    # -- following ----------------------------------------------------------------------

    @property
    def following(self) -> int:
        """How many follow the log and status."""
        return len(self._followers)

    def follow(self) -> asyncio.Queue[Event | None]:
        return self._followers.follow()

    def unfollow(self, queue: asyncio.Queue[Event | None]) -> None:
        self._followers.unfollow(queue)
        self._notify()

    def end_followers(self) -> None:
        self._followers.end()

    def deleted(self) -> None:
        """The instance is gone: followers get a last ``deleted`` event, then their end."""
        self._deleted = True
        self._followers.publish("deleted", {"name": self.name})
        self._followers.end()

    # -- lifecycle (each with ``lock`` held) --------------------------------------------

    def mark_stopped(self) -> None:
        """Take ``stopped`` without a process (a stored status that cannot resume)."""
        self._set(Status.STOPPED)

    async def start(self, options: Options, *, fresh: bool = True) -> None:
        """Spawn the backend with ``options``; ``running`` once the process is up.

        ``fresh``: a start asked for (not a crash restart), so the restart budget is full.
        """
        if fresh:
            self._restarts = 0
        self._options = options
        port = options.backend_options.port
        assert port is not None, "every instance holds a port"
        host = options.backend_options.host or LOOPBACK
        command = self._command(options, port)
        log = self._open_log()
        log.write(f"$ {render(command.argv)}\n".encode())
        try:
            if not is_port_free(port, LOOPBACK):
                raise BackendFailed(f"port {port} is in use by another program")
            process = await spawn(
                command.argv, command.environment, log, command_hint=_hint(options)
            )
        except BackendFailed as exc:
            self._spawn_failed(log, exc)
            raise
        self._adopt(process, log)
        events.info("instance %s: started (pid %d, port %d)", self.name, process.pid, port)
        self._env.lifecycle.started(self.name, self._backend())
        self._track(self._supervise(process))
        self._track(self._watch_health(process, host, port, time.monotonic()))

    def _command(self, options: Options, port: int) -> Command:
        """The command line from the current configuration. An instance whose section
        went in a reload ends ``failed``, naming it; a ``ConfigError`` (docker asked for,
        and not configured) refuses the start and changes nothing."""
        try:
            backend = instance_section(self._env.config.backends, options.backend_options)
        except InvalidOptions as exc:
            self._fail(exc.message)
            raise
        return build_command(options, backend, port=port, host=LOOPBACK, name=self.name)

    def _fail(self, message: str) -> None:
        self._failure = Failure(message)
        self._set(Status.FAILED)
        events.info("instance %s: failed: %s", self.name, message)
        self._env.lifecycle.failed(self.name, self._backend())

    def _backend(self) -> str:
        """The backend type of the process (of its last start), for the lifecycle events."""
        options = self._options
        return options.backend_type.value if options is not None else ""

    async def stop(self, reason: str | None = None, *, cause: StopCause = StopCause.MANUAL) -> None:
        """Cancel a pending restart, let the requests the backend serves end (within
        ``drain_timeout``), signal, wait for the exit.

        ``reason`` completes the log line ("stopped to make room for b"); ``cause`` is
        what the lifecycle events say.
        """
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        process = self._process
        if process is None:
            status = self._status
            self._failure = None
            self._set(Status.STOPPED)  # also stores the cleared failure
            if status is not Status.STOPPED:
                called_off = "(its restart is called off)" if status is Status.RESTARTING else ""
                log_stopped(self.name, reason or called_off)
            return
        began = time.monotonic()
        self._stopping = True
        self._set(Status.SHUTTING_DOWN)
        # Requests queued meanwhile wait for this stop (then start the instance again):
        # the drain waits only for those the backend is serving.
        await self._env.traffic.drained(self.name, self._env.timings.drain_timeout)
        await process.stop(self._env.timings.stop_timeout)
        await self.wait_for(lambda: self._process is None, 5.0)
        self._failure = None
        self._set(Status.STOPPED)
        log_stopped(self.name, reason, time.monotonic() - began)
        self._env.lifecycle.stopped(self.name, self._backend(), cause)

    async def halt(self) -> None:
        """Stop the process at once (llamactl is shutting down); the status stays, so
        that the next boot resumes it."""
        if self._restart_task is not None:
            self._restart_task.cancel()
        process = self._process
        if process is not None:
            self._stopping = True
            began = time.monotonic()
            await process.stop(self._env.timings.stop_timeout)
            await self.wait_for(lambda: self._process is None, 5.0)
            log_stopped(self.name, "(llamactl is shutting down)", time.monotonic() - began)
            self._env.lifecycle.stopped(self.name, self._backend(), StopCause.SHUTDOWN)
        for task in list(self._tasks):
            task.cancel()

    def abandon(self) -> None:
        """Forget the process without stopping it, as a crash of llamactl would."""
        for task in list(self._tasks):
            task.cancel()
        self._process = None
        if self._log is not None:
            self._log.close()

    # -- inside -------------------------------------------------------------------------

    def _set(self, status: Status) -> None:
        changed = self._status is not status
        self._status = status
        self._changes(published=changed)

    def _changes(self, *, published: bool) -> None:
        """Tell the manager; tell followers too when the status or readiness changed."""
        if published:
            self._followers.publish("status", self.status_event())
        self._notify()

    def _notify(self) -> None:
        self._changed.notify()
        self._on_change(self)

    def _spawn_failed(self, log: InstanceLog, exc: BackendFailed) -> None:
        log.write(f"{exc.message}\n".encode())
        log.marker(self.name, "stopped")
        log.close()
        self._fail(exc.message)

    def _adopt(self, process: BackendProcess, log: InstanceLog) -> None:
        self._process, self._log = process, log
        self._readiness, self._ready_since = Readiness.STARTING, None
        self._stopping, self._failure = False, None
        self._active_since = self._env.clock()
        pid = process.pid
        self._env.store.defer_record(
            ProcessRecord(self.name, pid, process_start_ticks(pid), int(time.time()))
        )
        self._set(Status.RUNNING)

    def _open_log(self) -> InstanceLog:
        settings = self._env.config.instances
        max_bytes = settings.log_rotation_max_size * 1024 * 1024
        log = InstanceLog(
            self.log_path(),
            max_bytes=max_bytes if settings.log_rotation_enabled else None,
            compress=settings.log_rotation_compress,
            on_write=lambda data: self._followers.publish(
                "log", {"text": data.decode("utf-8", "replace")}
            ),
        )
        try:
            log.open()
        except OSError as exc:
            raise BackendFailed(f"cannot open the log file {log.path}: {_reason(exc)}") from exc
        log.marker(self.name, "started")
        if log.error is not None:  # a backend is not started without a log it can write
            error = log.error
            log.close()
            raise BackendFailed(
                f"cannot write the log file {log.path}: {_reason(error)}"
            ) from error
        return log

    async def _supervise(self, process: BackendProcess) -> None:
        """Wait for the process to end; decide between stopped, restarting and failed."""
        status = await process.wait()
        expected = self._stopping or self._deleted
        self._release_process(status, failed=not expected)
        if expected:
            self._stopping = False
            self._notify()
            return
        async with self.lock:
            self._after_crash(status)
        self._notify()

    def _release_process(self, status: ExitStatus, *, failed: bool) -> None:
        """Close the log; ``failed``: an exit nobody asked for, its failure kept."""
        log = self._log
        if log is not None:
            log.write(f"process {status.describe()}\n".encode())
            if failed:
                lines = tuple(log.last_lines(FAILURE_LINES))
                self._failure = Failure(status.describe(), lines)
            log.marker(self.name, "stopped")
            log.close()
        self._process, self._log, self._readiness = None, None, None
        if not self._deleted:
            self._env.store.defer_forget(self.name)

    def _after_crash(self, status: ExitStatus) -> None:
        if status.is_clean:
            self._failure = None
            self._set(Status.STOPPED)
            events.info("instance %s: %s; stopped", self.name, status.describe())
            return
        lifecycle = self._env.lifecycle
        lifecycle.crashed(self.name, self._backend())
        stable_since = self._ready_since
        if stable_since is not None and (
            self._env.clock() - stable_since >= self._env.timings.stable_after
        ):
            self._restarts = 0
        assert self._options is not None, "a process ran, so it was started with options"
        options = self._options
        limit = options.max_restarts if options.max_restarts is not None else 0
        if options.auto_restart and (limit < 0 or self._restarts < limit):
            self._set(Status.RESTARTING)
            delay = float(options.restart_delay or 0)
            self._restart_task = asyncio.create_task(self._restart_later(delay))
            count = f"{self._restarts + 1}" + (f"/{limit}" if limit >= 0 else "")
            events.info(
                "instance %s: %s; restarting in %g s (%s)",
                self.name,
                status.describe(),
                delay,
                count,
            )
            lifecycle.restarting(self.name, self._backend())
            return
        if self._failure is not None and self._restarts:
            reason = f"{self._failure.reason} (after {self._restarts} restarts)"
            self._failure = dataclasses.replace(self._failure, reason=reason)
        self._set(Status.FAILED)
        reason = self._failure.reason if self._failure else status.describe()
        events.info("instance %s: failed: %s", self.name, reason)
        lifecycle.failed(self.name, self._backend())

    async def _restart_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.lock:
            self._restart_task = None
            if self._deleted or self._status is not Status.RESTARTING:
                return
            self._restarts += 1
            assert self._options is not None
            try:
                await self.start(self._options, fresh=False)
            except (BackendFailed, InvalidOptions):
                pass  # the start said why, and the instance is failed
            except ConfigError as exc:  # the configuration changed in a reload
                self._fail(exc.message)
        self._notify()

    async def _watch_health(
        self, process: BackendProcess, host: str, port: int, began: float
    ) -> None:
        """Poll the health endpoint: ``starting`` until the first 200, then ``ready``.

        ``began`` is when the process was spawned (``time.monotonic``), for the log line.
        """
        assert self._options is not None
        path, statuses = self._health_check(self._options)
        failures = 0
        timings = self._env.timings
        while self._process is process:
            status = await self._env.transport.probe(connect_host(host), port, path, 2.0)
            healthy = status in statuses
            if self._process is not process:
                return
            failures = 0 if healthy else failures + 1
            self._record_health(healthy, failures, began)
            starting = self._readiness is Readiness.STARTING
            await asyncio.sleep(timings.health_poll if starting else timings.health_interval)

    def _health_check(self, options: Options) -> tuple[str, range]:
        """The readiness endpoint of an instance and the statuses that mean ready."""
        spec = spec_for(options.backend_type)
        try:
            section = instance_section(self._env.config.backends, options.backend_options)
        except InvalidOptions:  # its entry went in a reload while it runs: the default
            return spec.health_path, spec.healthy_statuses
        return section.health_path or spec.health_path, spec.healthy_statuses

    def _record_health(self, healthy: bool, failures: int, began: float) -> None:
        if healthy and self._readiness is not Readiness.READY:
            if self._ready_since is None:
                self._ready_since = self._active_since = self._env.clock()
                took = time.monotonic() - began
                events.info("instance %s: ready in %.2f s", self.name, took)
                self._env.lifecycle.ready(self.name, self._backend(), took)
            else:
                events.info("instance %s: healthy again", self.name)
            self._readiness = Readiness.READY
            self._changes(published=True)
        elif self._readiness is Readiness.READY and failures >= self._env.timings.unhealthy_after:
            self._readiness = Readiness.UNHEALTHY
            self._changes(published=True)
            events.warning(
                "instance %s: unhealthy (%d health checks failed in a row)", self.name, failures
            )

    def _track(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _hint(options: Options) -> str:
    if options.command_override:
        return "command_override"
    return f"{section_key(options.backend_options)}.command"


def _reason(exc: OSError) -> str:
    """``no space left on device``, ``permission denied``: the system's words for it."""
    return os.strerror(exc.errno).lower() if exc.errno is not None else str(exc)

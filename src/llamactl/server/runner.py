"""Running llamactl: the HTTP server between starting and stopping the services.

``serve`` binds the socket, starts the services (``server.lifecycle``), builds the
application (``server.app``) and runs uvicorn, with the lane's protocol, until SIGINT or
SIGTERM; SIGHUP reloads the configuration meanwhile (see ``server.reload``). This module
is the top of ``server/``: nothing in the package imports it.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import FrameType

import uvicorn

from llamactl import auth
from llamactl.config import AppConfig, load_config
from llamactl.errors import ConfigError
from llamactl.server.app import create_app
from llamactl.server.lifecycle import apply_log_level, start_services, stop_services
from llamactl.server.protocol import http_protocol
from llamactl.server.reload import Reconfigurable, Reloader

__all__ = ["GRACEFUL_SHUTDOWN_SECONDS", "listen", "serve"]

logger = logging.getLogger("llamactl")

GRACEFUL_SHUTDOWN_SECONDS = 10  # for requests still open after a stop signal
_HANGUP: signal.Signals | None = getattr(signal, "SIGHUP", None)  # none on Windows


@dataclass(frozen=True)
class _Reconfigure:
    """Hands a reloaded configuration to the application, and sets the log level."""

    app: Reconfigurable

    def reconfigure(self, config: AppConfig, keys: auth.Keys) -> None:
        self.app.reconfigure(config, keys)
        apply_log_level(config)


def serve(config: AppConfig, load: Callable[[], AppConfig] | None = None) -> None:
    """Start the services, serve HTTP until SIGINT or SIGTERM, then stop the services.

    Start-up errors surface before the socket opens. The application's lifespan stops the
    services during uvicorn's graceful shutdown. SIGHUP reloads the configuration with
    ``load`` (by default: the same file and the environment, read again).
    """
    if _HANGUP is not None:
        signal.signal(_HANGUP, signal.SIG_IGN)  # until the server can reload
    apply_log_level(config)
    listener = listen(config.server.host, config.server.port)
    try:
        services = start_services(config)
    except BaseException:
        listener.close()
        raise
    try:
        app = create_app(services)
        reloader = Reloader(
            load or (lambda: load_config(config.config_path, os.environ)),
            lambda: services.config,
            _Reconfigure(app.app),
        )
        server = _Server(
            uvicorn.Config(
                app,
                host=config.server.host,
                port=config.server.port,
                log_level=config.server.log_level,
                access_log=config.server.access_log,
                proxy_headers=False,
                http=http_protocol(app.app.proxy),
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            ),
            on_exit=app.app.begin_shutdown,
            on_reload=reloader.reload,
        )
        _ignore_signals_after_shutdown()
        logger.info("listening on %s (press Ctrl-C to stop)", _address(listener))
        server.run(sockets=[listener])
    finally:
        stop_services(services)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for uvicorn, as uvicorn would bind it.

    Bound here rather than by uvicorn so that a port already in use is reported as a
    ``ConfigError`` that says which port and how to choose another, before anything starts.
    Not inheritable: a backend left running after a crash must not hold llamactl's port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _listen_error(host, port, exc) from exc
    return sock


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _listen_error(host: str, port: int, exc: OSError) -> ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            f"server.port: port {port} on {host} is already in use (another llamactl?):"
            " start with --port N or set LLAMACTL_PORT (or server.port in the configuration)",
            key="server.port",
            value=port,
        )
    if exc.errno == errno.EACCES:
        return ConfigError(
            f"server.port: not allowed to listen on port {port}: choose a port above 1023"
            " with --port N or LLAMACTL_PORT",
            key="server.port",
            value=port,
        )
    return ConfigError(
        f"server.host: cannot listen on {host} port {port}: {exc.strerror or exc}"
        " (set --host or LLAMACTL_HOST)",
        key="server.host",
        value=host,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, with what llamactl does on signals.

    On a stop signal, ``on_exit`` runs at once: uvicorn waits for open connections before
    it runs the application's shutdown, and neither a follow stream nor a request waiting
    for an on-demand start should hold it for GRACEFUL_SHUTDOWN_SECONDS. On SIGHUP,
    ``on_reload`` runs (one reload at a time) and the server keeps serving.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        on_exit: Callable[[], None],
        on_reload: Callable[[], Awaitable[object]],
    ) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._on_reload = on_reload
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reloads: set[asyncio.Task[object]] = set()

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        if _HANGUP is None:
            await super().serve(sockets)
            return
        previous = signal.signal(_HANGUP, self._handle_hangup)
        try:
            await super().serve(sockets)
        finally:
            signal.signal(_HANGUP, previous)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)

    def _handle_hangup(self, _sig: int, _frame: FrameType | None) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_reload)

    def _start_reload(self) -> None:
        task = asyncio.ensure_future(self._on_reload())
        self._reloads.add(task)
        task.add_done_callback(self._reload_done)

    def _reload_done(self, task: asyncio.Task[object]) -> None:
        self._reloads.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("the configuration reload failed", exc_info=task.exception())


def _ignore_signals_after_shutdown() -> None:
    """Give uvicorn no-op handlers to restore.

    After a graceful shutdown uvicorn raises the signal it caught again, into the handlers
    that were installed before it started; with these the process then exits normally
    (status 0) instead of dying by the signal.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: None)

"""Startup and shutdown of llamactl's services, in the spec's order.

``start_services`` opens the database, runs the migrations, imports legacy JSON files and
creates the manager with the database injected; ``stop_services`` undoes it. ``serve``
runs the HTTP server between the two; SIGHUP reloads the configuration meanwhile (see
``server.reload``).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import uvicorn

from llamactl import auth, database
from llamactl.config import AppConfig, load_config
from llamactl.database import DB, DatabaseSettings
from llamactl.database.json_import import ARCHIVE_DIR, ImportResult, import_json
from llamactl.errors import ConfigError
from llamactl.manager import InstanceManager, instance_defaults
from llamactl.manager.datadir import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    DataDirLock,
    make_private_dir,
    tighten,
)
from llamactl.server.protocol import http_protocol
from llamactl.server.reload import Reconfigurable, Reloader

__all__ = [
    "Services",
    "create_data_dir",
    "create_directories",
    "create_instance_dirs",
    "import_legacy",
    "listen",
    "open_database",
    "serve",
    "start_services",
    "stop_services",
    "tighten_modes",
]

logger = logging.getLogger("llamactl")

GRACEFUL_SHUTDOWN_SECONDS = 10  # for requests still open after a stop signal
_HANGUP: signal.Signals | None = getattr(signal, "SIGHUP", None)  # none on Windows


@dataclass
class Services:
    """What the HTTP layer works with."""

    config: AppConfig
    db: DB
    manager: InstanceManager
    keys: auth.Keys
    lock: DataDirLock | None = None
    stopped: bool = field(default=False, init=False)


def create_directories(config: AppConfig) -> None:
    """Create the data, instances and logs folders (mode 0700) when ``auto_create_dirs`` is on."""
    create_data_dir(config)
    create_instance_dirs(config)


def create_data_dir(config: AppConfig) -> None:
    """Create ``data_dir`` (mode 0700) when ``auto_create_dirs`` is on."""
    if config.instances.auto_create_dirs:
        _make_dir(Path(config.data_dir))


def create_instance_dirs(config: AppConfig) -> None:
    """Create the instances and logs folders (mode 0700) when ``auto_create_dirs`` is on."""
    if config.instances.auto_create_dirs:
        for folder in (config.instances.instances_dir, config.instances.logs_dir):
            _make_dir(Path(folder))


def _make_dir(folder: Path) -> None:
    try:
        make_private_dir(folder)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {folder}: {exc}", value=str(folder)) from exc


def lock_data_dir(config: AppConfig) -> DataDirLock:
    """Take the data directory's lock, or raise ``DataDirInUse`` naming the holder's PID."""
    data_dir = Path(config.data_dir)
    if not data_dir.is_dir():
        raise ConfigError(
            f"the data directory {data_dir} does not exist (create it, or turn "
            "instances.auto_create_dirs on)",
            key="data_dir",
            value=str(data_dir),
        )
    lock = DataDirLock(data_dir)
    lock.acquire()
    return lock


def tighten_modes(config: AppConfig) -> None:
    """Make private what an earlier run left readable by other users, with a log line.

    Folders become 0700 at most and the database (with its -wal, -shm and -journal files)
    0600, one line each; instance logs and archived legacy JSON files 0600, one line per
    folder. (Legacy files still to import are left: the import removes them.)
    """
    instances_dir = Path(config.instances.instances_dir)
    logs_dir = Path(config.instances.logs_dir)
    archive = instances_dir / ARCHIVE_DIR
    for folder in (Path(config.data_dir), instances_dir, logs_dir, archive):
        _tighten(folder, PRIVATE_DIR)
    database_path = str(config.database.path)
    if database_path != ":memory:" and "://" not in database_path:
        base = Path(database_path)
        for path in [base] + [base.with_name(base.name + end) for end in _SQLITE_SIDE_FILES]:
            _tighten(path, PRIVATE_FILE)
    _tighten_files(logs_dir, ("*.log", "*.log.gz"))
    _tighten_files(archive, ("*.json", "*.json.*"))


_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _tighten(path: Path, allowed: int) -> None:
    try:
        tighten(path, allowed)
    except OSError as exc:
        logger.warning("cannot narrow the mode of %s: %s", path, exc.strerror)


def _tighten_files(folder: Path, patterns: tuple[str, ...]) -> None:
    try:
        paths = sorted({path for pattern in patterns for path in folder.glob(pattern)})
    except OSError:
        return
    narrowed = 0
    for path in paths:
        try:
            narrowed += tighten(path, PRIVATE_FILE, quiet=True)
        except OSError as exc:
            logger.warning("cannot narrow the mode of %s: %s", path, exc.strerror)
    if narrowed:
        logger.warning(
            "tightened the mode of %d files in %s to 0600 at most "
            "(they were readable by other users)",
            narrowed,
            folder,
        )


def open_database(config: AppConfig) -> DB:
    """Open the configured database and bring its schema up to date."""
    db = database.open(DatabaseSettings.from_config(config.database))
    try:
        database.run_migrations(db)
    except BaseException:
        db.close()
        raise
    return db


def import_legacy(config: AppConfig, db: DB, folder: Path | None = None) -> ImportResult:
    """Import ``instances_dir/*.json`` (or ``folder``) into an empty database."""
    return import_json(
        db,
        folder or config.instances.instances_dir,
        lambda backend_type: instance_defaults(config, backend_type),
    )


def warn_about_settings(config: AppConfig) -> None:
    """Say so when a setting is given that no longer has an effect."""
    if config.sources.get("instances.timeout_check_interval", "default") != "default":
        logger.warning(
            "instances.timeout_check_interval has no effect: idle instances are checked "
            "every 2 seconds"
        )


def apply_log_level(config: AppConfig) -> None:
    """Set the level of llamactl's and uvicorn's loggers to ``server.log_level``."""
    level = getattr(logging, config.server.log_level.upper())
    for name in ("llamactl", "uvicorn.error"):
        logging.getLogger(name).setLevel(level)


@dataclass(frozen=True)
class _Reconfigure:
    """Hands a reloaded configuration to the application, and sets the log level."""

    app: Reconfigurable

    def reconfigure(self, config: AppConfig, keys: auth.Keys) -> None:
        self.app.reconfigure(config, keys)
        apply_log_level(config)


def start_services(config: AppConfig) -> Services:
    """Lock the data directory, open the database, then create the rest and load.

    A database that is not llamactl's is refused before any folder besides ``data_dir``
    is created; a second llamactl on the same ``data_dir`` before anything is opened.
    """
    warn_about_settings(config)
    create_data_dir(config)
    lock = lock_data_dir(config)
    try:
        db = open_database(config)
        try:
            return _start_with_database(config, db, lock)
        except BaseException:
            db.close()
            raise
    except BaseException:
        lock.release()
        raise


def _start_with_database(config: AppConfig, db: DB, lock: DataDirLock) -> Services:
    create_instance_dirs(config)
    tighten_modes(config)
    loaded = auth.load_keys(config)
    for message in loaded.messages:
        logger.info("%s", message)
    result = import_legacy(config, db)
    if result.count:
        logger.info("imported %d instances from legacy JSON files", result.count)
    manager = InstanceManager(config, db)
    manager.load()
    return Services(config=config, db=db, manager=manager, keys=loaded.keys, lock=lock)


def stop_services(services: Services) -> None:
    """Release what ``start_services`` took. Safe to call more than once."""
    if services.stopped:
        return
    services.stopped = True
    try:
        services.db.close()
    finally:
        if services.lock is not None:
            services.lock.release()


def serve(config: AppConfig, load: Callable[[], AppConfig] | None = None) -> None:
    """Start the services, serve HTTP until SIGINT or SIGTERM, then stop the services.

    Start-up errors surface before the socket opens. The application's lifespan stops the
    services during uvicorn's graceful shutdown. SIGHUP reloads the configuration with
    ``load`` (by default: the same file and the environment, read again).
    """
    from llamactl.server.app import create_app

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

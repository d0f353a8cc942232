"""Startup and shutdown of llamactl's services, in the spec's order.

``start_services`` opens the database, runs the migrations, imports legacy JSON files and
creates the manager with the database injected; ``stop_services`` undoes it. Running the
HTTP server between the two is ``server.runner``'s: this module knows no application.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from llamactl import auth, database
from llamactl.auth.stored import KeyBook, KeyHasher
from llamactl.config import AppConfig
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
from llamactl.observe import Recorder

__all__ = [
    "Services",
    "apply_log_level",
    "create_data_dir",
    "create_directories",
    "create_instance_dirs",
    "import_legacy",
    "open_database",
    "start_services",
    "stop_services",
    "tighten_modes",
]

logger = logging.getLogger("llamactl")


@dataclass
class Services:
    """What the HTTP layer works with."""

    config: AppConfig
    db: DB
    manager: InstanceManager
    keys: auth.Keys
    lock: DataDirLock | None = None
    book: KeyBook | None = None  # the keys stored in the database
    recorder: Recorder | None = None  # the metrics and the activity log, once serving
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
    database_path = config.database.location
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
    book = KeyBook(KeyHasher.of_data_dir(config.data_dir, config.auth.key_secret_file))
    book.load(db.list_keys())
    keys = dataclasses.replace(loaded.keys, book=book)
    return Services(config=config, db=db, manager=manager, keys=keys, lock=lock, book=book)


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

"""The database handle: engine, connection pool and SQLite pragmas.

Owns how llamactl connects (``open``), the ``Database`` protocol the manager depends on,
and the transaction helpers the rest of the package uses. It holds no instance SQL: that
lives in ``instances.py``, the only module that knows the ``instances`` table.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import QueuePool, StaticPool

from llamactl.config import DatabaseConfig
from llamactl.config.kinds import mask_password
from llamactl.database import activity, keys, ownership, processes
from llamactl.database import instances as sql
from llamactl.database.processes import ProcessRecord
from llamactl.errors import DatabaseError, DatabaseUnavailable
from llamactl.instance import Instance

__all__ = ["DB", "Database", "DatabaseHealth", "DatabaseSettings", "open"]

MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 5000
PG_CONNECT_TIMEOUT_S = 5  # an unreachable PostgreSQL server fails a connection after it
PROBE_TIMEOUT_MS = 1000  # how long the health probe waits for the write lock
# Driver messages that mean "cannot write now" rather than "something is wrong with us".
_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "database or disk is full",
    "disk i/o error",
    "readonly database",
    "unable to open database file",
)
# What a database server's driver says when it cannot be reached or the connection broke.
_UNREACHABLE = (
    "connection refused",
    "could not connect",
    "connection failed",
    "connection timeout",
    "timeout expired",
    "server closed the connection",
    "terminating connection",
    "the connection is closed",
    "the connection is lost",
    "consuming input failed",
    "no connection to the server",
    "the database system is shutting down",
    "the database system is starting up",
    "the database system is in recovery mode",
)


class Database(Protocol):
    """What the instance manager needs from persistence."""

    def save(self, inst: Instance) -> None:
        """Insert or update one instance, atomically."""

    def delete(self, name: str) -> None:
        """Remove the instance called ``name``; raise ``InstanceNotFound`` if absent."""

    def save_status(self, inst: Instance) -> bool:
        """Write only the status and last failure of ``inst``'s row (not its options);
        whether the row exists."""

    def load_all(self) -> list[Instance]:
        """Every stored instance, sorted by name."""

    def get_by_name(self, name: str) -> Instance:
        """The stored instance called ``name``; raise ``InstanceNotFound`` if absent."""

    def close(self) -> None:
        """Release every connection."""

    # Beyond the spec: the backend processes that are running, for reaping after a crash.

    def record_process(self, entry: ProcessRecord) -> None:
        """Remember that ``entry.instance_name`` has a backend running as ``entry.pid``."""

    def forget_process(self, name: str) -> None:
        """The backend of ``name`` has ended."""

    def recorded_processes(self) -> list[ProcessRecord]:
        """Every backend recorded as running."""

    def instance_ids(self, names: Iterable[str]) -> dict[str, int]:
        """The row ids of the instances called ``names`` (those that exist)."""


@dataclass(frozen=True)
class DatabaseSettings:
    """The ``database`` section of the configuration, as ``open`` needs it.

    ``path`` is ``:memory:``, a filesystem path (already resolved against ``data_dir``), or
    an SQLAlchemy URL (anything containing ``://``).
    """

    path: str
    max_open_connections: int = 25
    max_idle_connections: int = 5
    connection_max_lifetime: timedelta = timedelta(minutes=5)

    @classmethod
    def from_config(cls, config: DatabaseConfig) -> DatabaseSettings:
        """Take the four settings from the ``database`` section of the configuration."""
        return cls(
            path=config.location,
            max_open_connections=config.max_open_connections,
            max_idle_connections=config.max_idle_connections,
            connection_max_lifetime=config.connection_max_lifetime,
        )

    @property
    def is_memory(self) -> bool:
        return self.path == MEMORY

    @property
    def shown(self) -> str:
        """``path`` as it may be shown: a URL's password masked."""
        return mask_password(self.path)

    @property
    def url(self) -> str:
        if "://" in self.path:
            return self.path
        if self.is_memory:
            return "sqlite+pysqlite://"
        return f"sqlite+pysqlite:///{self.path}"


Clock = Callable[[], float]


def open(settings: DatabaseSettings, *, clock: Clock = time.time) -> DB:
    """Connect to the configured database. Creates an SQLite file's folder if missing.

    An SQLite file is checked read-only first and refused, unchanged, if it is another
    program's database (``NotALlamactlDatabase``); a new file is created with mode 0600.

    ``clock`` gives the unix time written to ``updated_at`` (and to ``created_at`` of an
    instance whose ``created`` is 0).
    """
    if not settings.path:
        raise DatabaseError("database path is empty: set database.path")
    if not settings.is_memory and "://" not in settings.path:
        _ensure_parent(Path(settings.path))
        ownership.check_file(Path(settings.path))  # before any pragma writes to it
        _create_private(Path(settings.path))
    try:
        engine = _create_engine(settings)
        with engine.connect():  # fail now, not at the first query
            pass
    except ImportError as exc:
        raise DatabaseError(
            f"cannot open database {settings.shown}: its driver is not installed ({exc}); "
            "for PostgreSQL: pip install 'llamactl[postgres]'"
        ) from exc
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open database {settings.shown}: {_reason(exc)}") from exc
    return DB(engine, settings, clock)


def _ensure_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DatabaseError(f"cannot create the folder of database {path}: {exc}") from exc


PRIVATE_FILE = 0o600  # the database holds instance environments and backend API keys


def _create_private(path: Path) -> None:
    """Create a missing database file with mode 0600; SQLite gives its -wal and -shm files
    the mode of the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return
    except OSError as exc:
        raise DatabaseError(f"cannot create database {path}: {exc.strerror}") from exc
    os.close(fd)


def _create_engine(settings: DatabaseSettings) -> Engine:
    if settings.is_memory:
        engine = create_engine(
            settings.url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
        )
    else:
        engine = create_engine(settings.url, **_pool_arguments(settings))
    if engine.dialect.name == "sqlite":
        _install_sqlite_hooks(engine, wal=not settings.is_memory)
    return engine


def _pool_arguments(settings: DatabaseSettings) -> dict[str, Any]:
    """Map the spec's pool settings onto SQLAlchemy's QueuePool (DESIGN decision 5).

    ``max_idle_connections`` is the number of connections kept open (pool_size);
    connections beyond it, up to ``max_open_connections``, are overflow and are closed when
    returned. ``connection_max_lifetime`` is pool_recycle; zero means no limit.
    """
    lifetime = settings.connection_max_lifetime.total_seconds()
    idle = settings.max_idle_connections
    arguments: dict[str, Any] = {
        "poolclass": QueuePool,
        "pool_size": idle,
        "max_overflow": settings.max_open_connections - idle,
        "pool_recycle": lifetime if lifetime > 0 else -1,
        "pool_pre_ping": False,
    }
    if settings.url.startswith("sqlite"):
        arguments["connect_args"] = {"check_same_thread": False}
    elif settings.url.startswith("postgresql"):
        arguments["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    return arguments


def _install_sqlite_hooks(engine: Engine, *, wal: bool) -> None:
    """Set the pragmas on every new connection and take control of BEGIN.

    The sqlite3 module's own transaction handling does not wrap DDL in a transaction and
    never issues ``BEGIN IMMEDIATE``; we switch it off and emit BEGIN ourselves, so that
    migrations are transactional and write transactions take the write lock up front
    (waiting on ``busy_timeout`` instead of failing with "database is locked").
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get("llamactl_write", False)
        cursor = connection.connection.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        finally:
            cursor.close()


@dataclass(frozen=True)
class DatabaseHealth:
    """What ``DB.health`` found: ``problem`` is None when a write would go through now."""

    path: str
    problem: str | None
    free_bytes: int | None  # in the database's folder; None for ``:memory:`` or a URL


FileIdentity = tuple[int, int]  # st_dev, st_ino


def _identity(path: str) -> FileIdentity | None:
    """The identity of the file at ``path`` now; None if there is no file there."""
    try:
        found = Path(path).stat()
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


def _is_unavailable(exc: SQLAlchemyError | sqlite3.Error) -> bool:
    if _is_unreachable(exc):
        return True
    if not isinstance(exc, OperationalError | sqlite3.OperationalError):
        return False
    message = str(getattr(exc, "orig", exc)).lower()
    return any(fragment in message for fragment in _UNAVAILABLE)


def _is_unreachable(exc: SQLAlchemyError | sqlite3.Error) -> bool:
    """Whether a database server could not be reached, or the connection to it broke."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    message = str(getattr(exc, "orig", exc)).lower()
    return any(fragment in message for fragment in _UNREACHABLE)


def _reason(exc: SQLAlchemyError | sqlite3.Error) -> object:
    """The driver's own message when there is one: shorter and to the point."""
    return getattr(exc, "orig", None) or exc


class DB:
    """A connected database. Implements ``Database`` plus the spec's CRUD methods.

    Each method is one transaction; the statements come from ``instances.py``.
    """

    def __init__(
        self, engine: Engine, settings: DatabaseSettings, clock: Clock = time.time
    ) -> None:
        self.engine = engine
        self.settings = settings
        self._clock = clock
        # ``:memory:`` shares one connection: one transaction at a time across threads.
        self._shared = threading.RLock() if settings.is_memory else None
        self._file = self._file_path(settings)
        self._identity = _identity(self._file) if self._file else None

    @staticmethod
    def _file_path(settings: DatabaseSettings) -> str | None:
        """The SQLite file whose identity is watched; None for ``:memory:`` or a URL."""
        if settings.is_memory or "://" in settings.path:
            return None
        return settings.path

    def _now(self) -> int:
        return int(self._clock())

    def __enter__(self) -> DB:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.close()

    # The Database protocol.

    def save(self, inst: Instance) -> None:
        """Insert the instance or update the row of that name, in one statement."""
        with self.writing() as connection:
            sql.upsert(connection, inst, self._now())

    def save_status(self, inst: Instance) -> bool:
        with self.writing() as connection:
            return sql.update_status(connection, inst, self._now())

    def delete(self, name: str) -> None:
        self.delete_instance(name)

    def load_all(self) -> list[Instance]:
        return self.get_all()

    # The spec's internal CRUD methods.

    def create(self, inst: Instance) -> None:
        """Insert a new row; raise ``InstanceExists`` if the name is taken."""
        with self.writing() as connection:
            sql.insert(connection, inst, self._now())

    def update(self, inst: Instance) -> None:
        """Update the row of that name; raise ``InstanceNotFound`` if there is none."""
        with self.writing() as connection:
            sql.update(connection, inst, self._now())

    def get_by_name(self, name: str) -> Instance:
        """The instance called ``name``; raise ``InstanceNotFound`` if there is none."""
        with self.reading() as connection:
            return sql.select_one(connection, name)

    def get_all(self) -> list[Instance]:
        """Every instance, sorted by name."""
        with self.reading() as connection:
            return sql.select_all(connection)

    def delete_instance(self, name: str) -> None:
        """Delete the row of that name; raise ``InstanceNotFound`` if there is none."""
        with self.writing() as connection:
            sql.delete(connection, name)

    # Beyond the spec.

    def record_process(self, entry: ProcessRecord) -> None:
        with self.writing() as connection:
            processes.record(connection, entry)

    def forget_process(self, name: str) -> None:
        with self.writing() as connection:
            processes.forget(connection, name)

    def recorded_processes(self) -> list[ProcessRecord]:
        with self.reading() as connection:
            return processes.select_all(connection)

    # Inference keys (migration 0005).

    def create_key(self, key: keys.NewKey) -> keys.KeyRecord:
        """Store ``key``; it as stored (``InvalidInput`` for a permission of no instance)."""
        with self.writing() as connection:
            key_id = keys.insert_key(connection, key, self._now())
            return keys.select_key(connection, key_id)

    def list_keys(self) -> list[keys.KeyRecord]:
        with self.reading() as connection:
            return keys.select_keys(connection)

    def get_key(self, key_id: int) -> keys.KeyRecord:
        with self.reading() as connection:
            return keys.select_key(connection, key_id)

    def update_key(self, key_id: int, changes: keys.KeyChanges) -> keys.KeyRecord:
        with self.writing() as connection:
            keys.update_key(connection, key_id, changes, self._now())
            return keys.select_key(connection, key_id)

    def delete_key(self, key_id: int) -> None:
        with self.writing() as connection:
            keys.delete_key(connection, key_id)

    def record_key_use(self, uses: Mapping[int, tuple[int, int]]) -> None:
        """Add the requests of a batch to each key's count and last use."""
        with self.writing() as connection:
            keys.record_use(connection, uses)

    # The activity log (migration 0006).

    def add_activity(self, rows: Sequence[activity.Activity]) -> None:
        """Add a batch of requests to the log, in one transaction."""
        self.add_activity_rows([row.as_row() for row in rows])

    def add_activity_rows(self, rows: Sequence[Sequence[object]]) -> None:
        """Add a batch of requests given as tuples (``activity.COLUMNS``), in one
        transaction."""
        with self.writing() as connection:
            activity.insert_rows(connection, rows)

    def list_activity(self, query: activity.ActivityQuery) -> list[activity.Activity]:
        with self.reading() as connection:
            return activity.select_activity(connection, query)

    def activity_samples(self, instance: str, since: float, limit: int) -> list[activity.Activity]:
        with self.reading() as connection:
            return activity.select_samples(connection, instance, since, limit)

    def prune_activity(self, older_than: float | None, max_rows: int) -> int:
        """Delete the log's rows from before ``older_than`` and beyond the newest
        ``max_rows``; how many went."""
        with self.writing() as connection:
            return activity.prune_activity(connection, older_than, max_rows)

    def instance_ids(self, names: Iterable[str]) -> dict[str, int]:
        """The row ids of the instances called ``names`` (those that exist)."""
        with self.reading() as connection:
            return keys.instance_ids(connection, names)

    def resolve_instances(
        self, names: Iterable[str], ids: Iterable[int]
    ) -> tuple[dict[str, int], dict[int, str]]:
        """The ids of the instances called ``names`` and the names of those with ``ids``
        (those that exist), in one read."""
        with self.reading() as connection:
            return keys.instance_ids(connection, names), keys.instance_names(connection, ids)

    def count(self) -> int:
        """How many instances are stored."""
        with self.reading() as connection:
            return sql.count(connection)

    def create_all_if_empty(self, instances: list[Instance]) -> bool:
        """Insert all of ``instances`` in one transaction if the table is empty.

        Returns False, writing nothing, when the table already holds a row.
        """
        with self.writing() as connection:
            if sql.count(connection) > 0:
                return False
            for inst in instances:
                sql.insert(connection, inst, self._now())
        return True

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction: the write lock is taken at BEGIN; committed on success.

        Refused with ``DatabaseUnavailable`` when the file was deleted or replaced.
        """
        self.check_file()
        with self._exclusive(), self._translate(), self.engine.connect() as connection:
            connection = connection.execution_options(llamactl_write=True)
            with connection.begin():
                yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot)."""
        with (
            self._exclusive(),
            self._translate(),
            self.engine.connect() as connection,
            connection.begin(),
        ):
            yield connection

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        if self._shared is None:
            yield
            return
        with self._shared:
            yield

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except (SQLAlchemyError, sqlite3.Error) as exc:  # BEGIN (our hook) raises the driver's
            if _is_unreachable(exc):
                raise DatabaseUnavailable(
                    f"database {self.settings.shown} is unreachable: {_reason(exc)}"
                ) from exc
            if _is_unavailable(exc):
                raise DatabaseUnavailable(
                    f"database {self.settings.shown} cannot be written: {_reason(exc)}"
                ) from exc
            raise DatabaseError(f"database error: {_reason(exc)}") from exc

    def check_file(self) -> None:
        """Raise ``DatabaseUnavailable`` if the path no longer names the file we have open
        (deleted, or replaced by another file): writes would go where nobody reads them."""
        if self._file is None or self._identity is None:
            return
        now = _identity(self._file)
        if now == self._identity:
            return
        what = "was deleted" if now is None else "was replaced by another file"
        raise DatabaseUnavailable(
            f"database file {self._file} {what} while llamactl runs; nothing more is "
            "written to it: restore the file or restart llamactl"
        )

    def health(self) -> DatabaseHealth:
        """Whether a write would go through now, and the free space of the database's folder.

        The write probe takes the write lock (``BEGIN IMMEDIATE``) and rolls back, writing
        nothing; it waits at most ``PROBE_TIMEOUT_MS`` for a lock another process holds.
        """
        try:
            self.check_file()
            self._probe_write()
        except DatabaseError as exc:
            return DatabaseHealth(self.settings.shown, exc.message, self._free_bytes())
        return DatabaseHealth(self.settings.shown, None, self._free_bytes())

    def _probe_write(self) -> None:
        if self.dialect != "sqlite":
            with self.reading() as connection:
                connection.exec_driver_sql("SELECT 1")
            return
        with self._exclusive(), self._translate():
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                try:
                    cursor.execute(f"PRAGMA busy_timeout={PROBE_TIMEOUT_MS}")
                    try:
                        cursor.execute("BEGIN IMMEDIATE")
                        cursor.execute("ROLLBACK")
                    finally:
                        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                finally:
                    cursor.close()
            finally:
                raw.close()

    def _free_bytes(self) -> int | None:
        if self._file is None:
            return None
        try:
            found = os.statvfs(Path(self._file).parent)
        except OSError:
            return None
        return found.f_bavail * found.f_frsize

    def close(self) -> None:
        """Release every pooled connection; checkpoint the WAL of a file database."""
        if self.dialect == "sqlite" and not self.settings.is_memory:
            try:
                with self.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except SQLAlchemyError:
                pass  # closing must not fail because another process holds the file
        self.engine.dispose()

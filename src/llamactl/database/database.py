"""The database handle: engine, connection pool and SQLite pragmas.

Owns how llamactl connects (``open``), the ``Database`` protocol the manager depends on,
and the transaction helpers the rest of the package uses. It holds no instance SQL: that
lives in ``instances.py``, the only module that knows the ``instances`` table.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool, StaticPool

from llamactl.config import DatabaseConfig
from llamactl.database import instances as sql
from llamactl.database import ownership, processes
from llamactl.database.processes import ProcessRecord
from llamactl.errors import DatabaseError
from llamactl.instance import Instance

__all__ = ["DB", "Database", "DatabaseSettings", "open"]

MEMORY = ":memory:"
BUSY_TIMEOUT_MS = 5000


class Database(Protocol):
    """What the instance manager needs from persistence."""

    def save(self, inst: Instance) -> None:
        """Insert or update one instance, atomically."""

    def delete(self, name: str) -> None:
        """Remove the instance called ``name``; raise ``InstanceNotFound`` if absent."""

    def load_all(self) -> list[Instance]:
        """Every stored instance, sorted by name."""

    def close(self) -> None:
        """Release every connection."""

    # Beyond the spec: the backend processes that are running, for reaping after a crash.

    def record_process(self, entry: ProcessRecord) -> None:
        """Remember that ``entry.instance_name`` has a backend running as ``entry.pid``."""

    def forget_process(self, name: str) -> None:
        """The backend of ``name`` has ended."""

    def recorded_processes(self) -> list[ProcessRecord]:
        """Every backend recorded as running."""


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
            path=str(config.path),
            max_open_connections=config.max_open_connections,
            max_idle_connections=config.max_idle_connections,
            connection_max_lifetime=config.connection_max_lifetime,
        )

    @property
    def is_memory(self) -> bool:
        return self.path == MEMORY

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
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot open database {settings.path}: {_reason(exc)}") from exc
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


def _reason(exc: SQLAlchemyError) -> object:
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
        """A write transaction: the write lock is taken at BEGIN; committed on success."""
        with self._translate(), self.engine.connect() as connection:
            connection = connection.execution_options(llamactl_write=True)
            with connection.begin():
                yield connection

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read transaction (a consistent snapshot)."""
        with self._translate(), self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise DatabaseError(f"database error: {_reason(exc)}") from exc

    def close(self) -> None:
        """Release every pooled connection; checkpoint the WAL of a file database."""
        if self.dialect == "sqlite" and not self.settings.is_memory:
            try:
                with self.engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            except SQLAlchemyError:
                pass  # closing must not fail because another process holds the file
        self.engine.dispose()

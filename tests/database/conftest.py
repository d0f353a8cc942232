from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from tests.support.clock import FakeClock
from tests.support.postgres import PostgresServer


@pytest.fixture
def clock() -> FakeClock:
    """A settable unix clock for ``updated_at``."""
    return FakeClock(1_750_000_000)


@pytest.fixture
def memory_db(clock: FakeClock) -> Iterator[database.DB]:
    db = database.open(DatabaseSettings(path=":memory:"), clock=clock)
    database.run_migrations(db)
    yield db
    db.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "llamactl.db"


@pytest.fixture
def file_db(db_path: Path, clock: FakeClock) -> Iterator[database.DB]:
    db = database.open(DatabaseSettings(path=str(db_path)), clock=clock)
    database.run_migrations(db)
    yield db
    db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where an empty database is: an SQLite file, or a new database on the test
    PostgreSQL server."""
    if request.param == "sqlite":
        yield str(tmp_path / "data" / "llamactl.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    with server.fresh_database() as name:
        yield server.url(name)


@pytest.fixture
def any_db(engine_url: str, clock: FakeClock) -> Iterator[database.DB]:
    """A migrated database on each engine: SQLite and PostgreSQL."""
    db = database.open(DatabaseSettings(path=engine_url), clock=clock)
    database.run_migrations(db)
    yield db
    db.close()


@pytest.fixture
def pg_db(postgres: PostgresServer) -> Iterator[database.DB]:
    """A migrated database of its own on the test PostgreSQL server."""
    with postgres.fresh_database() as name:
        db = database.open(DatabaseSettings(path=postgres.url(name)))
        database.run_migrations(db)
        yield db
        db.close()

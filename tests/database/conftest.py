from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from tests.support.clock import FakeClock


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

"""A database file taken to one migration revision, up or down."""

from __future__ import annotations

from pathlib import Path

from llamactl import database
from llamactl.database import DatabaseSettings

__all__ = ["at_revision", "downgraded"]


def at_revision(path: Path, revision: str) -> None:
    """Upgrade the database at ``path`` (created if missing) to ``revision``."""
    db = database.open(DatabaseSettings(path=str(path)))
    try:
        database.upgrade(db, revision)
    finally:
        db.close()


def downgraded(path: Path, revision: str) -> None:
    """Downgrade the database at ``path`` to ``revision``."""
    db = database.open(DatabaseSettings(path=str(path)))
    try:
        database.downgrade(db, revision)
    finally:
        db.close()

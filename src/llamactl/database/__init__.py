"""Persistence: the SQLite (or other SQLAlchemy) store of instances and its migrations."""

from llamactl.database.database import DB, Database, DatabaseSettings, open
from llamactl.database.migrations import (
    current_revision,
    downgrade,
    head_revision,
    run_migrations,
    upgrade,
)

__all__ = [
    "DB",
    "Database",
    "DatabaseSettings",
    "current_revision",
    "downgrade",
    "head_revision",
    "open",
    "run_migrations",
    "upgrade",
]

"""Rows of a database file as another process sees them: seeded before a llamactl starts,
read while and after it runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.instance import Instance, Options, Status
from tests.support.net import free_port

__all__ = ["pids", "query", "seed", "statuses", "stored_status"]


def seed(db_path: Path, specs: dict[str, tuple[bool, dict[str, str]]]) -> dict[str, int]:
    """Store instances as 'running' (as a previous run would have left them); return ports."""
    db = database.open(DatabaseSettings(path=str(db_path)))
    ports = {}
    try:
        database.run_migrations(db)
        for name, (auto_restart, env) in specs.items():
            ports[name] = free_port()
            options = Options.from_json(
                {
                    "backend_type": "llama_cpp",
                    "backend_options": {"model": f"/m/{name}.gguf", "port": ports[name]},
                    "auto_restart": auto_restart,
                    "max_restarts": 3,
                    "restart_delay": 0,
                    "on_demand_start": True,
                    "idle_timeout": 0,
                    "environment": env,
                }
            )
            db.save(Instance(name=name, created=1, status=Status.RUNNING, options=options))
    finally:
        db.close()
    return ports


def query(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(db_path)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def pids(db_path: Path) -> dict[str, int]:
    rows = query(db_path, "SELECT instance_name, pid FROM instance_processes")
    return {str(name): int(str(pid)) for name, pid in rows}


def statuses(db_path: Path) -> dict[str, str]:
    return {str(n): str(s) for n, s in query(db_path, "SELECT name, status FROM instances")}


def stored_status(db_path: Path, name: str) -> str:
    """The status as another connection reads it from the file, right now."""
    connection = sqlite3.connect(db_path)
    try:
        row = connection.execute("SELECT status FROM instances WHERE name = ?", (name,)).fetchone()
    finally:
        connection.close()
    return str(row[0])

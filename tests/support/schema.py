"""Describe an SQLite schema as plain data, so two databases can be compared."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

SPEC_DDL = (Path(__file__).parent / "spec_schema.sql").read_text()


@dataclass(frozen=True)
class Column:
    name: str
    declared_type: str
    not_null: bool
    default: str | None
    primary_key: bool


@dataclass(frozen=True)
class Index:
    name: str
    unique: bool
    columns: tuple[str, ...]


@dataclass(frozen=True)
class TableSchema:
    columns: tuple[Column, ...]
    checks: frozenset[str]
    indexes: frozenset[Index]
    autoincrement: bool


def user_tables(connection: sqlite3.Connection) -> set[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {name for (name,) in rows if not name.startswith("sqlite_")}


def describe_table(connection: sqlite3.Connection, table: str) -> TableSchema:
    columns = tuple(
        Column(name, declared.upper(), bool(not_null), default, bool(pk))
        for _cid, name, declared, not_null, default, pk in connection.execute(
            f"PRAGMA table_info({table})"
        )
    )
    (sql,) = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return TableSchema(
        columns, _checks(sql), _indexes(connection, table), "AUTOINCREMENT" in sql.upper()
    )


def _indexes(connection: sqlite3.Connection, table: str) -> frozenset[Index]:
    found = set()
    for _seq, name, unique, _origin, _partial in connection.execute(f"PRAGMA index_list({table})"):
        columns = tuple(row[2] for row in connection.execute(f"PRAGMA index_info({name})"))
        found.add(Index(name, bool(unique), columns))
    return frozenset(found)


def _checks(sql: str) -> frozenset[str]:
    """Every CHECK(...) expression, with white space and case folded."""
    checks = set()
    for match in re.finditer(r"CHECK\s*\(", sql, re.IGNORECASE):
        depth, start = 1, match.end()
        end = start
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[end], 0)
            end += 1
        checks.add(re.sub(r"\s+", "", sql[start : end - 1]).lower())
    return frozenset(checks)


def spec_schema() -> TableSchema:
    connection = sqlite3.connect(":memory:")
    try:
        connection.executescript(SPEC_DDL)
        return describe_table(connection, "instances")
    finally:
        connection.close()

"""Describe a PostgreSQL database's schema from ``pg_catalog`` as plain data, so a
migrated database can be compared with the hand-written equivalent of the SQLite schema
(``postgres_schema.sql``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg

__all__ = ["EQUIVALENT_DDL", "PgSchema", "describe"]

EQUIVALENT_DDL = (Path(__file__).parent / "postgres_schema.sql").read_text()

# Every column of every table in the public schema: its type as PostgreSQL formats it,
# NOT NULL, the default's expression and the identity kind ('' for none, 'd' by default).
_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid), a.attidentity
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""
# Every constraint (primary key, unique, CHECK, foreign key) with its definition.
_CONSTRAINTS = """
SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public'
"""
# Every index that no constraint owns, as CREATE INDEX.
_INDEXES = """
SELECT i.tablename, i.indexname, i.indexdef
FROM pg_indexes i
WHERE i.schemaname = 'public'
  AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conname = i.indexname)
"""
# Sequences: only identity columns should own any.
_SEQUENCES = """
SELECT s.relname, format_type(q.seqtypid, NULL)
FROM pg_sequence q JOIN pg_class s ON s.oid = q.seqrelid
JOIN pg_namespace n ON n.oid = s.relnamespace
WHERE n.nspname = 'public'
"""
# Triggers and the functions they run (PostgreSQL only: the change notices of 0009).
_TRIGGERS = """
SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), pg_get_functiondef(t.tgfoid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND NOT t.tgisinternal
"""


@dataclass(frozen=True)
class PgSchema:
    columns: tuple[tuple[object, ...], ...]
    constraints: frozenset[tuple[object, ...]]
    indexes: frozenset[tuple[object, ...]]
    sequences: frozenset[tuple[object, ...]]
    triggers: frozenset[tuple[object, ...]]

    def tables(self) -> set[str]:
        return {str(row[0]) for row in self.columns}


def describe(dsn: str, *, leave_out: frozenset[str] = frozenset({"alembic_version"})) -> PgSchema:
    """The schema of the database at ``dsn``, less the tables in ``leave_out``."""
    with psycopg.connect(dsn) as connection:

        def rows(query: str) -> list[tuple[object, ...]]:
            return [row for row in connection.execute(query) if row[0] not in leave_out]

        return PgSchema(
            tuple(rows(_COLUMNS)),
            frozenset(rows(_CONSTRAINTS)),
            frozenset(rows(_INDEXES)),
            frozenset(rows(_SEQUENCES)),
            frozenset(rows(_TRIGGERS)),
        )

"""One lead among several processes over one PostgreSQL database: an advisory lock held
by a session of its own, taken over when its holder goes."""

from __future__ import annotations

import logging

import psycopg
import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.database.leadership import Leadership
from tests.support.postgres import PostgresServer


def test_sqlite_always_leads() -> None:
    db = database.open(DatabaseSettings(path=":memory:"))
    try:
        lead = Leadership(db.engine)
        assert lead.leads and not lead.shared and lead.check()
    finally:
        db.close()


def test_one_leads_and_the_next_takes_over_when_it_gives_up(pg_db: database.DB) -> None:
    first, second = Leadership(pg_db.engine), Leadership(pg_db.engine)
    assert first.shared and not first.leads
    assert first.check() is True
    assert second.check() is False and first.check() is True
    first.close()
    assert not first.leads
    assert second.check() is True and second.leads
    assert first.check() is False
    second.close()


def test_a_lead_whose_session_ends_is_taken_over(
    pg_db: database.DB, postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "llamactl")
    first, second = Leadership(pg_db.engine), Leadership(pg_db.engine)
    assert first.check() and not second.check()
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted"
        ).fetchall()
    assert ended == [(True,)]
    assert second.check() is True
    assert first.check() is False
    assert "no longer leads" in caplog.text and "now leads" in caplog.text
    first.close()
    second.close()

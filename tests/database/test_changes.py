"""Change notices over PostgreSQL (migration 0009): what a configuration write tells every
listener, what a status or usage write does not, and a listener that loses its connection
reports the gap once it is back."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import psycopg
import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.database.changes import ChangeFeed, Notice, feed_for, parse
from llamactl.database.keys import KeyChanges, NewKey
from llamactl.instance import Instance, Options, Status
from tests.support.postgres import PostgresServer

QUIET = 0.3  # seconds to listen for a notice that must not come: only after one that must


def make(name: str, **options: object) -> Instance:
    body: dict[str, object] = {"backend_type": "llama_cpp", "backend_options": {"model": "/m"}}
    body.update(options)
    return Instance(name=name, created=1, status=Status.STOPPED, options=Options.from_json(body))


class Heard:
    """What a feed handed over, in order (``"gap"`` for a gap)."""

    def __init__(self) -> None:
        self.items: queue.Queue[Notice | str] = queue.Queue()

    def notice(self, notice: Notice) -> None:
        self.items.put(notice)

    def gap(self) -> None:
        self.items.put("gap")

    def next(self, timeout: float = 5.0) -> Notice | str:
        return self.items.get(timeout=timeout)

    def nothing_more(self) -> bool:
        try:
            self.items.get(timeout=QUIET)
        except queue.Empty:
            return True
        return False


@pytest.fixture
def heard(pg_db: database.DB) -> Iterator[Heard]:
    found = Heard()
    feed = feed_for(pg_db.engine, found.notice, found.gap)
    assert isinstance(feed, ChangeFeed)
    feed.start()
    assert feed.listening
    yield found
    feed.stop()


def test_payloads_parse() -> None:
    assert parse("instance:a-b.c") == Notice("a-b.c")
    assert parse("keys") == Notice(None)
    assert parse("instance:") is None and parse("later:thing") is None and parse("keys:x") is None


def test_sqlite_has_no_feed() -> None:
    db = database.open(DatabaseSettings(path=":memory:"))
    try:
        assert feed_for(db.engine, lambda _n: None, lambda: None) is None
    finally:
        db.close()


def test_configuration_writes_are_heard_and_status_writes_are_not(
    pg_db: database.DB, heard: Heard
) -> None:
    pg_db.create(make("a"))
    assert heard.next() == Notice("a")
    pg_db.save_status(make("a").with_status(Status.RUNNING))
    pg_db.update(make("a", idle_timeout=30))
    assert heard.next() == Notice("a")  # the update's, not the status write's
    assert heard.nothing_more()
    pg_db.save(make("b"))
    assert heard.next() == Notice("b")
    pg_db.delete("a")
    assert heard.next() == Notice("a")
    assert heard.nothing_more()


def test_key_changes_are_heard_and_their_use_is_not(pg_db: database.DB, heard: Heard) -> None:
    record = pg_db.create_key(
        NewKey(name="k", key_hash="h" * 64, prefix="llamactl-1234", permission_mode="allow_all")
    )
    assert heard.next() == Notice(None)
    pg_db.record_key_use({record.id: (100, 3)})
    pg_db.update_key(record.id, KeyChanges(disabled=True))
    assert heard.next() == Notice(None)
    assert heard.nothing_more()
    pg_db.delete_key(record.id)
    assert heard.next() == Notice(None)


def test_a_lost_connection_is_a_gap_once_it_is_back(
    pg_db: database.DB, heard: Heard, postgres: PostgresServer
) -> None:
    name = pg_db.engine.url.database
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        ended = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND query LIKE 'LISTEN%%'",
            (name,),
        ).fetchall()
    assert ended == [(True,)]
    assert heard.next(timeout=10) == "gap"
    pg_db.create(make("after"))
    assert heard.next() == Notice("after")


def test_stop_ends_the_thread(pg_db: database.DB) -> None:
    feed = ChangeFeed(pg_db.engine, lambda _n: None, lambda: None)
    feed.start()
    feed.stop()
    assert not any(thread.name == "llamactl-changes" for thread in threading.enumerate())


def test_deleting_a_named_instance_tells_the_keys_too(pg_db: database.DB, heard: Heard) -> None:
    from llamactl.database.keys import KeyPermission

    pg_db.create(make("named"))
    assert heard.next() == Notice("named")
    (instance_id,) = pg_db.instance_ids(["named"]).values()
    pg_db.create_key(
        NewKey(
            name="k",
            key_hash="e" * 64,
            prefix="llamactl-5678",
            permission_mode="per_instance",
            permissions=(KeyPermission(instance_id),),
        )
    )
    assert heard.next() == Notice(None)
    assert heard.nothing_more()  # one notice for the key and its permission
    pg_db.delete("named")
    assert {heard.next(), heard.next()} == {Notice("named"), Notice(None)}

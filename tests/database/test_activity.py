"""The activity log's statements: a batch in, filtered pages out, pruning by age and count."""

from __future__ import annotations

import pytest

from llamactl import database
from llamactl.database.activity import Activity, ActivityQuery


def row(n: int, **fields: object) -> Activity:
    values: dict[str, object] = {
        "time": 1000.0 + n,
        "instance": "alpha",
        "route": "/v1/chat/completions",
        "status": 200,
        "duration": 0.5,
        **fields,
    }
    return Activity(**values)  # type: ignore[arg-type]


@pytest.fixture
def db(any_db: database.DB) -> database.DB:
    return any_db


def test_a_batch_is_stored_whole_and_read_back_newest_first(db: database.DB) -> None:
    given = [
        row(1, ttfb=0.01, queue_wait=2.5, cold_start=True, prompt_tokens=7, key_id=3,
            key_name="ci", node="gpu1"),
        row(2, streamed=True, completion_tokens=9, tokens_per_second=41.5),
        row(3, instance=None, status=404, route="/v1/embeddings"),
    ]  # fmt: skip
    db.add_activity(given)
    stored = db.list_activity(ActivityQuery())
    assert [item.id for item in stored] == [3, 2, 1]
    assert [item.to_json() for item in reversed(stored)] == [
        {**item.to_json(), "id": n} for n, item in enumerate(given, start=1)
    ]


def test_the_filters_narrow_and_the_ids_page(db: database.DB) -> None:
    db.add_activity(
        [row(n, instance="alpha" if n % 2 else "beta", status=200 if n % 3 else 503)
         for n in range(1, 13)]
    )  # fmt: skip
    ids = lambda **kw: [a.id for a in db.list_activity(ActivityQuery(**kw))]  # noqa: E731
    assert ids(instance="beta") == [12, 10, 8, 6, 4, 2]
    assert ids(statuses=(500, 599)) == [12, 9, 6, 3]
    assert ids(instance="alpha", statuses=(500, 599)) == [9, 3]
    assert ids(since=1010.0) == [12, 11, 10]
    assert ids(until=1003.0) == [2, 1]
    assert ids(after=9) == [12, 11, 10]
    assert ids(limit=4) == [12, 11, 10, 9]
    assert ids(before=9, limit=4) == [8, 7, 6, 5]


def test_pruning_removes_the_old_then_all_but_the_newest(db: database.DB) -> None:
    db.add_activity([row(n) for n in range(1, 21)])  # times 1001..1020
    assert db.prune_activity(older_than=1006.0, max_rows=1000) == 5
    assert db.prune_activity(older_than=None, max_rows=10) == 5
    assert [a.id for a in db.list_activity(ActivityQuery())] == list(range(20, 10, -1))
    assert db.prune_activity(older_than=None, max_rows=10) == 0


def test_the_samples_of_one_instance_come_oldest_first(db: database.DB) -> None:
    db.add_activity(
        [row(n, instance="alpha" if n < 8 else "beta", ttfb=n / 10) for n in range(1, 11)]
    )
    samples = db.activity_samples("alpha", since=1003.0, limit=3)
    assert [(s.id, s.ttfb) for s in samples] == [(5, 0.5), (6, 0.6), (7, 0.7)]


def test_an_empty_batch_writes_nothing(db: database.DB) -> None:
    db.add_activity([])
    assert db.list_activity(ActivityQuery()) == []


def test_a_batch_larger_than_one_insert_statement_is_stored_whole(db: database.DB) -> None:
    rows = [
        (1000.0 + n, "alpha", None, "/v1/chat/completions", 200, 0.5, None, None, 0, 0,
         n, None, None, None, None)
        for n in range(4500)
    ]  # fmt: skip
    db.add_activity_rows(rows)
    stored = db.list_activity(ActivityQuery(limit=1000))
    assert stored[0].id == 4500 and stored[0].prompt_tokens == 4499
    assert len(db.list_activity(ActivityQuery(limit=1000, before=1001))) == 1000
    assert db.prune_activity(older_than=None, max_rows=4500) == 0


def test_zeros_ones_and_nulls_come_back_as_they_went(db: database.DB) -> None:
    given = [
        row(1, duration=0.0, ttfb=0.0, queue_wait=1.0, prompt_tokens=0, completion_tokens=1,
            tokens_per_second=0.0, key_id=1, key_name="-1", node="-1", cold_start=True,
            streamed=False),
        row(2, instance="-1", duration=1.0, ttfb=None, prompt_tokens=None, key_id=None,
            streamed=True),
    ]  # fmt: skip
    db.add_activity(given)
    stored = db.list_activity(ActivityQuery())
    assert [item.to_json() for item in reversed(stored)] == [
        {**item.to_json(), "id": n} for n, item in enumerate(given, start=1)
    ]
    first = stored[1]
    assert isinstance(first.duration, float) and isinstance(first.ttfb, float)
    assert isinstance(first.prompt_tokens, int) and first.cold_start is True


def test_a_batch_that_shares_its_instance_and_key_or_not_is_stored_whole(
    db: database.DB,
) -> None:
    shared = [row(n, ttfb=None if n % 2 else 0.5, key_id=2, key_name="ci") for n in range(6)]
    mixed = [row(n, instance="beta" if n % 2 else None, status=200 + n) for n in range(6, 9)]
    db.add_activity(shared)
    db.add_activity(mixed)
    stored = list(reversed(db.list_activity(ActivityQuery())))
    assert [item.to_json() for item in stored] == [
        {**item.to_json(), "id": n} for n, item in enumerate(shared + mixed, start=1)
    ]

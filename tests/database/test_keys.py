"""The stored inference keys: create, read, update, delete, usage, and what goes with them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from llamactl import database
from llamactl.database.keys import KeyChanges, KeyPermission, NewKey
from llamactl.errors import InvalidInput, KeyNotFound
from llamactl.instance import Instance, Options
from tests.support.clock import FakeClock
from tests.support.config import fake_options


def instance(name: str) -> Instance:
    return Instance(name=name, options=Options.from_json(fake_options()))


def new_key(name: str = "ci", key_hash: str = "h1", **more: object) -> NewKey:
    fields: dict[str, object] = {"permission_mode": "allow_all", **more}
    return NewKey(name=name, key_hash=key_hash, prefix="llamactl-0123abcd", **fields)  # type: ignore[arg-type]


@pytest.fixture
def db(any_db: database.DB) -> database.DB:
    for name in ("alpha", "beta"):
        any_db.save(instance(name))
    return any_db


def test_a_key_is_stored_and_read_back_as_it_was_given(db: database.DB, clock: FakeClock) -> None:
    ids = db.instance_ids(["alpha", "beta", "nothing"])
    assert set(ids) == {"alpha", "beta"}
    created = db.create_key(
        new_key(
            permission_mode="per_instance",
            permissions=(KeyPermission(ids["beta"], can_evict=False),),
            max_concurrent=2,
            requests_per_minute=60,
            expires_at=1_800_000_000,
        )
    )
    assert created.id == 1 and created.name == "ci" and created.key_hash == "h1"
    assert (created.owner, created.disabled, created.requests, created.last_used_at) == (
        "system", False, 0, None,
    )  # fmt: skip
    assert created.created_at == created.updated_at == int(clock.now)
    assert created.permissions == (KeyPermission(ids["beta"], "beta", True, False),)
    assert (created.max_concurrent, created.requests_per_minute) == (2, 60)
    assert db.get_key(created.id) == created
    assert db.list_keys() == [created]


def test_an_update_replaces_what_it_names_and_keeps_the_rest(
    db: database.DB, clock: FakeClock
) -> None:
    ids = db.instance_ids(["alpha", "beta"])
    key = db.create_key(new_key(max_concurrent=3, expires_at=1_800_000_000))
    clock.now += 60
    changed = db.update_key(
        key.id,
        KeyChanges(
            name="renamed",
            permission_mode="per_instance",
            permissions=(KeyPermission(ids["alpha"]), KeyPermission(ids["beta"], can_start=False)),
            disabled=True,
            clear=frozenset({"expires_at"}),
        ),
    )
    assert (changed.name, changed.permission_mode, changed.disabled) == (
        "renamed", "per_instance", True,
    )  # fmt: skip
    assert (changed.max_concurrent, changed.expires_at) == (3, None)
    assert [(p.instance_name, p.can_start) for p in changed.permissions] == [
        ("alpha", True), ("beta", False),
    ]  # fmt: skip
    assert changed.updated_at == key.updated_at + 60 and changed.created_at == key.created_at
    again = db.update_key(key.id, KeyChanges(permissions=()))
    assert again.permissions == () and again.name == "renamed"


def test_a_permission_for_no_instance_is_refused_and_nothing_is_stored(db: database.DB) -> None:
    with pytest.raises(InvalidInput):
        db.create_key(new_key(permission_mode="per_instance", permissions=(KeyPermission(99),)))
    assert db.list_keys() == []
    key = db.create_key(new_key())
    with pytest.raises(InvalidInput):
        db.update_key(key.id, KeyChanges(name="x", permissions=(KeyPermission(99),)))
    assert db.get_key(key.id) == key


def test_unknown_ids_are_refused(db: database.DB) -> None:
    for call in (
        lambda: db.get_key(7),
        lambda: db.update_key(7, KeyChanges(name="x")),
        lambda: db.delete_key(7),
    ):
        with pytest.raises(KeyNotFound):
            call()


def test_deleting_a_key_or_an_instance_removes_their_permissions(db: database.DB) -> None:
    ids = db.instance_ids(["alpha", "beta"])
    both = (KeyPermission(ids["alpha"]), KeyPermission(ids["beta"]))
    first = db.create_key(new_key(permission_mode="per_instance", permissions=both))
    second = db.create_key(new_key("other", "h2", permission_mode="per_instance", permissions=both))
    db.delete("alpha")
    assert [p.instance_name for p in db.get_key(first.id).permissions] == ["beta"]
    db.delete_key(first.id)
    with db.reading() as connection:
        rows = connection.execute(text("SELECT key_id, instance_id FROM key_permissions")).all()
    assert [tuple(row) for row in rows] == [(second.id, ids["beta"])]


def test_uses_add_up_and_a_deleted_key_is_passed_over(db: database.DB) -> None:
    key = db.create_key(new_key())
    gone = db.create_key(new_key("gone", "h2"))
    db.delete_key(gone.id)
    db.record_key_use({key.id: (1_750_000_100, 3), gone.id: (1_750_000_100, 1)})
    db.record_key_use({key.id: (1_750_000_200, 2)})
    stored = db.get_key(key.id)
    assert (stored.requests, stored.last_used_at) == (5, 1_750_000_200)


def test_keys_made_and_deleted_from_many_threads_leave_a_consistent_table(
    db: database.DB, db_path: Path
) -> None:
    errors: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            for round_ in range(10):
                key = db.create_key(new_key(f"k{worker}-{round_}", f"h{worker}-{round_}"))
                if round_ % 2:
                    db.delete_key(key.id)
        except BaseException as exc:  # handed to the test
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(worker,)) for worker in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = sorted(key.name for key in db.list_keys())
    assert names == sorted(f"k{w}-{r}" for w in range(10) for r in range(0, 10, 2))

"""Stored keys: how they are made, hashed and found."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from llamactl.auth.stored import SECRET_FILE, KeyBook, KeyHasher, display_prefix, new_key
from llamactl.database.keys import KeyRecord
from llamactl.errors import ConfigError
from tests.support.clock import FakeClock


def record(key_id: int, key_hash: str, **more: object) -> KeyRecord:
    fields: dict[str, object] = {
        "name": f"k{key_id}", "prefix": "llamactl-0123abcd", "owner": "system",
        "permission_mode": "allow_all", "max_concurrent": None, "requests_per_minute": None,
        "expires_at": None, "disabled": False, "created_at": 1, "updated_at": 1,
        "last_used_at": None, "requests": 0, **more,
    }  # fmt: skip
    return KeyRecord(id=key_id, key_hash=key_hash, **fields)  # type: ignore[arg-type]


def test_a_new_key_has_256_random_bits_and_a_short_prefix_to_show() -> None:
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert key.startswith("llamactl-") and len(key) == len("llamactl-") + 64
        int(key.removeprefix("llamactl-"), 16)
        assert display_prefix(key) == key[:17] and len(display_prefix(key)) == 17


def test_the_secret_is_made_once_0600_and_read_back(tmp_path: Path) -> None:
    first = KeyHasher.of_data_dir(tmp_path)
    path = tmp_path / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    again = KeyHasher.of_data_dir(tmp_path)
    assert first.digest(b"llamactl-x") == again.digest(b"llamactl-x")
    assert first.digest(b"llamactl-x") != KeyHasher(b"other").digest(b"llamactl-x")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="wider than 0600"):
        KeyHasher.of_data_dir(tmp_path)


def test_a_key_is_found_by_its_hash_and_only_by_it() -> None:
    hasher = KeyHasher(b"s" * 32)
    key = new_key()
    book = KeyBook(hasher)
    book.load([record(1, hasher.digest(key.encode())), record(2, hasher.digest(b"llamactl-2"))])
    found = book.find(key.encode())
    assert found is not None and found.id == 1
    assert book.find(key.encode()[:-1]) is None
    assert book.find(b"sk-" + key.encode()) is None
    book.remove(1)
    assert book.find(key.encode()) is None and len(book) == 1
    book.put(record(2, hasher.digest(b"llamactl-2"), name="renamed"))
    renamed = book.find(b"llamactl-2")
    assert renamed is not None and renamed.name == "renamed" and len(book) == 1


def test_a_disabled_or_expired_key_is_refused_saying_so() -> None:
    clock = FakeClock(1000)
    book = KeyBook(KeyHasher(b"s"), clock)
    assert book.refusal(record(1, "a")) is None
    assert book.refusal(record(1, "a", disabled=True)) == "API key llamactl-0123abcd… is disabled"
    assert book.refusal(record(1, "a", expires_at=1001)) is None
    clock.now = 1001
    assert book.refusal(record(1, "a", expires_at=1001)) == "API key llamactl-0123abcd… expired"


def test_uses_are_counted_for_one_batched_write() -> None:
    clock = FakeClock(1000)
    book = KeyBook(KeyHasher(b"s"), clock)
    for _ in range(3):
        book.used(record(1, "a"))
    clock.now = 1005
    book.used(record(1, "a"))
    book.used(record(2, "b"))
    assert book.take_uses() == {1: (1005, 4), 2: (1005, 1)}
    assert book.take_uses() == {}

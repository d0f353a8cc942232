"""Inference keys stored in the database: made here, kept only as keyed hashes.

A key is ``llamactl-`` and 64 hex digits: 256 random bits. The database holds its
HMAC-SHA-256 under a secret of the server (``<data_dir>/keys.secret``, 32 random bytes,
mode 0600, made once), never the key. With that much entropy a fast keyed hash is the
right store: no guessing gets through 2^256 keys, so a slow password hash (Argon2,
bcrypt), made to protect short human passwords, would only cost each request a few
milliseconds of CPU and force checking every stored hash in turn; the keyed hash lets a
request be looked up by one equality, whatever the number of keys, and a stolen database
without the secret file gives nothing to test guesses against.

``KeyBook`` holds every stored key in memory by hash: a request costs one HMAC and one
dict lookup. It counts each key's requests for a batched write (``take_uses``), and holds
each key to its limits: requests at once (``max_concurrent``) and per minute
(``requests_per_minute``, over the last 60 seconds).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from llamactl.auth.keyfiles import read_or_create_secret
from llamactl.database.keys import KeyRecord
from llamactl.errors import RateLimited

__all__ = ["KEY_PREFIX", "SECRET_FILE", "KeyBook", "KeyHasher", "display_prefix", "new_key"]

KEY_PREFIX = "llamactl-"
SECRET_FILE = "keys.secret"
_PREFIX_SHOWN = len(KEY_PREFIX) + 8


def new_key() -> str:
    """A new key: ``llamactl-`` and 256 random bits in hex."""
    return KEY_PREFIX + secrets.token_hex(32)


def display_prefix(key: str) -> str:
    """The start of a key that may be shown (``llamactl-`` and 8 hex digits)."""
    return key[:_PREFIX_SHOWN]


class KeyHasher:
    """The keyed hash of keys, under the server's secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @classmethod
    def of_data_dir(cls, data_dir: Path, secret_file: str = "") -> KeyHasher:
        """The hasher of the secret in ``secret_file`` (relative to ``data_dir``; by default
        ``keys.secret`` there), made, 0600, if there is none."""
        return cls(read_or_create_secret(Path(data_dir) / (secret_file or SECRET_FILE)))

    def digest(self, key: bytes) -> str:
        return hmac.new(self._secret, key, hashlib.sha256).hexdigest()


class KeyBook:
    """The stored keys by hash; see the module docstring."""

    def __init__(self, hasher: KeyHasher, clock: Callable[[], float] = time.time) -> None:
        self.hasher = hasher
        self._clock = clock
        self._by_hash: dict[str, KeyRecord] = {}
        self._by_id: dict[int, KeyRecord] = {}
        self._uses: dict[int, tuple[int, int]] = {}  # id -> (last use, requests)
        self._in_flight: dict[int, int] = {}
        self._recent: dict[int, collections.deque[float]] = {}  # admitted in the last minute

    def __len__(self) -> int:
        return len(self._by_hash)

    def load(self, records: Iterable[KeyRecord]) -> None:
        self._by_hash = {record.key_hash: record for record in records}
        self._by_id = {record.id: record for record in self._by_hash.values()}

    def put(self, record: KeyRecord) -> None:
        """Take a new or changed key."""
        self.remove(record.id)
        self._by_hash[record.key_hash] = record
        self._by_id[record.id] = record

    def remove(self, key_id: int) -> None:
        old = self._by_id.pop(key_id, None)
        if old is not None:
            self._by_hash.pop(old.key_hash, None)

    def still_usable(self, record: KeyRecord) -> bool:
        """Whether ``record`` is still the stored key of its id, unchanged and usable (for
        a connection that presented it before)."""
        return self._by_id.get(record.id) is record and self.refusal(record) is None

    def find(self, presented: bytes) -> KeyRecord | None:
        """The stored key ``presented`` is, if it is one."""
        if not presented.startswith(KEY_PREFIX.encode()):
            return None
        return self._by_hash.get(self.hasher.digest(presented))

    def refusal(self, record: KeyRecord) -> str | None:
        """Why ``record`` may not be used now (disabled, expired), or ``None``."""
        if record.disabled:
            return f"API key {record.prefix}… is disabled"
        if record.expires_at is not None and record.expires_at <= self._clock():
            return f"API key {record.prefix}… expired"
        return None

    def used(self, record: KeyRecord) -> None:
        """Count a request of ``record`` (written later, in a batch)."""
        _last, count = self._uses.get(record.id, (0, 0))
        self._uses[record.id] = (int(self._clock()), count + 1)

    def take_uses(self) -> dict[int, tuple[int, int]]:
        """The requests counted since the last call, by key id: ``(last use, count)``."""
        uses, self._uses = self._uses, {}
        return uses

    def admit(self, record: KeyRecord) -> None:
        """Count a request of ``record`` in against its limits; ``RateLimited`` (429,
        with the seconds to wait) when it is over one. Each admitted request must be
        ``release``d."""
        in_flight = self._in_flight.get(record.id, 0)
        most = record.max_concurrent
        if most is not None and in_flight >= most:
            raise RateLimited(
                f"this API key has {in_flight} requests in flight, its most "
                f"(max_concurrent = {most})",
                retry_after=1,
            )
        rate = record.requests_per_minute
        if rate is not None:
            now = self._clock()
            recent = self._recent.setdefault(record.id, collections.deque())
            while recent and recent[0] <= now - 60:
                recent.popleft()
            if len(recent) >= rate:
                wait = max(1, math.ceil(recent[0] + 60 - now))
                raise RateLimited(
                    f"this API key made {len(recent)} requests in the last minute, its most "
                    f"(requests_per_minute = {rate})",
                    retry_after=wait,
                )
            recent.append(now)
        self._in_flight[record.id] = in_flight + 1

    def release(self, record: KeyRecord) -> None:
        """An admitted request of ``record`` has ended."""
        left = self._in_flight.get(record.id, 1) - 1
        if left > 0:
            self._in_flight[record.id] = left
        else:
            self._in_flight.pop(record.id, None)

"""Another writer on the database file: a thread with its own sqlite3 connection that holds
the write lock until told to let go."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from types import TracebackType

HOLD_AT_MOST = 60.0  # a test that never releases still ends


class LockHolder:
    """Holds ``BEGIN IMMEDIATE`` (or ``EXCLUSIVE``) on ``path`` from ``__enter__`` until
    ``release`` or ``__exit__``. ``release`` may be called from any thread."""

    def __init__(self, path: Path, mode: str = "IMMEDIATE") -> None:
        self._path = path
        self._mode = mode
        self._held = threading.Event()
        self._release = threading.Event()
        self._released = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lock-holder", daemon=True)

    def __enter__(self) -> LockHolder:
        self._thread.start()
        if not self._held.wait(10.0):
            raise AssertionError("the lock holder did not get the lock")
        if self._failure is not None:
            raise self._failure
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.release()

    @property
    def holding(self) -> bool:
        return self._held.is_set() and not self._released.is_set()

    def release(self) -> None:
        self._release.set()
        self._thread.join(10.0)

    def _run(self) -> None:
        connection = sqlite3.connect(self._path, isolation_level=None, timeout=10.0)
        try:
            connection.execute(f"BEGIN {self._mode}")
        except sqlite3.Error as exc:
            self._failure = exc
            self._held.set()
            connection.close()
            return
        self._held.set()
        try:
            self._release.wait(HOLD_AT_MOST)
            connection.execute("ROLLBACK")
        finally:
            self._released.set()
            connection.close()

"""Notices of configuration changes over one PostgreSQL database (migration 0009).

Each llamactl that serves over a shared PostgreSQL database keeps the instances and keys
in memory. Migration 0009's triggers send a notice on ``llamactl_changes`` whenever a
transaction commits a configuration change, whoever made it: ``instance:<name>`` or
``keys``. ``ChangeFeed`` listens on a connection of its own, on a thread of its own, and
hands each notice to a callback. A notice can be lost while the connection is down, so
after every reconnection it also calls ``on_gap``: the listener reads everything again.

SQLite has no notices (one llamactl per file): ``feed_for`` gives ``None`` there.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

__all__ = ["CHANNEL", "ChangeFeed", "Notice", "feed_for", "parse"]

logger = logging.getLogger(__name__)

CHANNEL = "llamactl_changes"
POLL_SECONDS = 0.5  # how often the listening thread looks whether it should stop
RECONNECT_FIRST = 0.5  # seconds before the first reconnection attempt, doubled up to
RECONNECT_MOST = 5.0


@dataclass(frozen=True)
class Notice:
    """What changed: the instance called ``instance``, or (``instance`` None) the keys."""

    instance: str | None


def parse(payload: str) -> Notice | None:
    """The notice a payload names; ``None`` for one this version does not know."""
    kind, _, rest = payload.partition(":")
    if kind == "instance" and rest:
        return Notice(rest)
    if kind == "keys" and not rest:
        return Notice(None)
    return None


def feed_for(
    engine: Engine, on_notice: Callable[[Notice], None], on_gap: Callable[[], None]
) -> ChangeFeed | None:
    """A feed over ``engine``'s database, or ``None`` where it sends no notices."""
    if engine.dialect.name != "postgresql":
        return None
    return ChangeFeed(engine, on_notice, on_gap)


class ChangeFeed:
    """Listens for notices on a thread; see the module docstring.

    ``on_notice`` and ``on_gap`` run on that thread: they should only hand over.
    """

    def __init__(
        self, engine: Engine, on_notice: Callable[[Notice], None], on_gap: Callable[[], None]
    ) -> None:
        self._engine = engine
        self._on_notice = on_notice
        self._on_gap = on_gap
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._down_since = time.monotonic()  # when listening ended (or the feed was made)
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        """Whether the feed's connection is up and listening now."""
        return self._listening.is_set()

    def down_for(self) -> float:
        """Seconds since the feed stopped listening (0 while it listens)."""
        return 0.0 if self.listening else time.monotonic() - self._down_since

    def start(self, timeout: float = 5.0) -> None:
        """Start listening; wait up to ``timeout`` for the first connection (the feed
        keeps trying after that, and reports a gap once it is up)."""
        self._thread = threading.Thread(target=self._run, name="llamactl-changes", daemon=True)
        self._thread.start()
        self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=POLL_SECONDS * 4 + RECONNECT_MOST)
            self._thread = None

    def _run(self) -> None:
        delay, first = RECONNECT_FIRST, True
        while not self._stopping.is_set():
            try:
                connection = self._connect()
            except Exception as exc:  # the driver's errors, whatever they are
                self._lost(exc, first)
                first = False
                self._stopping.wait(delay)
                delay = min(delay * 2, RECONNECT_MOST)
                continue
            delay = RECONNECT_FIRST
            try:
                self._listen(connection, gap=not first)
            except Exception as exc:
                self._lost(exc, False)
            finally:
                self._listening.clear()
                self._down_since = time.monotonic()
                _close(connection)
            first = False

    def _connect(self) -> Any:
        dialect = self._engine.dialect
        arguments, options = dialect.create_connect_args(self._engine.url)
        connection = dialect.connect(*arguments, **options)
        connection.autocommit = True
        connection.execute(f"LISTEN {CHANNEL}")
        return connection

    def _listen(self, connection: Any, *, gap: bool) -> None:
        self._listening.set()
        if gap:
            logger.info("listening for changes again; reading every instance and key")
            self._on_gap()
        while not self._stopping.is_set():
            for notify in connection.notifies(timeout=POLL_SECONDS):
                notice = parse(notify.payload)
                if notice is not None:
                    self._on_notice(notice)

    def _lost(self, exc: Exception, first: bool) -> None:
        if self._stopping.is_set():
            return
        if first or self._listening.is_set():
            logger.warning("not listening for changes to the database (retrying): %s", exc)
        else:
            logger.debug("still not listening for changes: %s", exc)


def _close(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # already broken
        logger.debug("closing the change feed's connection failed", exc_info=True)

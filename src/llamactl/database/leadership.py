"""Which of several llamactl processes over one PostgreSQL database runs the background
work that must happen once (pruning the activity log).

``Leadership`` holds a PostgreSQL session advisory lock on a connection of its own: the
replica that holds it leads. The lock lives as long as that session, so when the leader
dies, is killed or loses its connection, the server releases it and the next replica to
ask (every ``ASK_EVERY`` seconds) takes it over. Over SQLite (one llamactl per file) the
only process always leads.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Engine

__all__ = ["ASK_EVERY", "LOCK_KEY", "Leadership"]

logger = logging.getLogger("llamactl")

ASK_EVERY = 2.0  # seconds between two attempts to lead, and two checks that it still does
LOCK_KEY = 0x6C6C616D61637400  # "llamact\0": llamactl's advisory lock, one per database


class Leadership:
    """Whether this process leads; ``check`` (blocking, on a worker thread) asks for the
    lock or checks it is still held, and returns whether it leads now."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._shared = engine.dialect.name == "postgresql"
        self._connection: Any = None
        self.leads = not self._shared

    @property
    def shared(self) -> bool:
        """Whether other processes may lead instead (a shared PostgreSQL database)."""
        return self._shared

    def check(self) -> bool:
        if not self._shared:
            return True
        try:
            held = self._still_held() if self._connection is not None else self._ask()
        except Exception as exc:  # the driver's errors: the session, and the lock, are gone
            self._drop()
            held = False
            logger.debug("cannot ask for the lead: %s", exc)
        self._take(held)
        return held

    def close(self) -> None:
        """Give the lead up (the session ends, so the lock goes with it)."""
        self._drop()
        self._take(False)

    def _ask(self) -> bool:
        dialect = self._engine.dialect
        arguments, options = dialect.create_connect_args(self._engine.url)
        connection = dialect.connect(*arguments, **options)
        connection.autocommit = True
        try:
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        except BaseException:
            connection.close()
            raise
        if row is not None and row[0]:
            self._connection = connection
            return True
        connection.close()
        return False

    def _still_held(self) -> bool:
        self._connection.execute("SELECT 1").fetchone()
        return True

    def _take(self, held: bool) -> None:
        if held and not self.leads:
            logger.info("this replica now leads: it runs the activity log's pruning")
        elif self.leads and not held:
            logger.warning("this replica no longer leads: another one prunes the activity log")
        self.leads = held

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # already broken
                logger.debug("closing the lead's connection failed", exc_info=True)

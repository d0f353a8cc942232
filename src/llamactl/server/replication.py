"""Several llamactl processes over one PostgreSQL database: what one changes, the others take.

A change made through one replica (an instance created, changed or deleted; a key added,
changed or removed) reaches the others as a notice (``database.changes``), usually within
milliseconds of its commit. Each notice is handed to the event loop, where notices that
arrive together are taken in one go: the instances they name are read again and taken
into the manager (``InstanceManager.resync``), the keys are read again when one of them
changed. As a safety net against a notice lost while the feed's connection was down,
everything is read again after every reconnection and every ``REREAD_EVERY`` seconds.
One replica at a time leads (``database.leadership``): only it prunes the activity log.

Over SQLite (one llamactl per file) none of this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import anyio.to_thread

from llamactl.database.changes import ChangeFeed, Notice, feed_for
from llamactl.database.leadership import ASK_EVERY, Leadership
from llamactl.errors import DatabaseUnavailable, LlamactlError
from llamactl.server.lifecycle import Services

__all__ = ["REREAD_EVERY", "Replication"]

logger = logging.getLogger("llamactl")

REREAD_EVERY = 10.0  # seconds between two full reads, whatever the notices said


class Replication:
    """Takes other replicas' changes into ``services``; see the module docstring."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._loop: asyncio.AbstractEventLoop | None = None
        self._feed: ChangeFeed | None = None
        self._leadership: Leadership | None = None
        self._names: set[str] = set()
        self._keys = False
        self._everything = False
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def active(self) -> bool:
        return self._feed is not None

    def stale(self) -> DatabaseUnavailable | None:
        """The refusal for ``/v1`` once the shared database has been unreachable longer
        than ``database.stale_after`` (what this router knows may be out of date), else
        ``None``."""
        bound = self._services.config.database.stale_after.total_seconds()
        away = self._feed.down_for() if self._feed is not None else 0.0
        if bound <= 0 or away <= bound:
            return None
        return DatabaseUnavailable(
            f"this router has not reached its database for {away:.0f} s (more than "
            f"database.stale_after, {bound:g} s): what it knows of the instances may be "
            "out of date"
        )

    @property
    def leads(self) -> bool:
        """Whether this replica runs the work that must happen once (always over SQLite;
        see ``database.leadership``)."""
        return self._leadership is None or self._leadership.leads

    async def start(self) -> None:
        """Listen for notices (nothing over SQLite)."""
        engine = self._services.db.engine
        self._loop = asyncio.get_running_loop()
        self._feed = feed_for(engine, self._notice, self._gap)
        if self._feed is None:
            return
        await anyio.to_thread.run_sync(self._feed.start)
        self._services.manager.share()
        self._leadership = Leadership(engine)
        await anyio.to_thread.run_sync(self._leadership.check)
        self._tasks = [
            asyncio.create_task(self._take_changes()),
            asyncio.create_task(self._reread_now_and_then()),
            asyncio.create_task(self._keep_asking_to_lead()),
        ]
        logger.info("listening for changes other replicas make to the shared database")

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._feed is not None:
            await anyio.to_thread.run_sync(self._feed.stop)
            self._feed = None
        if self._leadership is not None:
            await anyio.to_thread.run_sync(self._leadership.close)

    # -- from the feed's thread ---------------------------------------------------------

    def _notice(self, notice: Notice) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._take_notice, notice)

    def _gap(self) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._take_gap)

    # -- on the loop --------------------------------------------------------------------

    def _take_notice(self, notice: Notice) -> None:
        if notice.instance is None:
            self._keys = True
        else:
            self._names.add(notice.instance)
        self._wake.set()

    def _take_gap(self) -> None:
        self._everything = self._keys = True
        self._wake.set()

    async def _take_changes(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            names, self._names = self._names, set()
            everything, self._everything = self._everything, False
            keys, self._keys = self._keys, False
            await self._apply(None if everything else names, keys)

    async def _reread_now_and_then(self) -> None:
        while True:
            await asyncio.sleep(REREAD_EVERY)
            self._take_gap()

    async def _keep_asking_to_lead(self) -> None:
        assert self._leadership is not None
        while True:
            await asyncio.sleep(ASK_EVERY)
            await anyio.to_thread.run_sync(self._leadership.check)

    async def _apply(self, names: set[str] | None, keys: bool) -> None:
        services = self._services
        try:
            if names is None or names:
                await services.manager.resync(names)
            if keys and services.book is not None:
                services.book.load(await anyio.to_thread.run_sync(services.db.list_keys))
        except LlamactlError as exc:  # the database is away: the next read makes up for it
            logger.warning("cannot read the changes of other replicas: %s", exc.message)
            self._everything = self._keys = True

"""The manager's way to the database: every call runs on one writer thread.

SQLite waits up to ``busy_timeout`` for a lock another process holds; done on the event
loop, that wait would stall every request. Here each database call runs on one dedicated
thread, in the order the calls were made, and the loop awaits its result.

Two kinds of write:

- **Awaited** (``save``, ``delete``): configuration changes. The caller waits for the
  write and gets its error (``DatabaseUnavailable`` is a 503); the in-memory registry
  changes only after the write went through.
- **Deferred** (``defer_save``, ``defer_record``, ``defer_forget``): what happens to a
  backend — status changes, process records. The manager's memory is the source of truth
  and changes at once; the write follows on the writer thread. A write that fails stays
  pending and is tried again every ``retry_delay`` seconds, and at every later write, until
  the database takes it; only the latest state of each row is written. So a start, a stop
  or a crash is handled in full while the database is locked, and is persisted once it
  is back.

Each write carries a generation (a counter taken on the loop when the state was made); the
writer thread keeps the last generation written per row and skips an older one, so a
retried status can never overwrite a newer configuration, nor bring back a deleted row.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from llamactl.database import Database
from llamactl.database.processes import ProcessRecord
from llamactl.errors import DatabaseError
from llamactl.instance import Instance

__all__ = ["Persistence", "PersistenceState"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Callback = Callable[[], None]
RETRY_DELAY = 1.0


@dataclass(frozen=True)
class PersistenceState:
    """How far the database is behind the manager's memory."""

    pending: int  # rows whose latest state is not written yet
    error: str | None  # why the last deferred write failed; None once one succeeds


@dataclass(frozen=True)
class _Batch:
    instances: tuple[tuple[str, int, Instance], ...]
    processes: tuple[tuple[str, int, ProcessRecord | None], ...]


@dataclass
class _Outcome:
    instances: list[tuple[str, int]]
    processes: list[tuple[str, int]]
    error: DatabaseError | None = None


def _retrieve(task: asyncio.Future[None]) -> None:
    """Mark the outcome of a write seen: the caller may have been cancelled before it."""
    if not task.cancelled():
        task.exception()


class Persistence:
    """Runs the calls of ``Database`` on one writer thread; defers and retries status."""

    def __init__(self, db: Database, *, retry_delay: float = RETRY_DELAY) -> None:
        self._db = db
        self._retry_delay = retry_delay
        self._executor: ThreadPoolExecutor | None = None
        self._generations = itertools.count(1)
        # Loop side: the rows whose latest state waits to be written.
        self._instances: dict[str, tuple[int, Instance]] = {}
        self._processes: dict[str, tuple[int, ProcessRecord | None]] = {}
        self._error: DatabaseError | None = None
        self._background: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Writer-thread side: the generation last written per row.
        self._written: dict[tuple[str, str], int] = {}

    # -- calls awaited by the caller ---------------------------------------------------

    async def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` (a database call) on the writer thread and return its result.

        A caller cancelled meanwhile does not stop the call: it runs to its end.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer(), function)

    async def save(
        self, inst: Instance, *, then: Callback | None = None, undo: Callback | None = None
    ) -> None:
        """Write ``inst`` now; raise the database's error. Supersedes a deferred state.

        ``then`` runs on the loop once the write went through, ``undo`` if it failed: both
        even when the caller is cancelled meanwhile, so memory always follows the file.
        """
        generation = next(self._generations)
        key = ("instance", inst.name)

        def write() -> None:
            self._db.save(inst)
            self._written[key] = max(generation, self._written.get(key, 0))

        def written() -> None:
            self._settled(self._instances, inst.name, generation)
            self._trim_error()
            if then is not None:
                then()

        await self._complete(write, written, undo)

    async def delete(
        self, name: str, *, then: Callback | None = None, undo: Callback | None = None
    ) -> None:
        """Delete the row of ``name`` now; pending writes of it are dropped. ``then`` and
        ``undo`` as for ``save``."""
        generation = next(self._generations)

        def write() -> None:
            self._db.delete(name)
            for kind in ("instance", "process"):
                key = (kind, name)
                self._written[key] = max(generation, self._written.get(key, 0))

        def written() -> None:
            self._settled(self._instances, name, generation)
            self._settled(self._processes, name, generation)
            if then is not None:
                then()

        await self._complete(write, written, undo)

    async def _complete(self, write: Callback, written: Callback, undo: Callback | None) -> None:
        """Run ``write`` on the writer thread, then ``written`` (or ``undo``) on the loop, in
        a task of its own that a cancelled caller does not end."""

        async def run() -> None:
            try:
                await self.call(write)
            except BaseException:
                if undo is not None:
                    undo()
                raise
            written()

        task = asyncio.ensure_future(run())
        task.add_done_callback(_retrieve)
        await asyncio.shield(task)

    # -- deferred writes ----------------------------------------------------------------

    def defer_save(self, inst: Instance) -> None:
        """Write the status and last failure of ``inst`` soon; the manager already holds
        them as its truth. Only those: the options in the row are what the last
        configuration write put there (here or on another replica over the same
        database), and a row deleted meanwhile stays deleted."""
        self._instances[inst.name] = (next(self._generations), inst)
        self._kick()

    def defer_record(self, entry: ProcessRecord) -> None:
        self._processes[entry.instance_name] = (next(self._generations), entry)
        self._kick()

    def defer_forget(self, name: str) -> None:
        self._processes[name] = (next(self._generations), None)
        self._kick()

    def forget_all(self, entries: Iterable[ProcessRecord]) -> None:
        for entry in entries:
            self.defer_forget(entry.instance_name)

    def state(self) -> PersistenceState:
        error = self._error.message if self._error is not None else None
        return PersistenceState(len(self._instances) + len(self._processes), error)

    async def flush(self, name: str | None = None) -> DatabaseError | None:
        """Write what is pending (of ``name`` only, if given); the error if a write failed."""
        batch = self._batch(name)
        if not batch.instances and not batch.processes:
            return None
        outcome = await self.call(lambda: self._write(batch))
        for row, generation in outcome.instances:
            self._settled(self._instances, row, generation)
        for row, generation in outcome.processes:
            self._settled(self._processes, row, generation)
        if outcome.error is not None:
            if self._error is None:
                logger.error(
                    "the database does not take status changes (kept in memory, tried "
                    "again every %g s): %s",
                    self._retry_delay,
                    outcome.error.message,
                )
            self._error = outcome.error
        elif name is None or not (self._instances or self._processes):
            self._trim_error()
        return outcome.error

    async def close(self) -> None:
        """Write what is pending (once), then stop the writer thread."""
        if self._background is not None:
            self._background.cancel()
            self._background = None
        error = await self.flush()
        if error is not None:
            logger.error(
                "%d status changes could not be written at shutdown: %s",
                self.state().pending,
                error.message,
            )
        if self._executor is not None:
            await self.call(lambda: None)  # a write still running (a cancelled retry) ends
            self._executor.shutdown(wait=True)
            self._executor = None

    # -- internals ----------------------------------------------------------------------

    def _writer(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamactl-db")
        return self._executor

    def _batch(self, name: str | None) -> _Batch:
        def pick(rows: dict[str, tuple[int, T]]) -> tuple[tuple[str, int, T], ...]:
            return tuple(
                (row, generation, value)
                for row, (generation, value) in rows.items()
                if name is None or row == name
            )

        return _Batch(pick(self._instances), pick(self._processes))

    def _write(self, batch: _Batch) -> _Outcome:
        """On the writer thread: each row's state unless a newer one was written already.
        Rows come before process records (a record refers to its row); stops at an error."""
        outcome = _Outcome([], [])
        try:
            for name, generation, inst in batch.instances:
                if self._fresh(("instance", name), generation):
                    self._db.save_status(inst)
                    self._written[("instance", name)] = generation
                outcome.instances.append((name, generation))
            for name, generation, entry in batch.processes:
                if self._fresh(("process", name), generation):
                    if entry is None:
                        self._db.forget_process(name)
                    else:
                        self._db.record_process(entry)
                    self._written[("process", name)] = generation
                outcome.processes.append((name, generation))
        except DatabaseError as exc:
            outcome.error = exc
        return outcome

    def _fresh(self, key: tuple[str, str], generation: int) -> bool:
        return generation > self._written.get(key, 0)

    @staticmethod
    def _settled(rows: dict[str, tuple[int, T]], name: str, generation: int) -> None:
        """Drop the pending state of ``name`` if it is not newer than ``generation``."""
        pending = rows.get(name)
        if pending is not None and pending[0] <= generation:
            del rows[name]

    def _trim_error(self) -> None:
        if self._error is not None and not (self._instances or self._processes):
            logger.info("the database takes writes again; every status change is written")
            self._error = None

    def _kick(self) -> None:
        self._wake.set()
        if self._background is None or self._background.done():
            self._background = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Write pending states until none is left; after a failure, wait and try again."""
        while self._instances or self._processes:
            self._wake.clear()
            try:
                error = await self.flush()
            except Exception:  # a bug must not end the retries
                logger.exception("writing status changes failed")
                error = DatabaseError("unexpected failure")
            if error is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._retry_delay)

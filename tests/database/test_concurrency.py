"""Many writers on one SQLite file: no 'database is locked', and exactly the expected rows."""

from __future__ import annotations

import threading
from pathlib import Path

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.instance import Instance, Options, Status

THREADS = 8
OPERATIONS = 200
HANDLES = 4  # two threads share each DB object (its pool); handles contend like processes
SHARED = [f"shared-{index}" for index in range(5)]


def instance(name: str, step: int) -> Instance:
    options = Options.from_json(
        {
            "backend_type": "llama_cpp",
            "backend_options": {"model": f"/m/{step}.gguf"},
            "idle_timeout": step,
        }
    )
    return Instance(name=name, created=1_700_000_000, status=Status.STOPPED, options=options)


def work(
    db: database.DB,
    thread: int,
    start: threading.Barrier,
    errors: list[BaseException],
    expected: set[str],
) -> None:
    """Saves and deletes of this thread's own names, plus saves of names every thread shares."""
    alive: set[str] = set()
    start.wait()
    try:
        for step in range(OPERATIONS):
            if step % 4 == 3:
                db.save(instance(SHARED[step % len(SHARED)], step))
                continue
            name = f"t{thread}-{step % 17}"
            if name in alive and step % 3 == 0:
                db.delete(name)
                alive.discard(name)
            else:
                db.save(instance(name, step))
                alive.add(name)
    except BaseException as exc:  # collected and asserted on by the test
        errors.append(exc)
    expected.update(alive)


def test_concurrent_saves_and_deletes(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    handles = [database.open(DatabaseSettings(path=str(path))) for _ in range(HANDLES)]
    database.run_migrations(handles[0])
    errors: list[BaseException] = []
    expected: set[str] = set(SHARED)
    start = threading.Barrier(THREADS)
    threads = [
        threading.Thread(
            target=work, args=(handles[index % HANDLES], index, start, errors, expected)
        )
        for index in range(THREADS)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "a writer is stuck"
        assert errors == []
        names = {inst.name for inst in handles[0].load_all()}
        assert names == expected
        assert len(names) > len(SHARED) + THREADS  # the workload left real rows behind
    finally:
        for handle in handles:
            handle.close()

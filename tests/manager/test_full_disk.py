"""A full disk under the logs folder: output is dropped and counted, the backend never blocks.

The logs folder is a 1 MB tmpfs (we mount one where we may: root in a container that
allows it; the tests are skipped otherwise). A real backend writes one log line per
request; each request carries a 16 kB query, so a few requests fill the pipe if nobody
reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.errors import BackendFailed
from llamactl.instance import Status
from llamactl.manager import InstanceManager
from llamactl.manager.reaper import is_alive
from tests.support.config import FAST, fake_config, fake_options
from tests.support.tmpfs import fill, tmpfs
from tests.support.waiting import is_ready, until

pytestmark = pytest.mark.anyio

PAD = "p" * 16 * 1024
REQUESTS = 40  # 640 kB of log lines: ten times a pipe's buffer


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "logs", "size=1m") as folder:
        yield folder


@pytest.fixture
async def manager(tmp_path: Path, small_disk: Path) -> AsyncIterator[InstanceManager]:
    db = database.open(DatabaseSettings(path=str(tmp_path / "data" / "llamactl.db")))
    database.run_migrations(db)
    built = InstanceManager(
        fake_config(tmp_path, LLAMACTL_LOGS_DIR=str(small_disk)), db, timings=FAST
    )
    built.load()
    try:
        yield built
    finally:
        try:
            async with asyncio.timeout(30):  # a regression must fail, not hang
                await built.shutdown()
        finally:
            db.close()


def open_descriptors_to(path: Path) -> list[str]:
    found = []
    for entry in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            if entry.readlink() == path:
                found.append(entry.name)
    return found


async def get_health(client: httpx.AsyncClient, port: int, tag: str) -> int:
    response = await client.get(f"http://127.0.0.1:{port}/health?{tag}={PAD}", timeout=10)
    return response.status_code


async def wait_for_output(queue: asyncio.Queue[object], text: str) -> None:
    """Wait until the log copier has handled output containing ``text``."""
    async with asyncio.timeout(20):
        while True:
            event = await queue.get()
            assert event is not None
            kind, data = event  # type: ignore[misc]
            if kind == "log" and text in str(data["text"]):
                return


async def test_a_full_disk_drops_output_but_the_backend_keeps_answering(
    manager: InstanceManager, small_disk: Path
) -> None:
    await manager.create("loud", fake_options())
    await manager.start("loud")
    await until(manager, "loud", is_ready)
    port = manager.get("loud").options.backend_options.port
    assert port is not None
    log_path = small_disk / "loud.log"
    filler = fill(small_disk)

    async with httpx.AsyncClient() as client:
        answers = [await get_health(client, port, f"full{n}") for n in range(REQUESTS)]
        assert answers == [200] * REQUESTS
        assert manager.get("loud").status is Status.RUNNING

        filler.unlink()  # space is back
        queue = manager.owner("loud").follow()
        try:
            assert await get_health(client, port, "afterwards") == 200
            await wait_for_output(queue, "afterwards=")  # type: ignore[arg-type]
        finally:
            manager.owner("loud").unfollow(queue)

    text = log_path.read_text()
    notice = re.search(r"\[llamactl\] (\d+) bytes of output dropped: no space left on device", text)
    assert notice is not None, text[-500:]
    assert int(notice.group(1)) > (REQUESTS - 4) * len(PAD)
    assert text.index(notice.group(0)) < text.index("afterwards=")
    assert "full39=" not in text  # dropped, not written late


async def test_stop_stops_on_a_full_disk(manager: InstanceManager, small_disk: Path) -> None:
    await manager.create("loud", fake_options())
    await manager.start("loud")
    await until(manager, "loud", is_ready)
    pid = manager.info("loud").pid
    assert pid is not None
    fill(small_disk)
    port = manager.get("loud").options.backend_options.port
    assert port is not None
    async with httpx.AsyncClient() as client:
        assert [await get_health(client, port, f"n{n}") for n in range(10)] == [200] * 10
    async with asyncio.timeout(30):  # a regression must fail, not hang
        stopped = await manager.stop("loud")
    assert stopped.status is Status.STOPPED
    assert not is_alive(pid)
    assert open_descriptors_to(small_disk / "loud.log") == []


async def test_start_on_a_full_disk_says_so_and_keeps_no_descriptor(
    manager: InstanceManager, small_disk: Path
) -> None:
    await manager.create("quiet", fake_options())
    filler = fill(small_disk)
    with pytest.raises(BackendFailed, match="no space left on device") as raised:
        await manager.start("quiet")
    assert str(small_disk / "quiet.log") in raised.value.message
    assert manager.get("quiet").status is Status.STOPPED
    assert manager.info("quiet").pid is None
    assert open_descriptors_to(small_disk / "quiet.log") == []

    filler.unlink()
    await manager.start("quiet")
    await until(manager, "quiet", is_ready)

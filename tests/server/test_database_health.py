"""``/healthz`` reports whether the database takes writes: a held lock, a deleted file,
status changes not written yet, and the free space of a real (small) filesystem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llamactl.database import database as database_module
from llamactl.server.management import CRITICAL_FREE_BYTES, LOW_FREE_BYTES
from tests.support.config import fake_options
from tests.support.locker import LockHolder
from tests.support.services import serving
from tests.support.tmpfs import fill, tmpfs

pytestmark = pytest.mark.anyio

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database_module, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(database_module, "PROBE_TIMEOUT_MS", 50)


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


async def test_healthz_is_503_while_another_process_holds_the_lock(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        db_path = tmp_path / "data" / "llamactl.db"
        with LockHolder(db_path):
            locked = await api.client.get("/healthz")
            created = await api.client.post("/api/v1/instances/alpha", json=fake_options())
        assert locked.status_code == 503
        body = locked.json()
        assert body["status"] == "unhealthy" and "database is locked" in body["error"]
        assert body["database"]["writable"] is False
        assert "database is locked" in _error(created, 503, "database_unavailable")
        again = await api.client.get("/healthz")
        assert (again.status_code, again.json()["status"]) == (200, "ok")


async def test_healthz_counts_status_changes_not_written_yet(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        db_path = tmp_path / "data" / "llamactl.db"
        assert (await api.client.post("/api/v1/instances/alpha", json=fake_options())).is_success
        with LockHolder(db_path):
            started = await api.client.post("/api/v1/instances/alpha/start")
            assert started.status_code == 200, started.text
            health = await api.client.get("/healthz")
        assert health.status_code == 503
        body = health.json()
        assert body["database"]["unsaved_changes"] > 0
        assert "status changes are not written yet: " in body["error"]
        await api.manager.flush()
        healthy = await api.client.get("/healthz")
        assert healthy.status_code == 200
        assert healthy.json()["database"]["unsaved_changes"] == 0
        assert (await api.client.post("/api/v1/instances/alpha/stop")).status_code == 200


async def test_healthz_is_503_and_creates_are_refused_after_the_file_is_deleted(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as api:
        db_path = tmp_path / "data" / "llamactl.db"
        assert (await api.client.get("/healthz")).status_code == 200
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
        health = await api.client.get("/healthz")
        created = await api.client.post("/api/v1/instances/alpha", json=fake_options())
        listed = await api.client.get("/api/v1/instances")
    assert health.status_code == 503
    assert f"database file {db_path} was deleted" in health.json()["error"]
    assert f"database file {db_path} was deleted" in _error(created, 503, "database_unavailable")
    assert listed.status_code == 200 and listed.json() == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/data`` on a 24 MiB tmpfs of its own."""
    with tmpfs(tmp_path / "data", "size=24m,mode=0700") as folder:
        yield folder


async def test_healthz_reports_low_space_then_a_full_disk(small_disk: Path) -> None:
    assert CRITICAL_FREE_BYTES < 24 * MIB < LOW_FREE_BYTES
    async with serving(small_disk.parent) as api:
        low = await api.client.get("/healthz")
        assert low.status_code == 200, low.text
        body = low.json()
        assert body["status"] == "degraded"
        assert body["warnings"][0].startswith("only ")
        assert 0 < body["database"]["free_bytes"] < 24 * MIB

        fill(small_disk)
        full = await api.client.get("/healthz")
        created = await api.client.post("/api/v1/instances/alpha", json=fake_options())
        (small_disk / "filler").unlink()
    assert full.status_code == 503
    assert "free in the database's folder: writes fail" in full.json()["error"]
    assert full.json()["database"]["free_bytes"] < CRITICAL_FREE_BYTES
    assert "database or disk is full" in _error(created, 503, "database_unavailable")

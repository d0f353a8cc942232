"""The management app over real services: a file database and a manager whose llama.cpp
backend is the fake llama-server, driven in-process through ``httpx.ASGITransport``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import params

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.manager import InstanceManager
from llamactl.server.auth import Keys
from llamactl.server.lifecycle import Services
from llamactl.server.management import build_management_app
from tests.manager.conftest import FAST, fake_config


@dataclass
class Api:
    """A client of the management app and the services behind it."""

    client: httpx.AsyncClient
    services: Services

    @property
    def manager(self) -> InstanceManager:
        return self.services.manager


@asynccontextmanager
async def serving(
    tmp_path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    dependencies: Sequence[params.Depends] = (),
) -> AsyncIterator[Api]:
    """Services over ``tmp_path`` (the same database on every call) and a client of the app.

    ``environ`` adds ``LLAMACTL_*`` variables to the fake configuration. On exit every
    backend is stopped and the database closed.
    """
    config = fake_config(tmp_path, **(environ or {}))
    db = database.open(DatabaseSettings(path=str(tmp_path / "data" / "llamactl.db")))
    try:
        database.run_migrations(db)
        manager = InstanceManager(config, db, timings=FAST)
        manager.load()
        keys = Keys.of(require_management=False, require_inference=False)
        services = Services(config=config, db=db, manager=manager, keys=keys)
        app = build_management_app(services, dependencies=dependencies)
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Api(client, services)
        finally:
            await manager.shutdown()
    finally:
        db.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path) as built:
        yield built

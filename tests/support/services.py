"""The services the HTTP layer works with, built over a real database the way
``llamactl.server.lifecycle`` builds them: a migrated database, a loaded manager whose
llama.cpp backend is the fake llama-server (``FAST`` timings), and the keys; and the
management app over them, driven in-process."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import params

from llamactl import database
from llamactl.auth import Keys
from llamactl.auth.stored import KeyBook, KeyHasher
from llamactl.config import AppConfig
from llamactl.database import DatabaseSettings
from llamactl.manager import InstanceManager
from llamactl.server.lifecycle import Services
from llamactl.server.management import build_management_app
from tests.support.config import FAST, fake_config

__all__ = ["NO_KEYS", "Api", "build_services", "data_db", "migrated", "running_services", "serving"]

NO_KEYS = Keys.of(require_management=False, require_inference=False)


def data_db(tmp_path: Path) -> DatabaseSettings:
    """The database file in the data directory of ``fake_config(tmp_path)``."""
    return DatabaseSettings(path=str(tmp_path / "data" / "llamactl.db"))


def migrated(settings: DatabaseSettings) -> database.DB:
    """``database.open`` and the migrations; the handle is closed if they fail."""
    db = database.open(settings)
    try:
        database.run_migrations(db)
    except BaseException:
        db.close()
        raise
    return db


def build_services(
    config: AppConfig, db: database.DB, keys: Keys, **manager_options: Any
) -> Services:
    """A loaded manager over ``db`` and the services around it; the caller shuts them down."""
    manager = InstanceManager(config, db, timings=FAST, **manager_options)
    manager.load()
    book = KeyBook(KeyHasher(b"test-secret"))
    book.load(db.list_keys())
    keys = dataclasses.replace(keys, book=book)
    return Services(config=config, db=db, manager=manager, keys=keys, book=book)


@asynccontextmanager
async def running_services(
    config: AppConfig, keys: Keys, settings: DatabaseSettings
) -> AsyncIterator[Services]:
    """``build_services`` over a migrated database at ``settings``; on exit every backend
    is stopped and the database closed."""
    db = migrated(settings)
    try:
        services = build_services(config, db, keys)
        try:
            yield services
        finally:
            await services.manager.shutdown()
    finally:
        db.close()


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
    """Services over ``tmp_path`` (the same database on every call) and a client of the
    management app, driven in-process through ``httpx.ASGITransport``.

    ``environ`` adds ``LLAMACTL_*`` variables to the fake configuration. On exit every
    backend is stopped and the database closed.
    """
    config = fake_config(tmp_path, **(environ or {}))
    async with running_services(config, NO_KEYS, data_db(tmp_path)) as services:
        app = build_management_app(services, dependencies=dependencies)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, services)

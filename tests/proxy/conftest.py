"""A real llamactl server (uvicorn on a socket) whose backends are fake llama-servers."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn

from llamactl import database
from llamactl.config import AppConfig
from llamactl.database import DatabaseSettings
from llamactl.manager import InstanceManager
from llamactl.proxy import OnDemand
from llamactl.server import auth
from llamactl.server.app import create_app
from llamactl.server.lifecycle import Services
from llamactl.server.protocol import http_protocol
from tests.manager.conftest import FAST, fake_config, fake_options

MANAGEMENT_KEY = "sk-test-management"
INFERENCE_KEY = "sk-test-inference"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    """A llamactl server under test."""

    url: str
    services: Services
    request_log: Path
    ondemand: OnDemand

    @property
    def manager(self) -> InstanceManager:
        return self.services.manager

    def backend_requests(self, path: str | None = None) -> list[dict[str, object]]:
        """What the fake backends were asked, in order (their shared request log)."""
        if not self.request_log.exists():
            return []
        entries = [json.loads(line) for line in self.request_log.read_text().splitlines()]
        return [entry for entry in entries if path is None or entry.get("path") == path]

    async def create(self, name: str, **overrides: object) -> None:
        environment = {"FAKE_LLAMA_REQUEST_LOG": str(self.request_log)}
        environment.update(overrides.pop("environment", {}))  # type: ignore[arg-type]
        settings: dict[str, object] = {"on_demand_start": True, **overrides}
        await self.manager.create(name, fake_options(environment=environment, **settings))


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    """The proxy runs on uvloop in production (uvicorn picks it): test it there."""
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    """Start llamactl with extra ``LLAMACTL_*`` settings; everything stops at the end."""
    started: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(**environ: str) -> Running:
        settings = {
            "LLAMACTL_MANAGEMENT_KEYS": MANAGEMENT_KEY,
            "LLAMACTL_INFERENCE_KEYS": INFERENCE_KEY,
            **environ,
        }
        config: AppConfig = fake_config(tmp_path, **settings)
        db = database.open(DatabaseSettings.from_config(config.database))
        database.run_migrations(db)
        manager = InstanceManager(config, db, timings=FAST)
        manager.load()
        keys = auth.load_keys(config).keys
        services = Services(config=config, db=db, manager=manager, keys=keys)
        port = free_port()
        app = create_app(services)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="on",
                http=http_protocol(app.app.proxy),
            )
        )
        task = asyncio.create_task(server.serve())
        started.append((server, task))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        return Running(
            f"http://127.0.0.1:{port}",
            services,
            tmp_path / "backend-requests.jsonl",
            app.app.ondemand,
        )

    yield start
    for server, task in started:
        server.should_exit = True
        await task


def headers(key: str = INFERENCE_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(model: str, content: str = "hello", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


__all__ = [
    "FAST",
    "INFERENCE_KEY",
    "MANAGEMENT_KEY",
    "Running",
    "chat",
    "fake_options",
    "headers",
]

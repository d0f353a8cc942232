"""A real llamactl server (uvicorn on a socket) whose backends are fake llama-servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import uvicorn

from llamactl import auth
from llamactl.database import DatabaseSettings
from llamactl.manager import InstanceManager
from llamactl.proxy import Scheduler
from llamactl.server.app import create_app
from llamactl.server.lifecycle import Services
from llamactl.server.protocol import http_protocol
from tests.support.config import fake_config, fake_options
from tests.support.net import free_port
from tests.support.services import build_services, migrated

__all__ = ["INFERENCE_KEY", "MANAGEMENT_KEY", "LiveServers", "Running", "chat", "headers"]

MANAGEMENT_KEY = "sk-test-management"
INFERENCE_KEY = "sk-test-inference"


@dataclass
class Running:
    """A llamactl server under test."""

    url: str
    services: Services
    request_log: Path
    scheduler: Scheduler

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
        environment.update(cast("dict[str, str]", overrides.pop("environment", {})))
        settings: dict[str, object] = {"on_demand_start": True, **overrides}
        await self.manager.create(name, fake_options(environment=environment, **settings))


class LiveServers:
    """llamactl servers over ``tmp_path``, each started by ``start``; ``aclose`` stops all."""

    def __init__(self, tmp_path: Path) -> None:
        self._tmp_path = tmp_path
        self._started: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(self, clock: Callable[[], float] | None = None, **environ: str) -> Running:
        """Start llamactl with both keys and extra ``LLAMACTL_*`` settings; ``clock`` is
        the manager's (idle times), ``time.monotonic`` by default."""
        settings = {
            "LLAMACTL_MANAGEMENT_KEYS": MANAGEMENT_KEY,
            "LLAMACTL_INFERENCE_KEYS": INFERENCE_KEY,
            **environ,
        }
        config = fake_config(self._tmp_path, **settings)
        db = migrated(DatabaseSettings.from_config(config.database))
        options = {} if clock is None else {"clock": clock}
        services = build_services(config, db, auth.load_keys(config).keys, **options)
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
        self._started.append((server, task))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        return Running(
            f"http://127.0.0.1:{port}",
            services,
            self._tmp_path / "backend-requests.jsonl",
            app.app.scheduler,
        )

    async def aclose(self) -> None:
        for server, task in self._started:
            server.should_exit = True
            await task


def headers(key: str = INFERENCE_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(model: str, content: str = "hello", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}

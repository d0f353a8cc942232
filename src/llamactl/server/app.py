"""The ASGI application: the proxy for inference routes, FastAPI for everything else.

Inference requests (``/v1/...``, ``/llama-cpp/...``, the per-instance proxy) go straight to
the bare ASGI proxy, so that the hot path pays for no framework machinery; the
management API, OpenAPI and the docs are a FastAPI application behind
``guards.ManagementGuard`` (body size, JSON bodies, origins). CORS wraps both and answers
every preflight itself, so a preflight never reaches a route. The
lifespan opens the backend client pool and boots the manager, and at shutdown stops every
backend and closes the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import time

import anyio.to_thread
from fastapi import Depends, FastAPI, Request
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from llamactl import auth
from llamactl.config import AppConfig
from llamactl.errors import LlamactlError, Unauthorized
from llamactl.manager import InstanceManager
from llamactl.observe import InstanceSample, Metrics, Recorder
from llamactl.proxy import LastResort, ProxyApp, Scheduler, Upstream
from llamactl.proxy.asgi import Receive, Scope, Send
from llamactl.server.guards import ManagementGuard, OriginPolicy, refuse
from llamactl.server.lifecycle import Services, stop_services
from llamactl.server.management import API_PREFIX, build_management_app
from llamactl.server.replication import Replication
from llamactl.transport.nodes import forwarded_by, sender

__all__ = ["LlamactlApp", "OriginOnlyCors", "create_app"]

logger = logging.getLogger("llamactl")


class LlamactlApp:
    """Dispatches each request to the proxy or to the management application."""

    def __init__(self, services: Services) -> None:
        self.services = services
        config, manager = services.config, services.manager
        self.metrics = Metrics(config.local_node, lambda: _samples(manager))
        manager.use_lifecycle(self.metrics)
        self.recorder = services.recorder = Recorder(config, self.metrics)
        self.upstream = Upstream(config.instances.response_header_timeout)
        self.scheduler = Scheduler(manager, config, self.metrics)
        self.proxy = ProxyApp(
            manager, config, services.keys, self.upstream, self.scheduler, self.recorder
        )
        self.guarded_proxy = LastResort(self.proxy)
        self._key_uses: asyncio.Task[None] | None = None
        self.replication = Replication(services)
        self._activity: asyncio.Task[None] | None = None
        server = services.config.server
        self.origins = OriginPolicy(
            server.allowed_origins, enforced=not services.keys.require_management
        )
        self.management = ManagementGuard(
            _management(services),
            body_limit=server.max_request_body_mb * 1024 * 1024,
            origins=self.origins,
        )

    def reconfigure(self, config: AppConfig, keys: auth.Keys) -> None:
        """Apply a reloaded configuration and keys to every part that can take them (the
        keys stored in the database stay as they are)."""
        keys = dataclasses.replace(keys, book=self.services.book)
        self.services.config, self.services.keys = config, keys
        self.services.manager.reconfigure(config)
        self.scheduler.reconfigure(config)
        self.proxy.reconfigure(config, keys)
        self.recorder.reconfigure(config)
        # The origin rule holds while management auth is off; CORS itself needs a restart.
        self.origins.enforced = not keys.require_management
        self.management.body_limit = config.server.max_request_body_mb * 1024 * 1024

    def begin_shutdown(self) -> None:
        """A stop signal arrived: end follow streams, answer requests waiting for a start."""
        self.services.manager.end_followers()
        self.scheduler.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and ProxyApp.handles(scope["path"]):
            # The per-instance proxy is a management route: the same origins may use it.
            if scope["path"].startswith(API_PREFIX):
                refused = self.origins.refusal(scope)
                if refused is not None:
                    await refuse(scope, receive, send, refused)
                    return
            await self.guarded_proxy(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            # What another node forwarded here goes no further (see transport.nodes).
            token = forwarded_by.set(sender(scope["headers"]) if kind == "http" else None)
            try:
                await self.management(scope, receive, send)
            finally:
                forwarded_by.reset(token)

    async def _write_key_uses(self) -> None:
        """Every few seconds, write what the stored keys were used for, in one batch."""
        while True:
            await asyncio.sleep(_KEY_USES_EVERY)
            await self._flush_key_uses()

    async def _flush_key_uses(self) -> None:
        book = self.services.book
        uses = book.take_uses() if book is not None else {}
        if not uses:
            return
        try:
            await anyio.to_thread.run_sync(self.services.db.record_key_use, uses)
        except LlamactlError as exc:
            logger.warning("the use of %d stored keys is not written: %s", len(uses), exc)

    async def _stop_key_uses(self) -> None:
        task, self._key_uses = self._key_uses, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._flush_key_uses()

    async def _write_activity(self) -> None:
        """Write the requests logged meanwhile every ``activity.flush_interval``, in one
        transaction, then prune the log to its count; by age at least once a minute."""
        loop = asyncio.get_running_loop()
        pruned = loop.time()
        while True:
            await asyncio.sleep(self.services.config.activity.flush_interval.total_seconds())
            wrote = await self._flush_activity()
            if not self.replication.leads:
                continue  # another replica over the same database prunes
            if wrote or loop.time() - pruned >= _PRUNE_EVERY:
                pruned = loop.time()
                await self._prune_activity()

    async def _flush_activity(self) -> bool:
        """Count the requests that ended meanwhile and write their rows; whether there
        were any."""
        rows = self.recorder.drain()
        if not rows:
            return False
        try:
            await anyio.to_thread.run_sync(self.services.db.add_activity_rows, rows)
        except LlamactlError as exc:
            logger.warning("%d requests are not written to the activity log: %s", len(rows), exc)
        return True

    async def _prune_activity(self) -> None:
        settings = self.services.config.activity
        older_than = time.time() - settings.max_age.total_seconds()
        try:
            removed = await anyio.to_thread.run_sync(
                self.services.db.prune_activity, older_than, settings.max_rows
            )
        except LlamactlError as exc:
            logger.warning("the activity log is not pruned: %s", exc)
            return
        if removed:
            logger.debug("activity log: %d old requests removed", removed)

    async def _stop_activity(self) -> None:
        task, self._activity = self._activity, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._flush_activity()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.upstream.open()
            await self.services.manager.boot()
            self.scheduler.start_idle_checks()
            await self.replication.start()
            if self.replication.active:
                self.proxy.stale = self.replication.stale
            self._key_uses = asyncio.create_task(self._write_key_uses())
            self._activity = asyncio.create_task(self._write_activity())
        except Exception as exc:  # reported to the server, which stops
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        # What booting made lives as long as the server: the collector need not look at
        # it again, so that each full collection costs what the requests left, not more.
        gc.freeze()
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            self.scheduler.close()
            await self.replication.stop()
            await self._stop_key_uses()
            await self._stop_activity()
            await self.services.manager.shutdown()
            await self.upstream.aclose()
        finally:
            stop_services(self.services)
        await send({"type": "lifespan.shutdown.complete"})


_KEY_USES_EVERY = 5.0  # seconds between two writes of the stored keys' use
_PRUNE_EVERY = 60.0  # seconds between two prunings of the activity log


def _samples(manager: InstanceManager) -> list[InstanceSample]:
    """Every instance as it is now, for the metrics' gauges."""
    samples = []
    for inst in manager.list():
        info = manager.info(inst.name)
        samples.append(
            InstanceSample(
                name=inst.name,
                backend=inst.options.backend_type.value,
                status=inst.status.value,
                ready=manager.is_ready(inst.name),
                in_flight=info.in_flight,
                queued=info.queued,
                pid=info.pid,
            )
        )
    return samples


def _management(services: Services) -> FastAPI:
    async def require_management_key(request: Request) -> None:
        """The current keys (``services.keys`` is replaced when the configuration reloads)."""
        message = auth.rejection(services.keys, request.scope, management=True)
        if message is not None:
            raise Unauthorized(message)

    return build_management_app(services, dependencies=[Depends(require_management_key)])


class OriginOnlyCors:
    """CORS for requests that carry an ``Origin`` header; the others skip it entirely.

    A response to a request without ``Origin`` needs no CORS headers, and most traffic
    (SDKs, curl) sends none: it should not pay for wrapping every ``send``.
    """

    def __init__(self, app: LlamactlApp, cors: ASGIApp) -> None:
        self.app = app
        self._cors = cors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for key, _value in scope["headers"]:
                if key == b"origin":
                    await self._cors(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(services: Services) -> OriginOnlyCors:
    """The whole application over started services, with CORS per the configuration."""
    server = services.config.server
    app = LlamactlApp(services)
    cors = CORSMiddleware(
        app,
        allow_origins=server.allowed_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=server.allowed_headers,
        expose_headers=["Link"],
        max_age=300,
    )
    return OriginOnlyCors(app, cors)

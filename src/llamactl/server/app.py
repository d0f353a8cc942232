"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from llamactl import __version__
from llamactl.errors import DatabaseError
from llamactl.server.lifecycle import Services, stop_services

__all__ = ["create_app"]


def create_app(services: Services) -> FastAPI:
    """The application over already started services; its shutdown stops them."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.manager.boot()
        try:
            yield
        finally:
            await services.manager.shutdown()
            stop_services(services)

    app = FastAPI(title="llamactl", version=__version__, lifespan=lifespan)
    app.state.services = services

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        """llamactl itself is up and its database answers."""
        try:
            with services.db.reading() as connection:
                connection.execute(text("SELECT 1"))
        except DatabaseError as exc:
            return JSONResponse({"status": "unhealthy", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/api/v1/version", response_class=PlainTextResponse)
    def version() -> str:
        return f"Version: {__version__}\nCommit: unknown\nBuild Time: unknown\n"

    return app

"""The management API: ``/healthz`` and everything under ``/api/v1``.

``build_management_app`` assembles the routes of ``routes_*`` over already started
``Services``, installs the error rendering of ``server.errors`` and, with
``server.enable_swagger``, the documentation of ``server.docs``. It has no lifespan:
whoever serves it boots and shuts down the manager. Handlers find the services at
``request.app.state.services``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, params

from llamactl import __version__
from llamactl.errors import DatabaseError
from llamactl.server import (
    routes_backends,
    routes_instances,
    routes_keys,
    routes_observe,
    routes_system,
)
from llamactl.server.docs import mount_docs
from llamactl.server.errors import install_error_handlers
from llamactl.server.lifecycle import Services
from llamactl.server.responses import JSONResponse
from llamactl.server.routes_common import ServicesDep, error_responses
from llamactl.web import mount_dashboard

__all__ = ["API_PREFIX", "build_management_app"]

API_PREFIX = "/api/v1"
_KEY_SCHEME = "managementKey"


def build_management_app(
    services: Services, *, dependencies: Sequence[params.Depends] = ()
) -> FastAPI:
    """The management application; every ``/api/v1`` route runs ``dependencies`` first."""
    app = _ManagementApp(
        title="llamactl",
        version=__version__,
        summary="Manage local LLM inference servers.",
        # Served by server.docs, and only when server.enable_swagger is true.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        default_response_class=JSONResponse,
    )
    app.state.services = services
    install_error_handlers(app)
    if services.config.server.enable_swagger:
        mount_docs(app)
    app.get("/healthz", tags=["system"])(healthz)
    app.include_router(routes_observe.metrics_router)  # its own key check
    for module in (routes_system, routes_instances, routes_backends, routes_keys, routes_observe):
        app.include_router(
            module.router,
            prefix=API_PREFIX,
            dependencies=list(dependencies),
            responses=error_responses(401, 403, 413, 415),
        )
    mount_dashboard(app)
    return app


class _ManagementApp(FastAPI):
    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema less the 422 it adds to every route with parameters: a request
        that fails validation is answered 400 ``invalid_request``, documented per route."""
        if self.openapi_schema is None:
            schema = super().openapi()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
            services = self.state.services
            assert isinstance(services, Services)
            if services.keys.require_management:
                _document_the_key(schema)
        return super().openapi()


def _document_the_key(schema: dict[str, Any]) -> None:
    """Say that ``/api/v1`` takes a bearer key, so that the docs' *Authorize* can send it."""
    schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[_KEY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A management key: auth.management_keys, or the generated "
        "management.key file in the data directory.",
    }
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(API_PREFIX):
            for operation in operations.values():
                operation["security"] = [{_KEY_SCHEME: []}]


# /healthz answers 503 below CRITICAL_FREE_BYTES free in the database's folder (SQLite
# cannot grow its file or WAL: writes fail) and "degraded" (200) below LOW_FREE_BYTES.
LOW_FREE_BYTES = 64 * 1024 * 1024
CRITICAL_FREE_BYTES = 8 * 1024 * 1024


def healthz(services: ServicesDep) -> JSONResponse:
    """llamactl is up and its database takes writes: 503 with the reasons if it does not
    (locked beyond the probe's wait, read-only, deleted or replaced, writes failing, the
    disk full); ``degraded`` (200) while free space runs low."""
    try:
        health = services.db.health()
    except DatabaseError as exc:  # health() reports problems; this is one it did not expect
        return JSONResponse({"status": "unhealthy", "error": exc.message}, status_code=503)
    persistence = services.manager.persistence()
    problems, warnings = [], []
    if health.problem is not None:
        problems.append(health.problem)
    if persistence.error is not None:
        problems.append(
            f"{persistence.pending} status changes are not written yet: {persistence.error}"
        )
    free = health.free_bytes
    if free is not None and free < CRITICAL_FREE_BYTES:
        problems.append(f"only {_mib(free)} free in the database's folder: writes fail")
    elif free is not None and free < LOW_FREE_BYTES:
        warnings.append(f"only {_mib(free)} free in the database's folder")
    body: dict[str, object] = {
        "status": "unhealthy" if problems else "degraded" if warnings else "ok",
        "version": __version__,
        "database": {
            "path": health.path,
            "writable": health.problem is None,
            "free_bytes": free,
            "unsaved_changes": persistence.pending,
        },
    }
    if problems:
        body["error"] = "; ".join(problems)
    if warnings:
        body["warnings"] = warnings
    return JSONResponse(body, status_code=503 if problems else 200)


def _mib(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MiB"

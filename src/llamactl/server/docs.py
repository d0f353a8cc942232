"""The API documentation: ``/openapi.json`` and Swagger UI at ``/docs``.

Both are served only when ``server.enable_swagger`` is true (off by default: the schema
describes every route to whoever asks). Swagger UI's JavaScript, CSS and icon are the
files that the ``fastapi-offline`` package (MIT) ships, Swagger UI's own dist build
(Apache-2.0), served from ``/docs/assets``: nothing is fetched from the network. Every URL the
page uses is relative, so the docs also work when llamactl is served under a sub-path.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from llamactl.server.responses import JSONResponse

__all__ = ["ASSETS", "mount_docs"]

# Swagger UI's files: swagger-ui-bundle.js, swagger-ui.css, favicon.png.
ASSETS = Path(str(files("fastapi_offline") / "static"))


def mount_docs(app: FastAPI) -> None:
    """Serve ``/openapi.json``, ``/docs`` and ``/docs/assets/*`` from ``app`` (no key needed)."""
    app.add_api_route("/openapi.json", _openapi, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs", _docs, methods=["GET"], include_in_schema=False)
    app.mount("/docs/assets", StaticFiles(directory=ASSETS), name="docs-assets")


async def _openapi(request: Request) -> JSONResponse:
    app = request.app
    assert isinstance(app, FastAPI)
    return JSONResponse(app.openapi())


async def _docs(request: Request) -> HTMLResponse:
    app = request.app
    assert isinstance(app, FastAPI)
    # Relative to the page at /docs, so that /prefix/docs finds /prefix/openapi.json.
    return get_swagger_ui_html(
        openapi_url="openapi.json",
        title=f"{app.title} API",
        swagger_js_url="docs/assets/swagger-ui-bundle.js",
        swagger_css_url="docs/assets/swagger-ui.css",
        swagger_favicon_url="docs/assets/favicon.png",
        # No badge that asks an online validator about the schema.
        swagger_ui_parameters={"validatorUrl": None},
    )

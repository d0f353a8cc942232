"""``/docs`` and ``/openapi.json``: only with ``server.enable_swagger``, and self-contained.

The browser half (the page renders with every non-loopback URL blocked) is
``tests/web/test_docs_offline.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llamactl.server.docs import ASSETS
from tests.support.live import Running
from tests.support.services import serving

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]
SWAGGER = {"LLAMACTL_ENABLE_SWAGGER": "true"}
DOC_PATHS = ("/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js")


async def test_off_by_default_nothing_of_the_docs_is_served(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        assert api.services.config.server.enable_swagger is False
        for path in DOC_PATHS:
            response = await api.client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        assert (await api.client.get("/healthz")).status_code == 200


async def test_on_the_page_and_its_files_are_served_from_the_package(tmp_path: Path) -> None:
    async with serving(tmp_path, environ=SWAGGER) as api:
        page = await api.client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*["']([^"']+)["']""", page.text)
        assert sorted(urls) == [
            "docs/assets/favicon.png",
            "docs/assets/swagger-ui-bundle.js",
            "docs/assets/swagger-ui.css",
            "openapi.json",
        ]
        assert "http://" not in page.text and "https://" not in page.text
        for url in urls:
            response = await api.client.get(f"/{url}")
            assert response.status_code == 200, url
            assert response.content, url
        schema = (await api.client.get("/openapi.json")).json()
        assert "/api/v1/instances" in schema["paths"]
        assert not any(path in schema["paths"] for path in DOC_PATHS)


def test_the_assets_ship_with_an_installed_package() -> None:
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        assert (ASSETS / name).stat().st_size > 0


async def test_with_management_auth_the_schema_asks_for_the_key(serve: Serve) -> None:
    server: Running = await serve(**SWAGGER)
    async with httpx.AsyncClient(base_url=server.url) as client:
        schema = (await client.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["managementKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            expected = [{"managementKey": []}] if path.startswith("/api/v1/") else None
            assert operation.get("security") == expected, path


async def test_without_management_auth_no_key_is_documented(tmp_path: Path) -> None:
    async with serving(tmp_path, environ=SWAGGER) as api:
        schema = (await api.client.get("/openapi.json")).json()
    assert "securitySchemes" not in schema.get("components", {})

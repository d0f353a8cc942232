"""What a request without a key can reach, through the whole application on a real socket.

``OPTIONS`` needs the route's key like every other method; only a real CORS preflight
(``Origin`` and ``Access-Control-Request-Method``) is answered without one, by the CORS
layer, and it never reaches a backend or starts an instance. ``/llama-cpp/{name}/...``
checks the key before it looks at the name, so a caller without a key learns nothing
about which instances exist, their backends or their states.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llamactl.instance import Status
from tests.support.live import INFERENCE_KEY, MANAGEMENT_KEY, Running, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]
ORIGIN = "http://127.0.0.1:5173"


def assert_untouched(server: Running, name: str) -> None:
    """``name`` was neither started nor sent anything."""
    assert server.manager.get(name).status is Status.STOPPED
    assert server.manager.info(name).pid is None
    assert server.backend_requests() == []


@pytest.mark.parametrize("path", ["/llama-cpp/lazy/", "/llama-cpp/lazy/completion"])
async def test_options_on_llama_cpp_needs_a_key_and_starts_nothing(serve: Serve, path: str) -> None:
    server: Running = await serve()
    await server.create("lazy")
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.options(path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "invalid_api_key"
        # With an Origin but no Access-Control-Request-Method it is no preflight either.
        response = await client.options(path, headers={"Origin": ORIGIN})
        assert response.status_code == 401
    assert_untouched(server, "lazy")


async def test_options_on_the_instance_proxy_needs_the_management_key(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("busy")
    await server.manager.start("busy")
    await server.manager.wait_ready("busy", 10)
    async with httpx.AsyncClient(base_url=server.url) as client:
        for key in (None, INFERENCE_KEY):
            response = await client.options(
                "/api/v1/instances/busy/proxy/", headers=headers(key) if key else {}
            )
            assert response.status_code == 401, key
        # With the key it is forwarded: the fake llama-server answers OPTIONS with 501.
        response = await client.options(
            "/api/v1/instances/busy/proxy/", headers=headers(MANAGEMENT_KEY)
        )
        assert response.status_code == 501


@pytest.mark.parametrize(
    "path", ["/llama-cpp/lazy/completion", "/v1/chat/completions", "/api/v1/instances"]
)
async def test_a_real_preflight_is_answered_without_a_key_and_forwards_nothing(
    serve: Serve, path: str
) -> None:
    server: Running = await serve()
    await server.create("lazy")
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.options(path, headers=preflight)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert_untouched(server, "lazy")


async def test_llama_cpp_refuses_without_a_key_before_it_looks_at_the_name(
    serve: Serve,
) -> None:
    server: Running = await serve()
    await server.create("pinned", on_demand_start=False)
    await server.manager.create(
        "apple", {"backend_type": "mlx_lm", "backend_options": {"model": "m"}}
    )
    # Without a key every one is the same 401; with one, each answers what it is.
    cases = {
        "/llama-cpp/missing/completion": 404,
        "/llama-cpp/bad%20name/completion": 400,
        "/llama-cpp/apple/completion": 400,
        "/llama-cpp/pinned/completion": 503,
    }
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path, status in cases.items():
            for method in ("GET", "POST", "OPTIONS"):
                refused = await client.request(method, path)
                assert refused.status_code == 401, (method, path, refused.text)
                assert refused.json()["error"]["message"] == "Missing API key"
                wrong = await client.request(method, path, headers=headers("sk-wrong"))
                assert wrong.status_code == 401, (method, path)
            known = await client.post(path, headers=headers(INFERENCE_KEY))
            assert known.status_code == status, (path, known.text)
    assert_untouched(server, "pinned")


async def test_the_llama_cpp_page_stays_public(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("page")
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/llama-cpp/page/")).status_code == 503  # not running
        assert (await client.get("/llama-cpp/missing/")).status_code == 404
        await server.manager.start("page")
        await server.manager.wait_ready("page", 10)
        # Forwarded: the fake llama-server has no page and says so in its own shape.
        response = await client.get("/llama-cpp/page/")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == 404
        assert server.backend_requests("/") != []


async def test_a_llama_cpp_path_without_a_name_is_401_then_404(serve: Serve) -> None:
    server: Running = await serve()
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/llama-cpp/")).status_code == 401
        response = await client.get("/llama-cpp/", headers=headers(INFERENCE_KEY))
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"

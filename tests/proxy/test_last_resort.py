"""The proxy's last guard: an unexpected exception is a logged 500 in the route's shape."""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping
from typing import Any

import httpx
import pytest

from llamactl.proxy import LastResort
from tests.support.live import MANAGEMENT_KEY, Running, chat, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]

OPENAI_500 = {
    "error": {
        "message": "internal error",
        "type": "api_error",
        "param": None,
        "code": "internal_error",
    }
}
MANAGEMENT_500 = {"error": {"code": "internal_error", "message": "internal error"}}


class Bug(Exception):
    """What a programming error inside the proxy would raise."""


def broken(name: str) -> None:
    raise Bug(f"looking up {name} went wrong")


@pytest.mark.parametrize(
    ("method", "path", "key", "expected"),
    [
        ("POST", "/v1/chat/completions", None, OPENAI_500),
        ("POST", "/llama-cpp/alpha/completion", None, OPENAI_500),
        ("GET", "/api/v1/instances/alpha/proxy/health", MANAGEMENT_KEY, MANAGEMENT_500),
    ],
)
async def test_an_unexpected_exception_is_a_logged_500(
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    key: str | None,
    expected: dict[str, object],
) -> None:
    server: Running = await serve()
    monkeypatch.setattr(server.manager, "get", broken)
    request_headers = headers() if key is None else headers(key)
    with caplog.at_level(logging.ERROR, logger="llamactl.proxy.guard"):
        async with httpx.AsyncClient(base_url=server.url, headers=request_headers) as client:
            response = await client.request(method, path, json=chat("alpha"))
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == expected
    assert "went wrong" not in response.text
    logged = [record for record in caplog.records if record.name == "llamactl.proxy.guard"]
    assert [record.getMessage() for record in logged] == [f"{method} {path} failed"]
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], Bug)


async def test_the_server_keeps_serving_after_it(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: Running = await serve()
    await server.create("alpha")
    get = server.manager.get
    monkeypatch.setattr(server.manager, "get", broken)
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        failed = await client.post("/v1/chat/completions", json=chat("alpha"))
        monkeypatch.setattr(server.manager, "get", get)
        answered = await client.post("/v1/chat/completions", json=chat("alpha", "again"))
    assert failed.status_code == 500
    assert answered.status_code == 200
    assert answered.json()["choices"][0]["message"]["content"] == "echo: again"


async def test_after_the_response_started_the_exception_goes_to_the_server() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise Bug("mid-stream")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/v1/completions", "headers": []}
    with pytest.raises(Bug, match="mid-stream"):
        await LastResort(app)(scope, receive, send)
    assert sent == [{"type": "http.response.start", "status": 200, "headers": []}]

"""A start that just failed is not tried again by the next on-demand requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from llamactl.instance import Status
from llamactl.proxy import scheduler
from tests.support.live import INFERENCE_KEY, MANAGEMENT_KEY, Running, chat, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]
BROKEN = {"FAKE_LLAMA_EXIT_AT_START": "1"}


def start_attempts(server: Running, name: str) -> int:
    path = server.manager.log_path(name)
    return path.read_text().count(f"=== Instance {name} started at") if path.exists() else 0


async def test_the_openai_client_starts_a_broken_instance_once(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("broken", environment=BROKEN)
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=INFERENCE_KEY, max_retries=2)
    try:
        with pytest.raises(openai.InternalServerError, match="exited with code 1"):
            await client.chat.completions.create(
                model="broken", messages=[{"role": "user", "content": "hi"}]
            )
    finally:
        await client.close()
    assert start_attempts(server, "broken") == 1


async def test_the_same_failure_is_answered_at_once_with_retry_after(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("broken", environment=BROKEN)
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        first = await client.post("/v1/chat/completions", json=chat("broken"))
        again = [await client.post("/v1/chat/completions", json=chat("broken")) for _ in range(3)]
    assert first.status_code == 502
    assert "retry-after" not in first.headers
    message = first.json()["error"]["message"]
    for answer in again:
        assert answer.status_code == 502
        assert answer.json()["error"]["message"].startswith(message)
        assert answer.json()["error"]["code"] == "backend_failed"
        assert 1 <= int(answer.headers["retry-after"]) <= scheduler.FAILED_START_COOLDOWN
        assert answer.headers["x-should-retry"] == "false"
    assert start_attempts(server, "broken") == 1


async def test_a_manual_start_still_starts(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("broken", environment=BROKEN)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        first = await client.post("/v1/chat/completions", json=chat("broken"), headers=headers())
        assert first.status_code == 502
        manual = await client.post(
            "/api/v1/instances/broken/start", headers=headers(MANAGEMENT_KEY)
        )
    assert manual.status_code < 500, manual.text
    assert start_attempts(server, "broken") == 2


async def test_after_the_cooldown_a_request_starts_it_again(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    server: Running = await serve()
    await server.create("broken", environment=BROKEN)
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        assert (await client.post("/v1/chat/completions", json=chat("broken"))).status_code == 502
        monkeypatch.setattr(scheduler, "FAILED_START_COOLDOWN", 0.0)  # the cooldown is over
        again = await client.post("/v1/chat/completions", json=chat("broken"))
    assert again.status_code == 502
    assert "retry-after" not in again.headers
    assert start_attempts(server, "broken") == 2
    assert server.manager.get("broken").status is Status.FAILED

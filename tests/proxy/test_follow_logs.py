"""Following an instance's log and status as server-sent events, over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.support.live import MANAGEMENT_KEY, Running, chat, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]


async def events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Parse a text/event-stream into (event, data) pairs; comments are skipped."""
    kind = "message"
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            yield kind, json.loads(line[len("data: ") :])
            kind = "message"


async def next_matching(
    stream: AsyncIterator[tuple[str, dict[str, Any]]],
    wanted: Callable[[str, dict[str, Any]], bool],
    timeout: float = 10,
) -> tuple[str, dict[str, Any]]:
    async def scan() -> tuple[str, dict[str, Any]]:
        async for kind, data in stream:
            if wanted(kind, data):
                return kind, data
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(scan(), timeout)


async def test_follow_sends_past_lines_then_live_output_and_status(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("chatty")
    await server.manager.start("chatty")
    await server.manager.wait_ready("chatty", 10)
    route = "/api/v1/instances/chatty/logs/follow?lines=50"
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=30) as client,
        client.stream("GET", route, headers=headers(MANAGEMENT_KEY)) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = events(response)
        kind, past = await next_matching(stream, lambda kind, _: True)
        assert kind == "log" and "=== Instance chatty started at" in past["text"]
        kind, status = await next_matching(stream, lambda kind, _: True)
        assert (kind, status) == ("status", {"status": "running", "readiness": "ready"})

        reply = await client.post(
            "/v1/chat/completions", json=chat("chatty", "ping"), headers=headers()
        )
        assert reply.status_code == 200
        await next_matching(
            stream, lambda kind, data: kind == "log" and "POST /v1/chat/completions" in data["text"]
        )

        stopping = asyncio.create_task(server.manager.stop("chatty"))
        await next_matching(
            stream, lambda kind, data: kind == "status" and data["status"] == "stopped"
        )
        await stopping
    reached = await server.manager.wait_until(
        "chatty", lambda *_: not server.manager._process("chatty").following, 5
    )
    assert reached, "the follower was not removed after its client left"


async def test_follow_errors(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("quiet")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        unknown = await client.get(
            "/api/v1/instances/ghost/logs/follow", headers=headers(MANAGEMENT_KEY)
        )
        bad = await client.get(
            "/api/v1/instances/quiet/logs/follow?lines=x", headers=headers(MANAGEMENT_KEY)
        )
        no_key = await client.get("/api/v1/instances/quiet/logs/follow")
    assert unknown.status_code == 404
    assert bad.status_code == 400 and "lines" in bad.json()["error"]["message"]
    assert no_key.status_code == 401

"""A follower of an instance's log is ended when the instance is deleted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.live import MANAGEMENT_KEY, Running, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]


async def test_the_follow_stream_ends_when_the_instance_is_deleted(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("doomed")
    route = "/api/v1/instances/doomed/logs/follow"
    async with (
        httpx.AsyncClient(
            base_url=server.url, headers=headers(MANAGEMENT_KEY), timeout=30
        ) as client,
        client.stream("GET", route) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        seen: list[str] = []
        while "event: status" not in seen:  # the past lines and the status are sent
            seen.append(await asyncio.wait_for(anext(lines), 10))
        deleted = await client.delete("/api/v1/instances/doomed")
        assert deleted.status_code in (200, 204), deleted.text
        rest = await asyncio.wait_for(_read_to_end(lines), 10)  # fails if it never ends
    assert "event: deleted" in rest
    assert json.loads(rest[rest.index("event: deleted") + 1].removeprefix("data: ")) == {
        "name": "doomed"
    }
    assert server.manager.list() == []


async def _read_to_end(lines: Any) -> list[str]:
    return [line async for line in lines]

"""The activity log: one row per ``/v1`` request, written in batches, read back through
``GET /api/v1/activity`` with its filters, pruned to ``activity.max_rows``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.support.live import MANAGEMENT_KEY, Running, chat, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Awaitable[Running]]
FAST_FLUSH = {"LLAMACTL_ACTIVITY_FLUSH_INTERVAL": "50ms"}


async def activity(running: Running, **params: object) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=running.url, headers=headers(MANAGEMENT_KEY)) as client:
        response = await client.get("/api/v1/activity", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, dict)
    return body


async def rows_once(running: Running, count: int, **params: object) -> list[dict[str, Any]]:
    """The log's rows once it holds ``count`` of them (bounded wait on the flushes)."""
    deadline = time.monotonic() + 20
    while True:
        items = (await activity(running, limit=1000, **params))["items"]
        assert isinstance(items, list)
        if len(items) >= count or time.monotonic() > deadline:
            return items
        await asyncio.sleep(0.05)


async def burst(running: Running, model: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(
        base_url=running.url, headers=headers(), timeout=60, limits=limits
    ) as client:
        return await asyncio.gather(
            *(client.post("/v1/chat/completions", json=chat(model, f"n{n}")) for n in range(count))
        )


async def test_500_concurrent_requests_leave_500_rows(serve: Serve) -> None:
    running = await serve(**FAST_FLUSH)
    await running.create("alpha")
    await running.manager.start("alpha")  # 500 waiting for a start would be over the queue
    await running.manager.wait_ready("alpha", 10)
    responses = await burst(running, "alpha", 500)
    assert [r.status_code for r in responses] == [200] * 500
    rows = await rows_once(running, 500)
    assert len(rows) == 500
    assert len({row["id"] for row in rows}) == 500
    assert {(row["instance"], row["status"], row["route"]) for row in rows} == {
        ("alpha", 200, "/v1/chat/completions")
    }
    tokens = sorted(r.json()["usage"]["completion_tokens"] for r in responses)
    assert sorted(row["completion_tokens"] for row in rows) == tokens
    assert not any(row["cold_start"] or row["queue_wait"] for row in rows)
    assert all(row["ttfb"] is not None and row["duration"] >= row["ttfb"] for row in rows)
    assert all(row["key_id"] is None and row["key_name"] is None for row in rows)  # a config key


async def test_the_log_is_pruned_to_its_row_count(serve: Serve) -> None:
    running = await serve(LLAMACTL_ACTIVITY_MAX_ROWS="120", **FAST_FLUSH)
    await running.create("alpha")
    await running.manager.start("alpha")
    await running.manager.wait_ready("alpha", 10)
    assert {r.status_code for r in await burst(running, "alpha", 150)} == {200}
    deadline = time.monotonic() + 20
    while True:  # the flush, then the prune after it
        items = (await activity(running, limit=1000))["items"]
        assert isinstance(items, list)
        if (len(items) == 120 and items[0]["id"] == 150) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert [item["id"] for item in items] == list(range(150, 30, -1))


async def test_a_stream_reports_its_tokens_and_rate_and_the_filters_narrow(
    serve: Serve,
) -> None:
    running = await serve(**FAST_FLUSH)
    await running.create("alpha", environment={"FAKE_LLAMA_STREAM_INTERVAL": "0.01"})
    async with httpx.AsyncClient(base_url=running.url, headers=headers(), timeout=30) as client:
        body = chat(
            "alpha", "one two three four", stream=True, stream_options={"include_usage": True}
        )
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            text = (await response.aread()).decode()
        assert (await client.post("/v1/chat/completions", json=chat("nobody"))).status_code == 404
    rows = await rows_once(running, 2)
    missing, streamed = rows
    assert streamed["streamed"] is True and streamed["instance"] == "alpha"
    assert streamed["completion_tokens"] is not None
    reported = [
        json.loads(line[6:])["usage"]
        for line in text.splitlines()
        if line.startswith("data: {") and '"usage"' in line
    ]
    assert streamed["completion_tokens"] == reported[-1]["completion_tokens"]
    assert streamed["prompt_tokens"] == reported[-1]["prompt_tokens"]
    assert isinstance(streamed["tokens_per_second"], float) and streamed["tokens_per_second"] > 0
    assert missing["instance"] is None and missing["status"] == 404
    assert [r["id"] for r in (await activity(running, status="4xx"))["items"]] == [missing["id"]]
    assert [r["id"] for r in (await activity(running, status="200"))["items"]] == [streamed["id"]]
    assert [r["id"] for r in (await activity(running, instance="alpha"))["items"]] == [
        streamed["id"]
    ]
    page = await activity(running, limit=1)
    assert page["next_before"] == missing["id"]
    older = await activity(running, limit=1, before=page["next_before"])
    assert [r["id"] for r in older["items"]] == [streamed["id"]]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "6xx"}, "'6xx'"),
        ({"status": "teapot"}, "'teapot'"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5000"}, "limit"),
        ({"before": "-1"}, "before"),
        ({"instance": "a/b"}, "a/b"),
        ({"since": "yesterday"}, "since"),
    ],
)
async def test_a_bad_filter_is_a_400_naming_it(
    serve: Serve, params: dict[str, str], named: str
) -> None:
    running = await serve()
    async with httpx.AsyncClient(base_url=running.url, headers=headers(MANAGEMENT_KEY)) as client:
        response = await client.get("/api/v1/activity", params=params)
    assert response.status_code == 400
    assert named in response.json()["error"]["message"]

"""Loading progress: a streamed request waiting for a cold start gets llamactl's early head
and SSE ``: loading`` comments, then the backend's stream; errors after the head end the
stream with an ``event: error``. Real processes and sockets: the fake llama-server "loads"
for a few seconds, and the comments come every second."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.support.live import INFERENCE_KEY, Running, chat, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]
LOADING = {"FAKE_LLAMA_LOAD_SECONDS": "3.5"}  # three comments, one a second
COMMENT = re.compile(r"^: loading (\S+) (\d+)s$")


async def serve_progress(serve: Serve, **environ: str) -> Running:
    server: Running = await serve(LLAMACTL_LOADING_PROGRESS_INTERVAL="1", **environ)
    return server


async def stream_lines(
    server: Running, path: str, body: dict[str, object]
) -> tuple[httpx.Response, bool, list[str]]:
    """POST ``body`` and read the response line by line: the response, whether the
    instance was ready when its head arrived, and its lines."""
    name = str(body["model"])
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client,
        client.stream("POST", path, json=body) as response,
    ):
        ready_at_head = server.manager.is_ready(name)
        lines = [line async for line in response.aiter_lines()]
    return response, ready_at_head, lines


def comments(lines: list[str]) -> list[tuple[str, int]]:
    found = [COMMENT.match(line) for line in lines]
    return [(match[1], int(match[2])) for match in found if match]


async def test_a_cold_stream_gets_comments_before_the_first_data(serve: Serve) -> None:
    server = await serve_progress(serve)
    await server.create("cold", environment=LOADING)
    response, ready_at_head, lines = await stream_lines(
        server, "/v1/chat/completions", chat("cold", "one two three", stream=True)
    )
    assert response.status_code == 200
    assert not ready_at_head, "the head came while the instance was still loading"
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-cache"
    assert "x-fake-llama-pid" not in response.headers  # the backend's head is not sent
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    seen = comments(lines[:first_data])
    assert len(seen) >= 2 and {name for name, _ in seen} == {"cold"}, lines
    assert [seconds for _, seconds in seen] == sorted(seconds for _, seconds in seen)
    assert comments(lines[first_data:]) == []
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    pieces = [json.loads(chunk)["choices"][0]["delta"]["content"] for chunk in data[:-1]]
    assert "".join(pieces) == "echo: one two three"


async def test_the_openai_client_sees_only_the_completion(serve: Serve) -> None:
    server = await serve_progress(serve)
    await server.create("cold", environment={**LOADING, "FAKE_LLAMA_STREAM_CHUNKS": "4"})
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=INFERENCE_KEY)
    try:
        stream = await client.chat.completions.create(
            model="cold", messages=[{"role": "user", "content": "a b c"}], stream=True
        )
        assert not server.manager.is_ready("cold"), "the head came early"
        chunks = [chunk async for chunk in stream]
    finally:
        await client.close()
    assert len(chunks) == 4  # the fake's four chunks, nothing else
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "echo: a b c"


async def test_a_request_that_is_not_streamed_gets_no_early_head(serve: Serve) -> None:
    server = await serve_progress(serve)
    await server.create("cold", environment=LOADING)
    response, ready_at_head, lines = await stream_lines(
        server, "/v1/chat/completions", chat("cold", "plain")
    )
    assert response.status_code == 200 and ready_at_head
    assert response.headers["content-type"].startswith("application/json")
    assert comments(lines) == []
    assert json.loads("".join(lines))["choices"][0]["message"]["content"] == "echo: plain"


async def test_an_instance_with_loading_progress_off_gets_none(serve: Serve) -> None:
    server = await serve_progress(serve)
    await server.create("quiet", environment=LOADING, loading_progress=False)
    response, ready_at_head, lines = await stream_lines(
        server, "/v1/chat/completions", chat("quiet", "x", stream=True)
    )
    assert response.status_code == 200 and ready_at_head
    assert response.headers["x-fake-llama-pid"]  # the backend's own head
    assert comments(lines) == []


async def test_loading_progress_off_everywhere_but_on_for_one_instance(serve: Serve) -> None:
    server = await serve_progress(serve, LLAMACTL_LOADING_PROGRESS="false")
    await server.create("quiet", environment=LOADING)
    await server.create("chatty", environment=LOADING, loading_progress=True)
    (_, quiet_ready, quiet), (_, chatty_ready, chatty) = await asyncio.gather(
        stream_lines(server, "/v1/chat/completions", chat("quiet", "x", stream=True)),
        stream_lines(server, "/v1/chat/completions", chat("chatty", "x", stream=True)),
    )
    assert quiet_ready and comments(quiet) == []
    assert not chatty_ready and comments(chatty)


async def test_a_start_timing_out_after_the_head_ends_with_an_error_event(serve: Serve) -> None:
    server = await serve_progress(serve, LLAMACTL_ON_DEMAND_START_TIMEOUT="2")
    await server.create("slow", environment={"FAKE_LLAMA_LOAD_SECONDS": "30"})
    response, _, lines = await stream_lines(
        server, "/v1/chat/completions", chat("slow", "x", stream=True)
    )
    assert response.status_code == 200
    assert comments(lines) and not any(line.startswith("data: {\"id\"") for line in lines)
    assert lines[-3:] == ["event: error", lines[-2], ""], lines
    error = json.loads(lines[-2].removeprefix("data: "))
    assert error["error"]["code"] == "unavailable"
    assert error["error"]["type"] == "api_error" and error["error"]["param"] is None
    assert "did not become ready within 2 s" in error["error"]["message"]


async def test_the_error_event_on_v1_messages_is_in_anthropics_shape(serve: Serve) -> None:
    server = await serve_progress(serve, LLAMACTL_ON_DEMAND_START_TIMEOUT="2")
    await server.create("slow", environment={"FAKE_LLAMA_LOAD_SECONDS": "30"})
    body = {"model": "slow", "max_tokens": 8, "stream": True, "messages": [{"role": "user"}]}
    response, _, lines = await stream_lines(server, "/v1/messages", body)
    assert response.status_code == 200 and comments(lines)
    assert lines[-3] == "event: error"
    error = json.loads(lines[-2].removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "overloaded_error"
    assert "did not become ready" in error["error"]["message"]


async def test_a_backend_error_after_the_head_is_passed_on_as_an_event(serve: Serve) -> None:
    server = await serve_progress(serve)
    await server.create("cold", environment=LOADING)
    bad = {"model": "cold", "messages": "not a list", "stream": True}
    response, _, lines = await stream_lines(server, "/v1/chat/completions", bad)
    assert response.status_code == 200 and comments(lines)
    assert lines[-3] == "event: error"
    error = json.loads(lines[-2].removeprefix("data: "))["error"]
    assert error["code"] == "backend_error" and error["type"] == "invalid_request_error"
    assert error["message"] == "the backend of cold answered 400: 'messages' must be a list"


async def test_a_client_leaving_during_the_wait_leaves_the_queue(serve: Serve) -> None:
    server = await serve_progress(serve)
    await server.create("cold", environment={"FAKE_LLAMA_LOAD_SECONDS": "30"})
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=chat("cold", "x", stream=True)
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.aiter_lines()
        assert COMMENT.match(await anext(lines))  # waiting, and telling so
        assert server.manager.info("cold").queued == 1
    # The client is gone: its wait is cancelled and the request ends.
    left = await server.manager.wait_until(
        "cold", lambda _, info: info.queued == 0 and info.in_flight == 0, 10
    )
    assert left
    assert server.backend_requests("/v1/chat/completions") == []

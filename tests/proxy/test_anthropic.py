"""Anthropic's Messages API through a real llamactl, with the official ``anthropic`` client:
routed by ``model`` like every ``/v1`` POST, llamactl's own errors in Anthropic's shape,
and a 501 for a backend whose spec has no Messages API."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import pytest

from llamactl.instance import Status
from llamactl.server.protocol import LaneProtocol
from tests.support.live import INFERENCE_KEY, Running, headers
from tests.support.rawhttp import BackendRecord, RawClient, get, post, record, start_raw

__all__ = ["record", "start_raw"]  # fixtures

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]
HELLO = [{"role": "user", "content": "hello there"}]


def client_of(server: Running, key: str = INFERENCE_KEY) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.url, api_key=key, max_retries=0)


def anthropic_error(body: object) -> dict[str, object]:
    """The ``error`` of an Anthropic error body, after checking the body's shape."""
    assert isinstance(body, dict) and body.keys() == {"type", "error"}, body
    assert body["type"] == "error"
    error = body["error"]
    assert isinstance(error, dict) and error.keys() == {"type", "message"}, body
    return error


async def test_a_message_from_a_stopped_instance(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("alpha", environment={"FAKE_LLAMA_LOAD_SECONDS": "0.3"})
    async with client_of(server) as client:
        message = await client.messages.create(model="alpha", max_tokens=64, messages=HELLO)
    assert server.manager.get("alpha").status is Status.RUNNING
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 3)
    sent = server.backend_requests("/v1/messages")
    assert len(sent) == 1 and sent[0]["body"] == {
        "model": "alpha",
        "max_tokens": 64,
        "messages": HELLO,
    }


async def test_a_streamed_message_brings_every_event(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("alpha", environment={"FAKE_LLAMA_STREAM_CHUNKS": "3"})
    async with (
        client_of(server) as client,
        client.messages.stream(model="alpha", max_tokens=64, messages=HELLO) as stream,
    ):
        kinds = [event.type async for event in stream]
        final = await stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert kinds.count("content_block_delta") == 3
    assert final.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 3)
    assert final.stop_reason == "end_turn"


async def test_stream_true_gives_the_raw_events(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("alpha")
    async with client_of(server) as client:
        stream = await client.messages.create(
            model="alpha", max_tokens=2, messages=HELLO, stream=True
        )
        events = [event async for event in stream]
    text = "".join(
        event.delta.text
        for event in events
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    )
    assert text == "echo: hello"
    assert [e.delta.stop_reason for e in events if e.type == "message_delta"] == ["max_tokens"]


async def test_count_tokens(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("alpha")
    async with client_of(server) as client:
        counted = await client.messages.count_tokens(
            model="alpha", system="be brief", messages=HELLO
        )
    assert counted.input_tokens == 4
    assert len(server.backend_requests("/v1/messages/count_tokens")) == 1


async def test_an_unknown_model_is_anthropics_404(serve: Serve) -> None:
    server: Running = await serve()
    async with client_of(server) as client:
        with pytest.raises(anthropic.NotFoundError) as caught:
            await client.messages.create(model="nothing", max_tokens=8, messages=HELLO)
    error = anthropic_error(caught.value.body)
    assert error == {
        "type": "not_found_error",
        "message": "model 'nothing' not found: no instance has that name",
    }


async def test_a_wrong_key_is_anthropics_401(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("alpha")
    async with client_of(server, key="sk-wrong") as client:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await client.messages.count_tokens(model="alpha", messages=HELLO)
    assert anthropic_error(caught.value.body)["type"] == "authentication_error"
    assert caught.value.response.headers["www-authenticate"] == "Bearer"
    assert server.manager.get("alpha").status is Status.STOPPED


async def test_errors_elsewhere_on_v1_keep_the_openai_shape(serve: Serve) -> None:
    server: Running = await serve()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        refused = await client.post("/v1/chat/completions", json={"model": "x"})
        missing = await client.post(
            "/v1/messages-like", json={"model": "x"}, headers=headers()
        )
        anthropic_missing = await client.post(
            "/v1/messages", json={"model": "x"}, headers=headers()
        )
        wrong_method = await client.get("/v1/messages", headers=headers())
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"
    assert anthropic_error(anthropic_missing.json())["type"] == "not_found_error"
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert anthropic_error(wrong_method.json())["type"] == "invalid_request_error"


async def test_a_full_queue_keeps_retry_after_in_anthropics_shape(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("alpha", on_demand_start=False)
    async with client_of(server) as client:
        with pytest.raises(anthropic.APIStatusError) as caught:
            await client.messages.create(model="alpha", max_tokens=8, messages=HELLO)
    assert caught.value.status_code == 503
    error = anthropic_error(caught.value.body)
    assert error["type"] == "overloaded_error"
    assert "on_demand_start is off" in str(error["message"])


async def test_an_mlx_instance_gets_a_501_and_is_not_started(serve: Serve) -> None:
    server: Running = await serve()
    await server.create(
        "apple", backend_type="mlx_lm", backend_options={"model": "mlx-community/tiny"}
    )
    async with client_of(server) as client:
        for call in (
            client.messages.create(model="apple", max_tokens=8, messages=HELLO),
            client.messages.count_tokens(model="apple", messages=HELLO),
        ):
            with pytest.raises(anthropic.APIStatusError) as caught:
                await call
            assert caught.value.status_code == 501
            error = anthropic_error(caught.value.body)
            assert error["type"] == "api_error"
            message = str(error["message"])
            assert "instance apple" in message and "MLX-LM" in message
    assert server.manager.get("apple").status is Status.STOPPED


async def test_the_lane_answers_a_relay_failure_in_anthropics_shape(
    start_raw: Callable[..., Any], record: BackendRecord, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken: list[bool] = []
    original = LaneProtocol._take

    def spy(self: LaneProtocol, request: Any) -> bool:
        taken.append(original(self, request))
        return taken[-1]

    monkeypatch.setattr(LaneProtocol, "_take", spy)
    _, port = await start_raw(LLAMACTL_RESPONSE_HEADER_TIMEOUT="1")
    body = json.dumps({"model": "raw", "max_tokens": 8, "messages": HELLO}).encode()
    client = await RawClient.connect(port)
    try:
        warm = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
        assert warm.status == 200
        silent = post(
            "/v1/messages", body, INFERENCE_KEY, "Content-Type: application/json",
            "X-Scenario: silent",
        )  # fmt: skip
        reply = await client.request(silent, b"POST")
    finally:
        client.close()
    assert reply.status == 504
    error = anthropic_error(reply.json())
    assert error["type"] == "api_error"
    assert "no response headers within 1 s" in str(error["message"])
    assert taken == [True]  # the lane relayed it, and answered the failure
    heads = [str(entry.get("head", "")) for entry in record.entries()]
    assert any(head.startswith("POST /v1/messages ") for head in heads)

"""OpenAI-compatible routing through a real server: on-demand start, streaming, limits."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from llamactl.instance import Status
from tests.support.live import INFERENCE_KEY, MANAGEMENT_KEY, Running, chat, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]


async def create_streaming(server: Running, name: str, *, interval: float, chunks: int) -> None:
    """An instance whose answers stream ``chunks`` chunks, ``interval`` seconds apart."""
    await server.create(
        name,
        environment={
            "FAKE_LLAMA_STREAM_INTERVAL": str(interval),
            "FAKE_LLAMA_STREAM_CHUNKS": str(chunks),
        },
    )


async def test_openai_client_models_chat_and_stream_from_a_stopped_instance(
    serve: Serve,
) -> None:
    server: Running = await serve()
    await server.create("alpha", environment={"FAKE_LLAMA_LOAD_SECONDS": "0.3"})
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=INFERENCE_KEY)
    try:
        models = await client.models.list()
        assert [model.id for model in models.data] == ["alpha"]
        assert server.manager.get("alpha").status is Status.STOPPED

        reply = await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "hi there"}]
        )
        assert reply.choices[0].message.content == "echo: hi there"
        assert server.manager.get("alpha").status is Status.RUNNING

        stream = await client.chat.completions.create(
            model="alpha", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        assert "".join(pieces) == "echo: one two three"
    finally:
        await client.close()


async def test_cold_instance_holds_every_request_until_ready(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("cold", environment={"FAKE_LLAMA_LOAD_SECONDS": "1.0"})
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        replies = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=chat("cold", f"n{index}"))
                for index in range(20)
            )
        )
    assert [reply.status_code for reply in replies] == [200] * 20
    chats = server.backend_requests("/v1/chat/completions")
    assert len(chats) == 20
    assert not any(entry["loading"] for entry in chats)
    loading_probes = [e for e in server.backend_requests("/health") if e["loading"]]
    assert loading_probes, "the backend was polled while it loaded"
    assert min(float(e["t"]) for e in chats) > max(float(e["t"]) for e in loading_probes)


async def test_queue_overflow_is_503_with_retry_after(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_QUEUED_REQUESTS="2")
    await server.create("slow", environment={"FAKE_LLAMA_LOAD_SECONDS": "1.5"})
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        waiting = [
            asyncio.create_task(client.post("/v1/chat/completions", json=chat("slow")))
            for _ in range(2)
        ]
        assert await server.manager.wait_until("slow", lambda _, info: info.queued == 2, 5)
        shown = await client.get("/api/v1/instances/slow", headers=headers(MANAGEMENT_KEY))
        assert (shown.json()["queued"], shown.json()["in_flight"]) == (2, 2)
        overflow = await client.post("/v1/chat/completions", json=chat("slow"))
        assert overflow.status_code == 503
        assert overflow.headers["retry-after"] == "5"
        error = overflow.json()["error"]
        assert error["code"] == "queue_full" and "max_queued_requests" in error["message"]
        assert [reply.status_code for reply in await asyncio.gather(*waiting)] == [200, 200]


async def test_streaming_is_not_buffered(serve: Serve) -> None:
    server: Running = await serve()
    await create_streaming(server, "stream", interval=0.2, chunks=6)
    await server.manager.start("stream")
    await server.manager.wait_ready("stream", 10)
    arrivals: list[float] = []
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client,
        client.stream(
            "POST", "/v1/chat/completions", json=chat("stream", "a b c d e f", stream=True)
        ) as response,
    ):
        began = time.monotonic()
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - began)
    assert len(arrivals) == 7  # six chunks and [DONE]
    assert arrivals[0] < 0.15, arrivals  # the first chunk did not wait for the others
    assert arrivals[-1] - arrivals[0] > 0.9, arrivals  # ~5 intervals of 0.2 s later


async def test_client_disconnect_cancels_the_upstream_request(serve: Serve) -> None:
    server: Running = await serve()
    await create_streaming(server, "long", interval=0.1, chunks=100)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=chat("long", stream=True)) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                break  # leave after the first chunk
    reached = await server.manager.wait_until("long", lambda _, info: info.in_flight == 0, 5)
    assert reached, "the request stayed in flight after its client left"
    deadline = time.monotonic() + 5
    while not [e for e in server.backend_requests() if e.get("event") == "client_disconnected"]:
        assert time.monotonic() < deadline, "the backend never saw the request go away"
        await asyncio.sleep(0.02)
    (gone,) = [e for e in server.backend_requests() if e.get("event") == "client_disconnected"]
    assert int(str(gone["chunks_sent"])) < 100


async def test_lru_eviction_spares_an_instance_with_a_request_in_flight(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_RUNNING_INSTANCES="2")
    await create_streaming(server, "busy", interval=0.2, chunks=15)
    await server.create("idle")
    await server.create("new")
    for name in ("idle", "busy"):  # busy is used more recently than idle, too
        await server.manager.start(name)
        await server.manager.wait_ready(name, 10)
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=chat("busy", stream=True)) as streaming,
    ):
        assert streaming.status_code == 200
        reply = await client.post("/v1/chat/completions", json=chat("new"))
        assert reply.status_code == 200
        assert server.manager.get("idle").status is Status.STOPPED
        assert server.manager.get("busy").status is Status.RUNNING
        third = await client.post("/v1/chat/completions", json=chat("idle"))
        # busy is streaming and new is idle: new goes, busy stays
        assert third.status_code == 200
        assert server.manager.get("new").status is Status.STOPPED
        assert server.manager.get("busy").status is Status.RUNNING
        await streaming.aread()


async def test_no_room_is_503_naming_the_limit(serve: Serve) -> None:
    server: Running = await serve(
        LLAMACTL_MAX_RUNNING_INSTANCES="1", LLAMACTL_ENABLE_LRU_EVICTION="false"
    )
    await server.create("one")
    await server.create("two")
    await server.manager.start("one")
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        reply = await client.post("/v1/chat/completions", json=chat("two"))
    assert reply.status_code == 503
    message = reply.json()["error"]["message"]
    assert "max_running_instances (1)" in message and "enable_lru_eviction is off" in message
    assert reply.headers["retry-after"] == "10"


async def test_swapping_two_instances_under_a_limit_of_one(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_RUNNING_INSTANCES="1")
    await server.create("a")
    await server.create("b")
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        for model in ("a", "b", "a", "b"):
            reply = await client.post("/v1/chat/completions", json=chat(model, model))
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"] == f"echo: {model}"
    assert server.manager.running_count() == 1


async def test_a_swap_waits_for_a_busy_instance_instead_of_refusing(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_RUNNING_INSTANCES="1")
    await create_streaming(server, "busy", interval=0.1, chunks=15)
    await server.create("other")
    manager = server.manager
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=chat("busy", stream=True)
        ) as streaming:
            assert streaming.status_code == 200
            other = asyncio.create_task(client.post("/v1/chat/completions", json=chat("other")))
            assert await manager.wait_any(lambda: server.scheduler.is_held("busy"), 5)
            # A request for the held instance queues behind the swap, not on the backend.
            again = asyncio.create_task(client.post("/v1/chat/completions", json=chat("busy", "2")))
            assert await manager.wait_until("busy", lambda _, info: info.queued == 1, 5)
            assert len(server.backend_requests("/v1/chat/completions")) == 1
            shown = await client.get("/api/v1/instances/busy", headers=headers(MANAGEMENT_KEY))
            assert (shown.json()["held"], shown.json()["queued"]) == (True, 1)
            lines = [line async for line in streaming.aiter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]" and len(lines) == 16  # the stream was not cut
        assert (await other).status_code == 200
        assert (await again).status_code == 200
    served = [entry["body"]["model"] for entry in server.backend_requests("/v1/chat/completions")]
    assert served == ["busy", "other", "busy"]
    assert not server.scheduler.is_held("busy") and manager.running_count() == 1


async def test_a_swap_nobody_waits_for_any_more_lets_go_of_the_busy_instance(
    serve: Serve,
) -> None:
    server: Running = await serve(LLAMACTL_MAX_RUNNING_INSTANCES="1")
    await create_streaming(server, "busy", interval=0.1, chunks=30)
    await server.create("other")
    manager = server.manager
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client,
        client.stream("POST", "/v1/chat/completions", json=chat("busy", stream=True)) as streaming,
    ):
        other = asyncio.create_task(client.post("/v1/chat/completions", json=chat("other")))
        assert await manager.wait_any(lambda: server.scheduler.is_held("busy"), 5)
        other.cancel()  # its client leaves: nobody waits for "other" any more
        assert await manager.wait_any(lambda: not server.scheduler.is_held("busy"), 5)
        reply = await client.post("/v1/chat/completions", json=chat("busy", "more"))
        assert reply.status_code == 200  # served at once, beside the running stream
        assert manager.info("busy").in_flight == 1
        await streaming.aread()
    assert manager.get("other").status is Status.STOPPED
    assert manager.get("busy").status is Status.RUNNING


async def test_a_request_right_after_a_called_off_swap_gets_a_new_start(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_RUNNING_INSTANCES="1")
    await server.create("busy")
    await server.create("other")
    manager, scheduler = server.manager, server.scheduler
    await manager.start("busy")
    await manager.wait_ready("busy", 10)
    scheduler.begin("busy")  # one the backend is serving
    first = asyncio.create_task(scheduler.ready("other"))
    second: asyncio.Task[None] | None = None
    try:
        assert await manager.wait_any(lambda: server.scheduler.is_held("busy"), 5)
        first.cancel()  # the only waiter leaves: its start is called off ...
        second = asyncio.create_task(scheduler.ready("other"))  # ... as the next one arrives
        await asyncio.wait({first}, timeout=5)
        assert first.cancelled()
        assert await manager.wait_any(lambda: server.scheduler.is_held("busy"), 5)
    finally:
        scheduler.end("busy")
    # Waited on, not awaited: a CancelledError must show as a failure, not cancel the test.
    assert second is not None
    await asyncio.wait({second}, timeout=10)
    assert second.done() and not second.cancelled() and second.exception() is None
    assert manager.get("other").status is Status.RUNNING
    assert manager.get("busy").status is Status.STOPPED


async def test_alternating_load_under_a_limit_of_one_is_all_served(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_RUNNING_INSTANCES="1")
    for name in ("a", "b"):
        await create_streaming(server, name, interval=0.02, chunks=5)
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=60) as client:
        replies = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=chat("ab"[index % 2], str(index)))
                for index in range(24)
            )
        )
    assert [reply.status_code for reply in replies] == [200] * 24, [r.text for r in replies]
    assert len(server.backend_requests("/v1/chat/completions")) == 24
    assert server.manager.running_count() == 1


async def test_port_change_by_update_takes_effect_for_the_next_request(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("moving")
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        assert (await client.post("/v1/chat/completions", json=chat("moving"))).status_code == 200
        old_port = server.manager.get("moving").options.backend_options.port
        new_port = 31777
        assert old_port != new_port
        await server.manager.update(
            "moving",
            {
                "backend_type": "llama_cpp",
                "backend_options": {"model": "/m/x.gguf", "port": new_port},
                "on_demand_start": True,
                "environment": {"FAKE_LLAMA_REQUEST_LOG": str(server.request_log)},
            },
        )
        reply = await client.post("/v1/chat/completions", json=chat("moving", "again"))
    assert reply.status_code == 200
    assert reply.headers["x-fake-llama-pid"] == str(server.manager.info("moving").pid)
    assert server.manager.address("moving")[1] == new_port


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_request"),
        (b"[1, 2]", "application/json", 400, "invalid_request"),
        (b'{"messages": []}', "application/json", 400, "invalid_request"),
        (b'{"model": "nobody"}', "application/json", 404, "not_found"),
    ],
)
async def test_bad_requests_get_openai_errors(
    serve: Serve, body: bytes, content_type: str, status: int, code: str
) -> None:
    server: Running = await serve()
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=10) as client:
        reply = await client.post(
            "/v1/chat/completions", content=body, headers={"content-type": content_type}
        )
    assert reply.status_code == status
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code


async def test_stopped_instance_without_on_demand_start_is_503(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("manual", on_demand_start=False)
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=10) as client:
        reply = await client.post("/v1/chat/completions", json=chat("manual"))
    assert reply.status_code == 503
    assert "on_demand_start is off" in reply.json()["error"]["message"]
    assert server.manager.get("manual").status is Status.STOPPED


async def test_body_over_the_limit_is_413(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_REQUEST_BODY_MB="1")
    await server.create("big")
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=10) as client:
        reply = await client.post(
            "/v1/chat/completions", json=chat("big", "x" * (1024 * 1024 + 10))
        )
    assert reply.status_code == 413
    assert "max_request_body_mb" in reply.json()["error"]["message"]


async def test_multipart_bodies_are_routed_by_their_model_field(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("audio")
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=10) as client:
        reply = await client.post(
            "/v1/audio/transcriptions",
            data={"model": "audio"},
            files={"file": ("a.wav", b"RIFF....WAVE", "audio/wav")},
        )
    assert reply.status_code == 404  # the fake has no such route: it got there
    (entry,) = server.backend_requests("/v1/audio/transcriptions")
    assert entry["method"] == "POST"


async def test_models_list_and_methods(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("zeta")
    await server.create("alpha")
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=10) as client:
        listed = (await client.get("/v1/models")).json()
        assert [model["id"] for model in listed["data"]] == ["alpha", "zeta"]
        assert listed["data"][0]["status"] == "stopped" and listed["data"][0]["ready"] is False
        one = await client.get("/v1/models/zeta")
        missing = await client.get("/v1/models/omega")
        wrong = await client.get("/v1/chat/completions")
    assert one.status_code == 200 and one.json() == listed["data"][1]
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert "'omega'" in missing.json()["error"]["message"]
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


async def test_inference_routes_need_a_key(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("alpha")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        missing = await client.post("/v1/chat/completions", json=chat("alpha"))
        wrong = await client.get("/v1/models", headers=headers("sk-wrong"))
        management = await client.get("/v1/models", headers=headers(MANAGEMENT_KEY))
        query = await client.get(f"/v1/models?api_key={INFERENCE_KEY}")
        header = await client.get("/v1/models", headers={"X-API-Key": INFERENCE_KEY})
        preflight = await client.options(
            "/v1/chat/completions",
            headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
        )
    assert missing.status_code == 401 and missing.json()["error"]["message"] == "Missing API key"
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Invalid API key"
    assert [management.status_code, query.status_code, header.status_code] == [200, 200, 200]
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"


async def test_llama_cpp_routes(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("llama", environment={"FAKE_LLAMA_LOAD_SECONDS": "0.2"})
    await server.manager.create("vl", {"backend_type": "vllm", "backend_options": {"model": "m"}})
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        page = await client.get("/llama-cpp/llama/")
        assert page.status_code == 503  # its page never starts it
        models = await client.get("/llama-cpp/llama/v1/models", headers=headers())
        assert models.status_code == 200  # started on demand, prefix stripped
        assert server.backend_requests("/v1/models")
        page = await client.get("/llama-cpp/llama/")
        assert page.status_code == 404  # reached the backend (the fake serves no page)
        not_llama = await client.get("/llama-cpp/vl/props", headers=headers())
        assert not_llama.status_code == 400
        bad_name = await client.get("/llama-cpp/.hidden/props", headers=headers())
        assert bad_name.status_code == 400
        unknown = await client.get("/llama-cpp/ghost/props", headers=headers())
        assert unknown.status_code == 404


async def test_instance_proxy_route(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("inner")
    route = "/api/v1/instances/inner/proxy/health"
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        stopped = await client.get(route, headers=headers(MANAGEMENT_KEY))
        assert stopped.status_code == 503
        assert stopped.json() == {
            "error": {
                "code": "instance_not_running",
                "message": "instance inner is stopped, not running and ready",
            }
        }
        await server.manager.start("inner")
        await server.manager.wait_ready("inner", 10)
        inference_key = await client.get(route, headers=headers(INFERENCE_KEY))
        assert inference_key.status_code == 401
        health = await client.get(route, headers=headers(MANAGEMENT_KEY))
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert server.manager.get("inner").status is Status.RUNNING
    assert json.loads(json.dumps(server.backend_requests("/health")[-1]))["method"] == "GET"


async def test_management_routes_take_management_keys_only(serve: Serve) -> None:
    server: Running = await serve()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        missing = await client.get("/api/v1/instances")
        inference = await client.get("/api/v1/instances", headers=headers(INFERENCE_KEY))
        management = await client.get("/api/v1/instances", headers=headers(MANAGEMENT_KEY))
        health = await client.get("/healthz")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json() == {
        "error": {
            "message": "Missing API key",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert inference.status_code == 401
    assert inference.json()["error"]["message"] == "Invalid API key"
    assert management.status_code == 200 and management.json() == []
    assert health.status_code == 200


async def test_these_tests_run_on_uvloop_like_the_server() -> None:
    loop = asyncio.get_running_loop()
    assert type(loop).__module__.startswith("uvloop"), type(loop)


async def test_backend_connections_are_kept_alive(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("kept")
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=10) as client:
        for index in range(6):
            body = chat("kept", f"n{index}", stream=index % 2 == 1)
            reply = await client.post("/v1/chat/completions", json=body)
            assert reply.status_code == 200
    peers = {entry["peer"] for entry in server.backend_requests("/v1/chat/completions")}
    assert len(peers) == 1, peers  # one connection for all six, streamed or not


async def test_configured_response_headers_are_added(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_LLAMACPP_RESPONSE_HEADERS="X-Accel-Buffering=no")
    await server.create("headed")
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=10) as client:
        reply = await client.post("/v1/chat/completions", json=chat("headed"))
    assert reply.status_code == 200 and reply.headers["x-accel-buffering"] == "no"


async def test_a_waiter_whose_client_leaves_frees_its_place(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_QUEUED_REQUESTS="1")
    await server.create("slow", environment={"FAKE_LLAMA_LOAD_SECONDS": "1.0"})
    manager = server.manager
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=30) as client:
        leaving = asyncio.create_task(client.post("/v1/chat/completions", json=chat("slow")))
        await manager.wait_until("slow", lambda inst, _: inst.status is Status.RUNNING, 5)
        assert manager.info("slow").queued == 1
        leaving.cancel()  # the client goes away while it waits
        left = await manager.wait_until("slow", lambda _, info: info.queued == 0, 5)
        assert left, "the waiter stayed in the queue"
        assert manager.info("slow").in_flight == 0
        reply = await client.post("/v1/chat/completions", json=chat("slow"))
    assert reply.status_code == 200
    assert len(server.backend_requests("/v1/chat/completions")) == 1

"""A custom instance end to end: a foreign OpenAI-compatible server (the fake, started
through ``{port}``) created over the API, started on demand by the ``openai`` client,
streamed, and restarted after a crash."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import openai
import pytest

from llamactl.instance import Status
from tests.support.custom import custom_config_file, custom_options
from tests.support.live import INFERENCE_KEY, Running, headers
from tests.support.waiting import is_ready, status_is, until

pytestmark = pytest.mark.anyio

Serve = Callable[..., Awaitable[Running]]


async def test_a_custom_instance_is_served_on_demand_streamed_and_restarted(
    serve: Serve, tmp_path: Path
) -> None:
    server = await serve(LLAMACTL_CONFIG_PATH=str(custom_config_file(tmp_path)))
    body = custom_options(
        on_demand_start=True,
        auto_restart=True,
        max_restarts=3,
        environment={
            "FAKE_LLAMA_LOAD_SECONDS": "0.3",
            "FAKE_LLAMA_CRASH_AFTER_REQUESTS": "2",
            "FAKE_LLAMA_REQUEST_LOG": str(server.request_log),
        },
    )
    async with httpx.AsyncClient(base_url=server.url, headers=headers_management()) as api:
        created = await api.post("/api/v1/instances/foreign", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["options"]["backend_type"] == "custom"
    assert server.manager.get("foreign").status is Status.STOPPED

    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=INFERENCE_KEY)
    try:
        reply = await client.chat.completions.create(
            model="foreign", messages=[{"role": "user", "content": "hi there"}]
        )
        assert reply.choices[0].message.content == "echo: hi there"
        first_pid = server.manager.info("foreign").pid
        stream = await client.chat.completions.create(
            model="foreign", messages=[{"role": "user", "content": "one two three"}], stream=True
        )
        pieces = [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]
        assert "".join(pieces) == "echo: one two three"

        # The fake exits (status 3) after its second answer; llamactl starts it again.
        await until(server.manager, "foreign", lambda _inst, info: info.pid != first_pid)
        await until(server.manager, "foreign", is_ready)
        assert server.manager.info("foreign").restarts == 1
        again = await client.chat.completions.create(
            model="foreign", messages=[{"role": "user", "content": "back"}]
        )
        assert again.choices[0].message.content == "echo: back"
    finally:
        await client.close()
    # The body's model was the instance name; the server got the instance's model.
    requests = server.backend_requests("/v1/chat/completions")
    models = [entry["body"]["model"] for entry in requests]  # type: ignore[index]
    assert models and set(models) == {"/models/foreign.gguf"}
    await server.manager.stop("foreign")
    await until(server.manager, "foreign", status_is(Status.STOPPED))


async def test_creating_a_custom_instance_with_an_unknown_entry_is_400(
    serve: Serve, tmp_path: Path
) -> None:
    server = await serve(LLAMACTL_CONFIG_PATH=str(custom_config_file(tmp_path)))
    body = custom_options()
    body["backend_options"] = {"name": "sglang"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers_management()) as api:
        refused = await api.post("/api/v1/instances/foreign", json=body)
        parse = await api.post("/api/v1/backends/custom/parse-command", json={"command": "x"})
    assert refused.status_code == 400
    assert "no entry backends.custom.sglang" in refused.text
    assert "configured: fake" in refused.text
    assert parse.status_code == 400
    assert "no command line to read" in parse.text


def headers_management() -> dict[str, str]:
    from tests.support.live import MANAGEMENT_KEY

    return headers(MANAGEMENT_KEY)

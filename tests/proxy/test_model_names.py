"""Responses name the model the client asked for: the instance name, as ``--alias``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import openai
import pytest

from tests.support.live import INFERENCE_KEY, Running

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]


async def test_a_llama_cpp_instance_without_alias_answers_with_its_name(serve: Serve) -> None:
    server: Running = await serve()
    await server.create("smollm2")
    await server.create("aliased", backend_options={"model": "/m/x.gguf", "alias": "mine"})
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=INFERENCE_KEY)
    try:
        plain = await client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}]
        )
        stream = await client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        streamed = {chunk.model async for chunk in stream}
        aliased = await client.chat.completions.create(
            model="aliased", messages=[{"role": "user", "content": "hi"}]
        )
    finally:
        await client.close()
    assert plain.model == "smollm2"
    assert streamed == {"smollm2"}
    assert aliased.model == "mine"

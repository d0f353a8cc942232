"""A drill for swaps under a running limit: mixed load on three models, clients leaving.

Seeded random load against a real server and fake backends that take time to load and
to answer. Whatever the interleaving: every request that stays gets its answer, the
running limit is never exceeded, and nothing is left queued, held or in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llamactl.manager import InstanceManager
from tests.support.live import Running, chat, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]
MODELS = {"a": "3", "b": "8", "c": "1"}  # streamed chunks per answer: short and long turns
LIMIT = 2


class Watch:
    """Notes, at every change of any instance, how many are running."""

    def __init__(self, manager: InstanceManager) -> None:
        self.manager = manager
        self.most = 0

    def look(self) -> bool:
        self.most = max(self.most, self.manager.running_count())
        return False  # never done: the task is cancelled at the end

    async def run(self) -> None:
        await self.manager.wait_any(self.look, timeout=120)


async def one_request(
    client: httpx.AsyncClient, rng: random.Random, index: int
) -> httpx.Response | None:
    """Send one chat after a random pause; about one in six clients leaves early."""
    await asyncio.sleep(rng.uniform(0, 1.5))  # spread the arrivals
    model = rng.choice(sorted(MODELS))
    request = asyncio.ensure_future(
        client.post("/v1/chat/completions", json=chat(model, f"{model}-{index}", stream=True))
    )
    if rng.random() < 1 / 6:
        await asyncio.sleep(rng.uniform(0, 0.3))
        request.cancel()
        return None
    return await request


@pytest.mark.parametrize("seed", [1, 2])
async def test_mixed_load_with_leaving_clients(
    serve: Serve, seed: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llamactl.proxy.scheduler")
    server: Running = await serve(
        LLAMACTL_MAX_RUNNING_INSTANCES=str(LIMIT), LLAMACTL_MAX_QUEUED_REQUESTS="100"
    )
    for name, chunks in MODELS.items():
        await server.create(
            name,
            environment={
                "FAKE_LLAMA_LOAD_SECONDS": "0.1",
                "FAKE_LLAMA_STREAM_CHUNKS": chunks,
                "FAKE_LLAMA_STREAM_INTERVAL": "0.03",
            },
        )
    manager = server.manager
    watch = Watch(manager)
    watching = asyncio.create_task(watch.run())
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=server.url, headers=headers(), timeout=60) as client:
        results = await asyncio.gather(
            *(one_request(client, random.Random(rng.random()), index) for index in range(48)),
            return_exceptions=True,
        )
    watching.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watching

    answered = [r for r in results if isinstance(r, httpx.Response)]
    assert not [r for r in results if isinstance(r, BaseException)], results
    assert answered and all(r.status_code == 200 for r in answered), [
        (r.status_code, r.text) for r in answered if r.status_code != 200
    ]
    assert all(r.text.rstrip().endswith("data: [DONE]") for r in answered)
    assert 1 <= watch.most <= LIMIT
    swaps = [record.getMessage() for record in caplog.records]
    assert any(": held until its requests end" in message for message in swaps), "no busy swap"
    for name in MODELS:
        info = manager.info(name)
        assert (info.in_flight, info.queued, server.scheduler.is_held(name)) == (0, 0, False), name

"""``/metrics`` and ``/metrics/targets``: who may read them, when they exist, what the
service discovery lists."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.support.live import MANAGEMENT_KEY, Running, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Awaitable[Running]]


async def get(running: Running, path: str, key: str | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.url) as client:
        return await client.get(path, headers=headers(key) if key else {})


async def test_the_metrics_need_the_management_key_by_default(serve: Serve) -> None:
    running = await serve()
    assert (await get(running, "/metrics")).status_code == 401
    assert (await get(running, "/metrics/targets")).status_code == 401
    response = await get(running, "/metrics", MANAGEMENT_KEY)
    assert response.status_code == 200
    assert "# TYPE llamactl_requests_total counter" in response.text


async def test_open_metrics_for_a_local_prometheus(serve: Serve) -> None:
    running = await serve(LLAMACTL_METRICS_REQUIRE_AUTH="false")
    response = await get(running, "/metrics")
    assert response.status_code == 200
    assert "llamactl_requests" in response.text
    assert (await get(running, "/api/v1/activity")).status_code == 401  # the rest still needs it


async def test_metrics_off_is_a_404_saying_so(serve: Serve) -> None:
    running = await serve(LLAMACTL_METRICS_ENABLED="false")
    response = await get(running, "/metrics", MANAGEMENT_KEY)
    assert response.status_code == 404
    assert "metrics.enabled" in response.json()["error"]["message"]


async def test_the_targets_list_this_node_and_every_other(serve: Serve, tmp_path: Path) -> None:
    config = tmp_path / "nodes.yaml"
    config.write_text(
        json.dumps(
            {
                "local_node": "front",
                "nodes": {
                    "front": {},
                    "gpu1": {"address": "http://10.0.0.5:8081"},
                    "gpu2": {"address": "https://gpu2.lan/llamactl/", "api_key": "sk-node"},
                },
            }
        )
    )
    running = await serve(LLAMACTL_CONFIG_PATH=str(config))
    response = await get(running, "/metrics/targets", MANAGEMENT_KEY)
    assert response.status_code == 200
    port = running.url.rsplit(":", 1)[1]
    assert response.json() == [
        {
            "targets": [f"127.0.0.1:{port}"],
            "labels": {"node": "front", "__scheme__": "http", "__metrics_path__": "/metrics"},
        },
        {
            "targets": ["10.0.0.5:8081"],
            "labels": {"node": "gpu1", "__scheme__": "http", "__metrics_path__": "/metrics"},
        },
        {
            "targets": ["gpu2.lan:443"],
            "labels": {
                "node": "gpu2",
                "__scheme__": "https",
                "__metrics_path__": "/llamactl/metrics",
            },
        },
    ]
    assert "sk-node" not in response.text

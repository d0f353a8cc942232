"""``/metrics`` after a scripted run, read back with ``prometheus_client``'s own parser:
a cold start, ten requests, a 404, an eviction, an idle stop, a crash and its restart, each
counted exactly; no label carries a key."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from llamactl.manager.runtime import Readiness
from tests.support.live import INFERENCE_KEY, MANAGEMENT_KEY, Running, chat, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Awaitable[Running]]


class Clock:
    """``time.monotonic`` that a test can move forward (idle times)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def scrape(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample called ``name`` whose labels include ``labels``."""
    found = [
        s
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0].value


async def test_a_scripted_run_is_counted_exactly(serve: Serve) -> None:
    clock = Clock()
    running = await serve(
        clock,
        LLAMACTL_MAX_RUNNING_INSTANCES="1",
        LLAMACTL_ENABLE_LRU_EVICTION="true",
    )
    manager = running.manager
    await running.create("alpha", environment={"FAKE_LLAMA_LOAD_SECONDS": "0.3"})
    await running.create("beta", idle_timeout=1)
    await running.create("gamma", auto_restart=True, max_restarts=1, restart_delay=0)
    prompt = completion = 0
    async with httpx.AsyncClient(base_url=running.url, headers=headers(), timeout=30) as client:
        for n in range(10):  # the first starts alpha (cold), the other nine find it ready
            response = await client.post("/v1/chat/completions", json=chat("alpha", f"hi {n}"))
            assert response.status_code == 200
            prompt += response.json()["usage"]["prompt_tokens"]
            completion += response.json()["usage"]["completion_tokens"]
        missing = await client.post("/v1/chat/completions", json=chat("nope"))
        assert missing.status_code == 404
        # beta needs alpha's slot: alpha is evicted
        assert (await client.post("/v1/chat/completions", json=chat("beta"))).status_code == 200
        clock.offset += 120  # beta has been idle for two minutes
        assert await running.scheduler.check_idle() == ["beta"]
        # gamma crashes once and is restarted
        await manager.start("gamma")
        await manager.wait_ready("gamma", 10)
        first = manager.info("gamma").pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        assert await manager.wait_until(
            "gamma",
            lambda _inst, info: info.pid not in (None, first) and info.readiness is Readiness.READY,
            10,
        )
        refused = await client.get("/metrics", headers=headers(INFERENCE_KEY))
        assert refused.status_code == 401
        response = await client.get("/metrics", headers=headers(MANAGEMENT_KEY))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = scrape(response.text)
    node = {"node": "main"}
    chat_route = {"route": "/v1/chat/completions", **node}

    def requests(instance: str, code: str) -> float:
        return value(samples, "llamactl_requests_total", instance=instance, code=code, **chat_route)

    assert requests("alpha", "2xx") == 10
    assert requests("beta", "2xx") == 1
    assert requests("", "4xx") == 1
    assert {s.labels["code"] for s in samples if s.name == "llamactl_requests_total"} == {
        "2xx",
        "4xx",
    }
    assert value(samples, "llamactl_request_duration_seconds_count", instance="alpha") == 10
    assert value(samples, "llamactl_request_duration_seconds_count", instance="") == 1
    ttfb = "llamactl_time_to_first_byte_seconds_count"
    assert value(samples, ttfb, instance="alpha", cold="true") == 1
    assert value(samples, ttfb, instance="alpha", cold="false") == 9
    assert value(samples, ttfb, instance="beta", cold="true") == 1
    wait = "llamactl_queue_wait_seconds_count"
    assert value(samples, wait, instance="alpha", cold="true") == 1
    assert value(samples, wait, instance="beta", cold="true") == 1
    assert not [s for s in samples if s.name == wait and s.labels["cold"] == "false"]
    # the cold start waited for a 0.3 s load: its wait is in the 0.5 s bucket, not below
    bucket = "llamactl_queue_wait_seconds_bucket"
    assert value(samples, bucket, instance="alpha", cold="true", le="0.25") == 0
    assert value(samples, bucket, instance="alpha", cold="true", le="+Inf") == 1

    def counted(name: str, instance: str, **labels: str) -> float:
        return value(samples, name, instance=instance, **labels, **node)

    assert counted("llamactl_prompt_tokens_total", "alpha") == prompt
    assert counted("llamactl_completion_tokens_total", "alpha") == completion
    assert counted("llamactl_instance_starts_total", "alpha") == 1
    assert counted("llamactl_instance_starts_total", "beta") == 1
    assert counted("llamactl_instance_starts_total", "gamma") == 2
    assert counted("llamactl_instance_stops_total", "alpha", reason="eviction") == 1
    assert counted("llamactl_instance_stops_total", "beta", reason="idle") == 1
    for reason in ("manual", "idle", "restart", "shutdown"):
        assert counted("llamactl_instance_stops_total", "alpha", reason=reason) == 0
    assert counted("llamactl_evictions_total", "alpha") == 1
    assert counted("llamactl_evictions_total", "beta") == 0
    assert counted("llamactl_instance_crashes_total", "gamma") == 1
    assert counted("llamactl_instance_restarts_total", "gamma") == 1
    assert counted("llamactl_instance_crashes_total", "alpha") == 0
    assert counted("llamactl_backend_load_seconds_count", "alpha") == 1
    assert counted("llamactl_backend_load_seconds_count", "gamma") == 2
    assert counted("llamactl_instance_status", "alpha", status="stopped") == 1
    assert counted("llamactl_instance_status", "gamma", status="running") == 1
    assert counted("llamactl_instance_ready", "gamma") == 1
    assert counted("llamactl_instance_ready", "alpha") == 0
    assert counted("llamactl_requests_in_flight", "alpha") == 0
    assert counted("llamactl_backend_resident_memory_bytes", "gamma") > 1_000_000
    assert counted("llamactl_backend_cpu_seconds_total", "gamma") > 0
    assert not [
        s
        for s in samples
        if s.name.startswith("llamactl_backend_cpu") and s.labels["instance"] == "alpha"
    ]
    labels = {v for s in samples for v in s.labels.values()}
    assert not any(INFERENCE_KEY in v or MANAGEMENT_KEY in v for v in labels)
    assert not any("nope" in v for v in labels)  # a client's made-up model is no label

"""The direct lane (``server.protocol``): warm ``POST /v1`` requests relayed from the event
loop's callbacks, with no ASGI task.

Each request here is sent twice on a raw socket, to a ``raw`` instance that is ready and
has an idle connection in the pool: once in the lane's shape (``Content-Type:
application/json``) and once without a content type, which the lane leaves to the
ordinary path. A spy on the protocol records which one took each request, so that every
test also shows that the lane was (or was not) used. The client must see the same answer
either way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llamactl.proxy.client import Exchange
from llamactl.server.protocol import LaneProtocol
from tests.proxy.raw_backend import BIG_CHUNKS
from tests.support.live import INFERENCE_KEY, Running, chat
from tests.support.rawhttp import BackendRecord, RawClient, Reply, get, post, record, start_raw

__all__ = ["record", "start_raw"]  # fixtures

pytestmark = pytest.mark.anyio

JSON = "Content-Type: application/json"
BODY = json.dumps(chat("raw")).encode()


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether the lane took each request that it was offered, in order."""
    seen: list[bool] = []
    original = LaneProtocol._take

    def spy(self: LaneProtocol, cycle: Any, app: Any) -> bool:
        result = original(self, cycle, app)
        seen.append(result)
        return result

    monkeypatch.setattr(LaneProtocol, "_take", spy)
    yield seen


def request(scenario: str, *, lane: bool) -> bytes:
    extra = [f"X-Scenario: {scenario}"] + ([JSON] if lane else [])
    return post("/v1/chat/completions", BODY, INFERENCE_KEY, *extra)


async def exchange(port: int, scenario: str, *, lane: bool) -> Reply:
    """A plain request first (so that the pool holds a kept-alive connection to the
    backend), then ``scenario`` on the same client connection."""
    client = await RawClient.connect(port)
    try:
        warm = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
        assert warm.status == 200
        return await client.request(request(scenario, lane=lane), b"POST")
    finally:
        client.close()


def comparable(reply: Reply) -> tuple[int, bool, bytes, list[tuple[bytes, bytes]]]:
    headers = [(k, v) for k, v in reply.headers if k != b"date"]
    body = reply.body
    if reply.status == 200 and body.startswith(b"ok "):
        body = b"ok"  # which connection and request number the backend counted
        headers = [(k, v) for k, v in headers if k != b"content-length"]
    return reply.status, reply.complete, body, headers


@pytest.mark.parametrize(
    "scenario",
    [
        "ok",
        "interim",
        "extra",
        "nocontent",
        "cut-length",
        "cut-chunked",
        "close-delimited",
        "bad-status",
        "trailer",
        "server-date",
    ],
)
async def test_the_lane_answers_as_the_ordinary_path_does(
    start_raw: Callable[..., Any], taken: list[bool], scenario: str
) -> None:
    _, port = await start_raw()
    through_lane = await exchange(port, scenario, lane=True)
    assert taken == [True]
    ordinary = await exchange(port, scenario, lane=False)
    assert taken == [True], "a request without a JSON content type is not offered"
    assert comparable(through_lane) == comparable(ordinary)


async def test_no_head_in_time_is_the_same_504_on_the_lane(
    start_raw: Callable[..., Any], taken: list[bool]
) -> None:
    server, port = await start_raw(LLAMACTL_RESPONSE_HEADER_TIMEOUT="1")
    reply = await exchange(port, "silent", lane=True)
    assert taken == [True]
    assert reply.status == 504
    error: Any = reply.json()
    assert error["error"]["code"] == "gateway_timeout"
    assert "no response headers within 1 s" in error["error"]["message"]
    await wait_idle(server)


async def test_a_stale_kept_alive_connection_is_retried_on_a_new_one(
    start_raw: Callable[..., Any], taken: list[bool], record: BackendRecord
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        first = await client.request(get("/llama-cpp/raw/drop-next", INFERENCE_KEY))
        second = await client.request(request("ok", lane=True), b"POST")
    finally:
        client.close()
    assert (first.status, second.status, second.complete) == (200, 200, True)
    assert taken == [True]
    entries = record.entries()
    dropped = [e for e in entries if e.get("event") == "dropped"]
    assert len(dropped) == 1
    answered_by = second.body.split()[1]  # "ok <conn> <n>": a new connection answered
    assert int(answered_by) != dropped[0]["conn"]


async def test_a_slow_client_pauses_the_backend_and_gets_every_byte(
    start_raw: Callable[..., Any], taken: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = await start_raw()
    paused = asyncio.Event()
    original = Exchange.pause_reading

    def pause(self: Exchange) -> None:
        paused.set()
        original(self)

    monkeypatch.setattr(Exchange, "pause_reading", pause)
    client = await RawClient.connect(port)
    try:
        warm = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
        assert warm.status == 200
        await client.send(request("big", lane=True), b"POST")
        await asyncio.wait_for(paused.wait(), 30)  # the client reads nothing yet
        reply = await client.reply()
    finally:
        client.close()
    assert taken == [True]
    assert (reply.status, reply.complete, len(reply.body)) == (200, True, BIG_CHUNKS * 65536)
    expected = b"".join(bytes([n]) * 65536 for n in range(BIG_CHUNKS))
    assert reply.body == expected


async def test_a_client_leaving_midstream_closes_the_backend_connection(
    start_raw: Callable[..., Any], taken: list[bool], record: BackendRecord
) -> None:
    server, port = await start_raw()
    client = await RawClient.connect(port)
    warm = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
    assert warm.status == 200
    await client.send(request("hang", lane=True), b"POST")
    await client.reader.readuntil(b"data: ")  # the head and the first event came through
    assert taken == [True]
    entries = await record.wait_for(
        lambda entries: any("hang" in str(e.get("head", "")) for e in entries)
    )
    conn = next(e["conn"] for e in entries if "hang" in str(e.get("head", "")))
    client.close()
    await record.wait_for(lambda entries: {"conn": conn, "event": "closed"} in entries)
    await wait_idle(server)


async def test_requests_the_lane_leaves_alone_take_the_ordinary_path(
    start_raw: Callable[..., Any], taken: list[bool]
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        warm = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
        no_key = await client.request(
            post("/v1/chat/completions", BODY, None, JSON), b"POST"
        )  # fmt: skip
        unknown = await client.request(
            post("/v1/chat/completions", json.dumps(chat("nope")).encode(), INFERENCE_KEY, JSON),
            b"POST",
        )
        models = await client.request(
            post("/v1/models", b"{}", INFERENCE_KEY, JSON), b"POST"
        )  # fmt: skip
    finally:
        client.close()
    assert (warm.status, no_key.status, unknown.status, models.status) == (200, 401, 404, 400)
    assert taken == [False, False, False], "declined, then answered by the ordinary path"


async def wait_idle(server: Running) -> None:
    """Until nothing is counted in flight for ``raw`` (the relay is over)."""
    reached = await server.manager.wait_until("raw", lambda _, info: info.in_flight == 0, 10)
    assert reached, "the request is still counted in flight"

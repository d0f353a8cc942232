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

from llamactl.proxy.app import ProxyApp
from llamactl.server.protocol import LaneProtocol
from llamactl.transport import Exchange
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

    def spy(self: LaneProtocol, request: Any) -> bool:
        result = original(self, request)
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


async def test_a_request_whose_body_comes_in_a_later_read_still_takes_the_lane(
    start_raw: Callable[..., Any], taken: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = await start_raw()
    reads: list[bytes] = []
    head_read = asyncio.Event()
    original = LaneProtocol.data_received

    def spy(self: LaneProtocol, data: bytes) -> None:
        reads.append(data)
        if data.endswith(b"\r\n\r\n") and data.startswith(b"POST"):
            head_read.set()
        original(self, data)

    monkeypatch.setattr(LaneProtocol, "data_received", spy)
    client = await RawClient.connect(port)
    try:
        warm = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
        whole = request("ok", lane=True)
        head, body = whole[: -len(BODY)], whole[-len(BODY) :]
        await client.send(head, b"POST")
        await asyncio.wait_for(head_read.wait(), 10)  # llamactl has read the head alone
        client.writer.write(body)
        reply = await client.reply()
    finally:
        client.close()
    assert reads[-2:] == [head, body]
    assert (warm.status, reply.status, reply.complete, reply.body[:3]) == (200, 200, True, b"ok ")
    assert taken == [True]


async def test_pipelined_requests_are_answered_in_order_by_the_ordinary_path(
    start_raw: Callable[..., Any], taken: list[bool]
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        warm = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
        await client.send(request("ok", lane=True) + request("interim", lane=True), b"POST")
        first = await client.reply()
        client.sent(b"POST")  # the second request, written with the first
        second = await client.reply()
    finally:
        client.close()
    assert (warm.status, first.status, second.status) == (200, 200, 200)
    assert first.body.startswith(b"ok ") and second.body == b"final"
    assert taken == [], "two requests in one read are left to uvicorn, which queues them"


async def test_a_request_sent_while_the_lane_answers_is_answered_after_it(
    start_raw: Callable[..., Any], taken: list[bool], record: BackendRecord
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        warm = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
        await client.send(request("interim", lane=True), b"POST")  # answers after 0.2 s
        await record.wait_for(
            lambda entries: any("interim" in str(e.get("head", "")) for e in entries)
        )
        client.writer.write(request("ok", lane=True))
        first = await client.reply()
        client.sent(b"POST")  # the second request, written before the first's answer
        second = await client.reply()
    finally:
        client.close()
    assert (warm.status, first.status, second.status) == (200, 200, 200)
    assert first.body == b"final" and second.body.startswith(b"ok ")
    assert taken == [True, True]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"POST /v1/chat%2Fcompletions HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
         b"\r\nAuthorization: Bearer " + INFERENCE_KEY.encode() + b"\r\nContent-Length: "
         + str(len(BODY)).encode() + b"\r\n\r\n" + BODY, 200),
    ],
    ids=["malformed", "percent-escaped"],
)  # fmt: skip
async def test_what_the_lane_cannot_read_goes_to_uvicorn_as_it_came(
    start_raw: Callable[..., Any], taken: list[bool], raw: bytes, status: int
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        reply = await client.request(raw, b"POST")
    finally:
        client.close()
    assert reply.status == status
    assert taken == []


async def test_an_unexpected_failure_on_the_lane_leaves_the_request_to_the_ordinary_path(
    start_raw: Callable[..., Any],
    taken: list[bool],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, port = await start_raw()

    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the lane")

    monkeypatch.setattr(ProxyApp, "relay_now", broken)
    reply = await exchange(port, "ok", lane=True)
    assert taken == [False]
    assert "the direct lane failed" in caplog.text and "a bug in the lane" in caplog.text
    assert (reply.status, reply.complete, reply.body[:3]) == (200, True, b"ok ")

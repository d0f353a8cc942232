"""The management API's guards over a real socket: body size, JSON bodies and origins.

Cross-site requests are sent the way a browser sends them without a preflight: a
``text/plain`` POST (what ``fetch(url, {method: "POST", mode: "no-cors", body})`` or a
form sends) with the page's ``Origin``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from llamactl.instance import Status
from llamactl.server.guards import OriginPolicy
from tests.support.config import fake_options
from tests.support.live import MANAGEMENT_KEY, Running, headers

pytestmark = pytest.mark.anyio

Serve = Callable[..., Any]
AUTH_OFF = {"LLAMACTL_REQUIRE_MANAGEMENT_AUTH": "false"}
EVIL = "http://evil.example"
# What a malicious page would create: an instance whose "backend" is any command.
PAYLOAD = json.dumps({**fake_options(), "command_override": "touch /tmp/pwned"})


def own_origin(server: Running) -> str:
    return server.url  # http://127.0.0.1:<port>, as a page llamactl served would send


def names(server: Running) -> list[str]:
    return [inst.name for inst in server.manager.list()]


async def test_a_cross_site_text_plain_post_creates_nothing(serve: Serve) -> None:
    server: Running = await serve(**AUTH_OFF)
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(
            "/api/v1/instances/pwn",
            content=PAYLOAD,
            headers={"Origin": EVIL, "Content-Type": "text/plain;charset=UTF-8"},
        )
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden_origin"
    assert EVIL in error["message"]
    assert "server.allowed_origins" in error["message"]
    assert names(server) == []


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_that_is_not_json_is_415_from_anywhere(
    serve: Serve, content_type: str | None
) -> None:
    server: Running = await serve(**AUTH_OFF)
    sent = {} if content_type is None else {"Content-Type": content_type}
    async with httpx.AsyncClient(base_url=server.url) as client:
        for extra in ({}, {"Origin": own_origin(server)}):
            response = await client.post(
                "/api/v1/instances/pwn", content=PAYLOAD, headers={**sent, **extra}
            )
            assert response.status_code == 415, response.text
            error = response.json()["error"]
            assert error["code"] == "unsupported_media_type"
            assert "application/json" in error["message"]
            assert (content_type or "no Content-Type") in error["message"]
    assert names(server) == []


async def test_own_pages_clients_without_origin_and_listed_origins_pass(serve: Serve) -> None:
    listed = "http://dash.example:3000"
    server: Running = await serve(**AUTH_OFF, LLAMACTL_ALLOWED_ORIGINS=f"{listed},*")
    json_body = {"Content-Type": "application/json; charset=utf-8"}
    async with httpx.AsyncClient(base_url=server.url) as client:
        for name, origin in (("own", own_origin(server)), ("listed", listed), ("curl", None)):
            sent = json_body if origin is None else {**json_body, "Origin": origin}
            response = await client.post(f"/api/v1/instances/{name}", content=PAYLOAD, headers=sent)
            assert response.status_code == 201, (origin, response.text)
        # Bodiless requests need no content type: what curl -X POST and the CLI send.
        assert (await client.post("/api/v1/instances/curl/stop")).status_code == 200
        assert (await client.delete("/api/v1/instances/curl")).status_code == 204
        own = {"Origin": own_origin(server)}
        assert (await client.delete("/api/v1/instances/own", headers=own)).status_code == 204
    assert names(server) == ["listed"]


async def test_a_cross_site_bodiless_post_starts_nothing(serve: Serve) -> None:
    server: Running = await serve(**AUTH_OFF)
    await server.create("idle")
    async with httpx.AsyncClient(base_url=server.url) as client:
        for path in ("/api/v1/instances/idle/start", "/api/v1/instances/idle/restart"):
            response = await client.post(path, headers={"Origin": EVIL})
            assert response.status_code == 403, response.text
        response = await client.delete("/api/v1/instances/idle", headers={"Origin": "null"})
        assert response.status_code == 403
        # Reads too: instance environments hold tokens.
        response = await client.get("/api/v1/instances", headers={"Origin": EVIL})
        assert response.status_code == 403
    assert server.manager.get("idle").status is Status.STOPPED
    assert server.manager.info("idle").pid is None


async def test_a_cross_site_page_cannot_use_the_instance_proxy(serve: Serve) -> None:
    server: Running = await serve(**AUTH_OFF)
    await server.create("live")
    await server.manager.start("live")
    await server.manager.wait_ready("live", 10)
    body = json.dumps({"prompt": "hi"})
    async with httpx.AsyncClient(base_url=server.url) as client:
        path = "/api/v1/instances/live/proxy/completions"
        refused = await client.post(path, content=body, headers={"Origin": EVIL})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "forbidden_origin"
        allowed = await client.post(path, content=body, headers={"Origin": own_origin(server)})
        assert allowed.status_code == 200, allowed.text
    assert [entry["path"] for entry in server.backend_requests("/completions")] == ["/completions"]


async def test_with_management_auth_the_key_is_the_defence(serve: Serve) -> None:
    server: Running = await serve()
    key = headers(MANAGEMENT_KEY)
    async with httpx.AsyncClient(base_url=server.url) as client:
        sent = {**key, "Origin": EVIL, "Content-Type": "application/json"}
        response = await client.post("/api/v1/instances/keyed", content=PAYLOAD, headers=sent)
        assert response.status_code == 201, response.text
        sent = {**key, "Origin": EVIL, "Content-Type": "text/plain"}
        response = await client.post("/api/v1/instances/plain", content=PAYLOAD, headers=sent)
        assert response.status_code == 415
        no_key = {"Origin": EVIL, "Content-Type": "application/json"}
        response = await client.post("/api/v1/instances/nokey", content=PAYLOAD, headers=no_key)
        assert response.status_code == 401
    assert names(server) == ["keyed"]


# -- body size ------------------------------------------------------------------------------


async def raw_exchange(
    server: Running, head: bytes, body_chunks: list[bytes]
) -> tuple[bytes, bool]:
    """Send ``head`` then ``body_chunks`` (as far as the server lets us) on one connection.

    Returns everything the server answered until it closed the connection, and whether
    every chunk could be written.
    """
    address = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    writer.write(head)

    async def write_body() -> bool:
        try:
            for chunk in body_chunks:
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            return False
        return True

    async def read_answer() -> bytes:
        # The server closes the connection after its 413: its end is the event. It closes
        # with our unread bytes in its buffer, so the end may come as a reset.
        received = []
        try:
            while chunk := await reader.read(65536):
                received.append(chunk)
        except ConnectionResetError:
            pass
        return b"".join(received)

    sender = asyncio.create_task(write_body())
    try:
        answer = await asyncio.wait_for(read_answer(), timeout=30)
    finally:
        sent_all = await sender
        writer.close()
    return answer, sent_all


def status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    lines = head.split(b"\r\n")
    assert b"connection: close" in [line.lower() for line in lines], head
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return status, json.loads(body)


async def test_a_declared_terabyte_is_refused_at_once(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_REQUEST_BODY_MB="1")
    head = (
        b"POST /api/v1/instances/huge HTTP/1.1\r\nHost: llamactl\r\n"
        b"Authorization: Bearer " + MANAGEMENT_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1099511627776\r\n\r\n"
    )
    # Nothing of the body is sent: the answer must not wait for it.
    answer, _ = await raw_exchange(server, head, [])
    status, body = status_and_body(answer)
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert "server.max_request_body_mb" in body["error"]["message"]
    assert names(server) == []


@pytest.mark.parametrize(
    "path", ["/api/v1/instances/big", "/api/v1/backends/llama-cpp/parse-command"]
)
async def test_a_chunked_body_past_the_limit_is_413(serve: Serve, path: str) -> None:
    server: Running = await serve(LLAMACTL_MAX_REQUEST_BODY_MB="1")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: llamactl\r\n"
        f"Authorization: Bearer {MANAGEMENT_KEY}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # A valid body of 3 MB: without the limit it would be read whole and accepted.
    document = json.dumps({**fake_options(), "environment": {"PAD": "x" * (3 << 20)}}).encode()
    piece = 64 * 1024
    chunks = [
        b"%x\r\n%s\r\n" % (len(document[at : at + piece]), document[at : at + piece])
        for at in range(0, len(document), piece)
    ] + [b"0\r\n\r\n"]
    answer, _ = await raw_exchange(server, head, chunks)
    status, body = status_and_body(answer)
    assert status == 413, body
    assert body["error"]["code"] == "payload_too_large"
    assert names(server) == []


async def test_a_body_within_the_limit_still_passes(serve: Serve) -> None:
    server: Running = await serve(LLAMACTL_MAX_REQUEST_BODY_MB="1")
    padded = {**fake_options(), "environment": {"PAD": "x" * 1000}}
    async with httpx.AsyncClient(base_url=server.url) as client:

        async def chunks() -> Any:
            text = json.dumps(padded).encode()
            for at in range(0, len(text), 100):
                yield text[at : at + 100]

        response = await client.post(
            "/api/v1/instances/small",
            content=chunks(),
            headers={**headers(MANAGEMENT_KEY), "Content-Type": "application/json"},
        )
    assert response.status_code == 201, response.text
    assert names(server) == ["small"]


# -- the origin rule on its own ------------------------------------------------------------


def scope_from(origin: str | None, host: str | None) -> dict[str, Any]:
    headers = [(b"origin", origin.encode())] if origin is not None else []
    headers += [(b"host", host.encode())] if host is not None else []
    return {"type": "http", "method": "POST", "path": "/api/v1/instances/x", "headers": headers}


@pytest.mark.parametrize(
    ("origin", "host", "passes"),
    [
        (None, "127.0.0.1:8080", True),  # not a browser
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://LOCALHOST:8080", "localhost:8080", True),
        ("http://example.com", "example.com:80", True),  # default ports
        ("https://example.com", "example.com", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("https://dash.example", "llamactl:8080", True),  # listed
        ("https://dash.example/", "llamactl:8080", True),
        ("http://dash.example", "llamactl:8080", False),  # another scheme is another origin
        ("http://127.0.0.1:8081", "127.0.0.1:8080", False),
        ("http://localhost:8080", "127.0.0.1:8080", False),
        ("https://example.com", "example.com:80", False),
        ("http://[::1]", "[::1]:8080", False),
        ("null", "127.0.0.1:8080", False),
        ("http://127.0.0.1:8080", None, False),
        ("file://", "127.0.0.1:8080", False),
    ],
)
def test_which_origins_pass(origin: str | None, host: str | None, passes: bool) -> None:
    policy = OriginPolicy(["*", "https://dash.example"], enforced=True)
    refused = policy.refusal(scope_from(origin, host))
    assert (refused is None) is passes
    if refused is not None:
        assert refused.status == 403 and repr(origin) in refused.message
    assert OriginPolicy(["*"], enforced=False).refusal(scope_from(origin, host)) is None

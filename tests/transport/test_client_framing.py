"""The proxy's HTTP client: when a connection may be reused, IPv6 hosts, waits bounded."""

from __future__ import annotations

import asyncio
import socket

import pytest

from llamactl.transport import ConnectionPool, UpstreamTimeout
from tests.support.scripted import Handler, body, read_request, serve

pytestmark = pytest.mark.anyio

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _answer_forever(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes
) -> None:
    """``first`` to the first request on the connection, then OK to every one after."""
    await read_request(reader)
    writer.write(first)
    await writer.drain()
    while True:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()


async def _two_requests(handler: Handler, first_method: str = "GET") -> tuple[bytes, list[int]]:
    server, port, connections = await serve(handler)
    pool = ConnectionPool()
    try:
        first = await pool.request("127.0.0.1", port, first_method, "/1", [], b"")
        await body(first)
        second = await pool.request("127.0.0.1", port, "GET", "/2", [], b"")
        return await body(second), connections
    finally:
        pool.close()
        server.close()


@pytest.mark.parametrize(
    ("first", "method"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", "GET"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", "GET"),
        (b"HTTP/1.1 304 Not Modified\r\n\r\nstray", "GET"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray", "HEAD"),
    ],
    ids=["connection-close", "bytes-after-the-end", "body-on-304", "body-on-head"],
)
async def test_a_connection_is_reused_only_after_an_exact_end(first: bytes, method: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _answer_forever(reader, writer, first if n == 1 else OK)

    second, connections = await _two_requests(handler, method)
    assert (second, connections) == (b"ok", [1, 2])


async def test_an_exact_end_is_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await _answer_forever(reader, writer, OK)

    assert await _two_requests(handler) == (b"ok", [1])


async def test_an_ipv6_host_is_bracketed_in_the_host_header() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.set_result(await read_request(reader))
        writer.write(OK)
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(on_connect, "::1", 0)
    except OSError as exc:
        pytest.skip(f"cannot listen on ::1: {exc}")
    port = server.sockets[0].getsockname()[1]
    pool = ConnectionPool()
    try:
        response = await pool.request("::1", port, "GET", "/", [], b"")
        assert await body(response) == b"ok"
    finally:
        pool.close()
        server.close()
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in await received


async def _silent_server() -> tuple[asyncio.Server, int, asyncio.Event, asyncio.Event]:
    """A server that reads a request, never answers, and notes the connection's end."""
    asked, ended = asyncio.Event(), asyncio.Event()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        asked.set()
        await reader.read()  # b"" once the client closes
        ended.set()
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], asked, ended


async def test_no_head_within_the_timeout_closes_the_connection() -> None:
    server, port, _asked, ended = await _silent_server()
    pool = ConnectionPool(header_timeout=0.2)
    try:
        with pytest.raises(UpstreamTimeout, match=r"no response headers within 0\.2 s"):
            await pool.request("127.0.0.1", port, "GET", "/", [], b"")
        await asyncio.wait_for(ended.wait(), 10)
    finally:
        pool.close()
        server.close()


async def test_a_caller_cancelled_before_the_head_closes_the_connection() -> None:
    server, port, asked, ended = await _silent_server()
    pool = ConnectionPool()
    try:
        waiting = asyncio.create_task(pool.request("127.0.0.1", port, "GET", "/", [], b""))
        await asyncio.wait_for(asked.wait(), 10)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await asyncio.wait_for(ended.wait(), 10)
    finally:
        pool.close()
        server.close()

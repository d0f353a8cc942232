"""The proxy's HTTP client against scripted servers: keep-alive, retries, HEAD, chunks."""

from __future__ import annotations

import asyncio

import pytest

from llamactl.transport import ConnectionPool, Exchange, UpstreamError
from tests.support.scripted import OK, body, read_request, serve

pytestmark = pytest.mark.anyio


async def test_a_reused_connection_that_dies_unanswered_is_retried_once() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(OK)
        await writer.drain()
        if n == 1:
            await read_request(reader)  # the second request on this connection: no answer
            return
        while True:
            await read_request(reader)
            writer.write(OK)
            await writer.drain()

    server, port, connections = await serve(handler)
    pool = ConnectionPool()
    try:
        first = await pool.request("127.0.0.1", port, "POST", "/x", [], b"{}")
        assert (first.status, await body(first)) == (200, b"ok")
        second = await pool.request("127.0.0.1", port, "POST", "/x", [], b"{}")
        assert (second.status, await body(second)) == (200, b"ok")
        assert connections == [1, 2]
    finally:
        pool.close()
        server.close()


async def test_a_fresh_connection_that_dies_is_an_error_not_a_retry() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)  # and close without answering

    server, port, connections = await serve(handler)
    pool = ConnectionPool()
    try:
        with pytest.raises(UpstreamError, match="closed the connection"):
            await pool.request("127.0.0.1", port, "POST", "/x", [], b"{}")
        assert connections == [1]
    finally:
        pool.close()
        server.close()


async def test_nothing_listening_is_an_error() -> None:
    server, port, _ = await serve(lambda *_: asyncio.sleep(0))
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamError, match=f"cannot connect to 127.0.0.1:{port}"):
        await ConnectionPool().request("127.0.0.1", port, "GET", "/", [], b"")


async def test_head_has_no_body_and_chunked_bodies_stream() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            request = await read_request(reader)
            if request.startswith(b"HEAD"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for piece in (b"data: 1\n\n", b"data: 2\n\n"):
                    writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            await writer.drain()

    server, port, connections = await serve(handler)
    pool = ConnectionPool()
    try:
        head = await pool.request("127.0.0.1", port, "HEAD", "/", [], b"")
        assert (head.status, await body(head)) == (200, b"")
        streamed = await pool.request("127.0.0.1", port, "POST", "/s", [], b"{}")
        assert await body(streamed) == b"data: 1\n\ndata: 2\n\n"
        assert connections == [1]  # both on one kept-alive connection
    finally:
        pool.close()
        server.close()


async def test_a_connection_the_backend_closed_before_the_request_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        writer.close()  # at once, before any request

    server, port, _ = await serve(handler)
    pool = ConnectionPool()
    try:
        exchange = await pool.connect("127.0.0.1", port)
        async with asyncio.timeout(5):
            while exchange.usable:  # until the close has reached this side
                await asyncio.sleep(0.01)

        async def connect_closed(host: str, port: int) -> Exchange:
            return exchange

        monkeypatch.setattr(pool, "_connect", connect_closed)
        with pytest.raises(UpstreamError, match="closed the connection before the request"):
            await pool.request("127.0.0.1", port, "POST", "/x", [], b"{}")
    finally:
        pool.close()
        server.close()

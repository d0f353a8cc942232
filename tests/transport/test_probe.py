"""Health probes through the transport (``ConnectionPool.probe``) against scripted servers."""

from __future__ import annotations

import asyncio
import socket

import pytest

from llamactl.transport import ConnectionPool
from tests.support.scripted import read_request, serve

pytestmark = pytest.mark.anyio

HEALTHY = b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"status":"ok"}'


async def test_nothing_listening_is_none() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
    pool = ConnectionPool()
    assert await pool.probe("127.0.0.1", port, "/health", 0.5) is None


async def test_a_backend_that_accepts_and_never_answers_is_none_within_the_timeout() -> None:
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        accepted.set()
        await reader.read()  # until the probe gives up and closes

    server, port, connections = await serve(silent)
    pool = ConnectionPool()
    try:
        assert await pool.probe("127.0.0.1", port, "/health", 0.3) is None
        assert accepted.is_set()
    finally:
        pool.close()
        server.close()
    assert connections == [1]


async def test_each_probe_has_a_connection_of_its_own_and_reads_the_status() -> None:
    heads: list[bytes] = []

    async def healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        heads.append(await read_request(reader))
        writer.write(HEALTHY if len(heads) < 3 else HEALTHY.replace(b"200 OK", b"503 No"))
        await writer.drain()
        await reader.read()  # until the probe closes the connection

    server, port, connections = await serve(healthy)
    pool = ConnectionPool()
    try:
        statuses = [await pool.probe("127.0.0.1", port, "/health", 2.0) for _ in range(3)]
    finally:
        pool.close()
        server.close()
    assert statuses == [200, 200, 503]
    assert connections == [1, 2, 3]
    assert all(b"\r\nconnection: close\r\n" in head for head in heads)
    assert heads[0].startswith(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:")


async def test_an_ipv6_backend_gets_a_bracketed_host() -> None:
    heads: list[bytes] = []

    async def healthy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await read_request(reader))
        writer.write(HEALTHY)
        await writer.drain()
        writer.close()

    try:
        server = await asyncio.start_server(healthy, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = server.sockets[0].getsockname()[1]
    pool = ConnectionPool()
    try:
        assert await pool.probe("::1", port, "/health", 2.0) == 200
    finally:
        pool.close()
        server.close()
    assert f"\r\nHost: [::1]:{port}\r\n".encode() in heads[0]

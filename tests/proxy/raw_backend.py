#!/usr/bin/env python3
"""A misbehaving backend on a raw socket: it writes exactly the bytes each scenario asks.

Standard library only. Run as an instance's backend (the llama-cpp or vllm command) or on
its own in front of nginx::

    python tests/proxy/raw_backend.py --port N [anything else is ignored]

``GET /health`` answers 200 and is not recorded. Every other request is recorded, then
answered by the scenario named in its ``X-Scenario`` header, else by the last segment of
its path (``/anything/interim``); an unknown name is ``ok``. Each record is one JSON line in
the file named by ``RAW_BACKEND_LOG`` (when set), flushed at once::

    {"conn": 3, "event": "request", "head": "<request line and headers>", "body": "..."}
    {"conn": 3, "event": "closed"}              (the peer closed the connection)

``head`` and ``body`` are the bytes as received, decoded as Latin-1. Scenarios:

ok              200, ``Content-Length``, body ``ok <conn> <n>`` (connection, request number)
interim         ``100 Continue`` and ``103 Early Hints``, 0.2 s later 200 ``final``
extra           200 ``ok``, then a whole second response (``smuggled``) in the same write
nocontent       204 followed by a body (a ``smuggled`` response) in the same write
cut-length      200 announcing 100 bytes, 10 sent, connection closed
cut-chunked     200 ``text/event-stream`` chunked: one chat-completion chunk, then closed
close-delimited 200 without length, body ``all of it``, connection closed (complete)
huge-head       200 then headers without end (1 MiB of them), then it waits
bad-status      status 999
silent          never answers; the connection's closing is recorded
trailer         200 chunked with a ``Set-Cookie`` trailer, all in the head's write
server-date     200 with the backend's own ``Server`` and ``Date``
big             200 chunked, ``BIG_CHUNKS`` chunks of 64 KiB (each byte its chunk's number)
hang            200 chunked ``text/event-stream``: one event, then it waits
drop-next       200 ``ok``; the next request on the connection is read, then the
                connection is closed without an answer (a kept-alive connection gone stale)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
from pathlib import Path

_LOG = os.environ.get("RAW_BACKEND_LOG")
_connections = itertools.count(1)

INTERIM = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
BIG_CHUNKS = 256  # 16 MiB in all: more than the sockets between hold
INTERIM_PAUSE = 0.2  # seconds between the interim responses and the final one

CHUNK_EVENT = (
    b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"raw",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"half an "},'
    b'"finish_reason":null}]}\n\n'
)


def record(entry: dict[str, object]) -> None:
    if _LOG:
        with Path(_LOG).open("a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")


def response(status: bytes, body: bytes, *headers: bytes) -> bytes:
    head = [b"HTTP/1.1 " + status, b"Content-Length: %d" % len(body), *headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def answer(scenario: str, conn: int, number: int) -> tuple[bytes, str]:
    """The bytes to write and what to do next: ``keep``, ``close`` or ``wait``."""
    smuggled = response(b"200 OK", b"smuggled")
    if scenario == "interim":
        return response(b"200 OK", b"final"), "keep"  # after INTERIM, see on_connect
    if scenario == "extra":
        return response(b"200 OK", b"ok") + smuggled, "keep"
    if scenario == "nocontent":
        return b"HTTP/1.1 204 No Content\r\n\r\n" + smuggled, "keep"
    if scenario == "cut-length":
        return b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", "close"
    if scenario == "cut-chunked":
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(CHUNK_EVENT), "close"
    if scenario == "close-delimited":
        return b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it", "close"
    if scenario == "huge-head":
        filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"f" * 1000) for i in range(1024))
        return b"HTTP/1.1 200 OK\r\n" + filler, "wait"
    if scenario == "bad-status":
        return b"HTTP/1.1 999 Strange\r\nContent-Length: 2\r\n\r\nok", "keep"
    if scenario == "silent":
        return b"", "wait"
    if scenario == "trailer":
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: Set-Cookie\r\n\r\n"
        return head + chunk(b"body") + b"0\r\nSet-Cookie: stolen=1\r\n\r\n", "keep"
    if scenario == "big":
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        pieces = b"".join(chunk(bytes([n]) * 65536) for n in range(BIG_CHUNKS))
        return head + pieces + b"0\r\n\r\n", "keep"
    if scenario == "hang":
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk(CHUNK_EVENT), "wait"
    if scenario == "server-date":
        extra = (b"Server: raw-backend/1.0", b"Date: Thu, 01 Jan 1970 00:00:00 GMT")
        return response(b"200 OK", b"ok", *extra), "keep"
    return response(b"200 OK", b"ok %d %d" % (conn, number)), "keep"


def scenario_of(head: bytes) -> str:
    lines = head.split(b"\r\n")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-scenario":
            return value.strip().decode("latin-1")
    target = lines[0].split(b" ")[1] if b" " in lines[0] else b"/"
    return target.split(b"?")[0].rsplit(b"/", 1)[-1].decode("latin-1")


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head[:-4], await reader.readexactly(length)


async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = next(_connections)
    number = 0
    drop_next = False
    try:
        while True:
            head, body = await read_request(reader)
            if drop_next:
                record({"conn": conn, "event": "dropped"})
                break
            if head.startswith(b"GET /health "):
                writer.write(response(b"200 OK", b'{"status": "ok"}'))
                continue
            number += 1
            text = {"head": head.decode("latin-1"), "body": body.decode("latin-1")}
            record({"conn": conn, "event": "request", **text})
            scenario = scenario_of(head)
            drop_next = scenario == "drop-next"
            if scenario == "interim":  # on its own, as a backend that starts working would
                writer.write(INTERIM)
                await writer.drain()
                await asyncio.sleep(INTERIM_PAUSE)
            data, then = answer(scenario, conn, number)
            writer.write(data)
            await writer.drain()
            if then == "close":
                break
            if then == "wait":
                await reader.read()  # until the peer goes
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        if number:
            record({"conn": conn, "event": "closed"})
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(on_connect, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    argv = sys.argv[1:]
    asyncio.run(main(int(argv[argv.index("--port") + 1])))

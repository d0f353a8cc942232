#!/usr/bin/env python3
"""A fake OpenAI-compatible inference backend that is never the bottleneck of a benchmark.

Raw asyncio (uvloop when importable), HTTP/1.1 keep-alive, every answer precomputed:

- ``GET /health``                  200 ``{"status":"ok"}``
- ``GET /v1/models``               200, one model
- ``POST /v1/chat/completions``    200, a fixed ~300-byte chat completion; when the body asks
  for ``"stream": true``, a chunked ``text/event-stream`` of 32 ``data: {...}`` events and
  ``data: [DONE]``, each event its own chunk frame, all written at once. When the body also
  has ``"bench_gap_ms": N``, the head is written alone and then each event in a write of
  its own, N ms apart, as a generating backend does.

Usage: ``fast_backend.py --port N [--host 127.0.0.1]``. Any other option (``--model M``,
``--ctx-size 4096``, ...) is accepted and ignored, so a supervisor can start it as if it were
a llama-server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import cast

STREAM_EVENTS = 32
MAX_HEAD = 64 * 1024


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _completion(model: str) -> bytes:
    return _json(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "Hello! This is a precomputed answer from the bench backend.",
                    },
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        }
    )


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)


def _stream_frames(model: str) -> list[bytes]:
    """The streamed answer as the writes a generating backend makes: head, events, end."""
    frames = [STREAM_HEAD]
    for index in range(STREAM_EVENTS):
        delta: dict[str, str] = {"content": f"tok{index} "}
        if index == 0:
            delta["role"] = "assistant"
        last = index == STREAM_EVENTS - 1
        event = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "delta": {} if last else delta,
                    "finish_reason": "stop" if last else None,
                }
            ],
        }
        frames.append(_chunk(b"data: " + _json(event) + b"\n\n"))
    frames.append(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
    return frames


MODEL = "bench"
HEALTH = _response("200 OK", b'{"status":"ok"}')
MODELS = _response(
    "200 OK",
    _json({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "bench"}]}),
)
COMPLETION = _response("200 OK", _completion(MODEL))
STREAM_FRAMES = _stream_frames(MODEL)
STREAM = b"".join(STREAM_FRAMES)
NOT_FOUND = _response("404 Not Found", b'{"error":{"message":"not found","code":404}}')
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _answer(method: bytes, path: bytes, body: bytes) -> bytes:
    path = path.split(b"?", 1)[0]
    if method == b"POST" and path == b"/v1/chat/completions":
        if b'"stream":true' in body or b'"stream": true' in body:
            return STREAM
        return COMPLETION
    if method == b"GET" and path == b"/health":
        return HEALTH
    if method == b"GET" and path == b"/v1/models":
        return MODELS
    return NOT_FOUND


def _chunked_body(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body at ``start``: (body, end) or None while incomplete."""
    parts: list[bytes] = []
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(bytes(buffer[position:line_end]).split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", position - 2)
            if trailer_end < 0:
                return None
            return b"".join(parts), trailer_end + 4
        if len(buffer) < position + size + 2:
            return None
        parts.append(bytes(buffer[position : position + size]))
        position += size + 2


class HttpProtocol(asyncio.Protocol):
    """One keep-alive connection: parse requests from the buffer, answer each at once."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None and not self.transport.is_closing():
            if not self._one_request():
                break

    def _one_request(self) -> bool:
        """Answer the first request in the buffer; False when it is not complete yet."""
        transport = self.transport
        assert transport is not None
        buffer = self.buffer
        head_end = buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(buffer) > MAX_HEAD:
                transport.write(BAD_REQUEST)
                transport.close()
            return False
        head = bytes(buffer[:head_end])
        lines = head.split(b"\r\n")
        try:
            method, path, version = lines[0].split(b" ", 2)
        except ValueError:
            transport.write(BAD_REQUEST)
            transport.close()
            return False
        length = 0
        chunked = False
        close = version == b"HTTP/1.0"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                value = value.strip().lower()
                if value == b"close":
                    close = True
                elif value == b"keep-alive":
                    close = False
        body_start = head_end + 4
        if chunked:
            decoded = _chunked_body(buffer, body_start)
            if decoded is None:
                return False
            body, end = decoded
        else:
            end = body_start + length
            if len(buffer) < end:
                return False
            body = bytes(buffer[body_start:end])
        del buffer[:end]
        gap = _gap_seconds(method, path, body)
        if gap is not None:
            self._write_paced(list(STREAM_FRAMES), gap)
            return True
        transport.write(_answer(method, path, body))
        if close:
            transport.close()
            return False
        return True

    def _write_paced(self, frames: list[bytes], gap: float) -> None:
        """Write the first frame now and each of the others ``gap`` seconds later."""
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(frames.pop(0))
        if frames:
            asyncio.get_running_loop().call_later(gap, self._write_paced, frames, gap)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def _gap_seconds(method: bytes, path: bytes, body: bytes) -> float | None:
    """The pause between streamed events that a request asks for, if it asks for one."""
    if method != b"POST" or b'"bench_gap_ms":' not in body:
        return None
    try:
        gap = json.loads(body).get("bench_gap_ms")
    except ValueError:
        return None
    return float(gap) / 1000 if isinstance(gap, (int, float)) and gap >= 0 else None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(HttpProtocol, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"fast_backend listening on http://{host}:{port}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args, _ignored = parser.parse_known_args(argv)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

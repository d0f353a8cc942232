"""Test helpers: a raw-socket HTTP/1.1 client and the raw backend's record."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest

from tests.support.live import Running, headers

RAW_BACKEND = Path(__file__).parents[1] / "proxy" / "raw_backend.py"


@dataclass
class Reply:
    """One response as the client saw it; ``complete`` is false when it was cut off."""

    status: int
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False

    def values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name]

    @property
    def outcome(self) -> str:
        """The outcome class the differential test compares."""
        if self.status in (502, 504):
            return str(self.status)
        return "complete" if self.complete else "incomplete"

    def json(self) -> object:
        return json.loads(self.body)


class RawClient:
    """One client connection, written to byte by byte as the test says."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes, method: bytes = b"GET") -> None:
        """Write ``request`` as it is (the request line unchecked)."""
        self.sent(method)
        self.writer.write(request)
        await self.writer.drain()

    def sent(self, method: bytes = b"GET") -> None:
        """Count a request as sent, its bytes written already (pipelined with another)."""
        # h11 only needs to know a request went out, and its method.
        self._h11.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        self._h11.send(h11.EndOfMessage())

    async def reply(self, timeout: float = 30) -> Reply:
        """Read one response (interim ones skipped) until its end or the connection's."""
        reply: Reply | None = None
        body: list[bytes] = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    event = self._h11.next_event()
                except h11.RemoteProtocolError:
                    break
                if event is h11.NEED_DATA:
                    data = await self.reader.read(65536)
                    self._h11.receive_data(data)
                    if not data and reply is None:
                        raise ConnectionError("closed before a response")
                    continue
                if isinstance(event, h11.Response):
                    reply = Reply(event.status_code, [(k, v) for k, v in event.headers])
                elif isinstance(event, h11.Data):
                    body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    assert reply is not None
                    reply.complete = True
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    break
        if reply is None:
            raise ConnectionError("no response")
        reply.body = b"".join(body)
        if self.reusable:
            self._h11.start_next_cycle()
        return reply

    @property
    def reusable(self) -> bool:
        """Whether the last exchange left the connection open for another request."""
        return self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE

    async def request(self, request: bytes, method: bytes = b"GET") -> Reply:
        await self.send(request, method)
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


def get(target: str, key: str | None = None, *extra: str) -> bytes:
    """A GET request's bytes, ``target`` written as it is."""
    lines = [f"GET {target} HTTP/1.1", "Host: test"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(target: str, body: bytes, key: str | None = None, *extra: str) -> bytes:
    lines = [f"POST {target} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}"]
    if key:
        lines.append(f"Authorization: Bearer {key}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class BackendRecord:
    """What the raw backend wrote to its log: requests and closed connections."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text("utf-8").splitlines()]

    def requests(self) -> list[dict[str, object]]:
        return [entry for entry in self.entries() if entry["event"] == "request"]

    def request_lines(self) -> list[str]:
        return [str(entry["head"]).split("\r\n", 1)[0] for entry in self.requests()]

    async def wait_for(
        self, condition: Callable[[list[dict[str, object]]], bool], timeout: float = 15
    ) -> list[dict[str, object]]:
        """Poll the log until ``condition`` holds for its entries (the backend is another
        process: its log is the event we wait on)."""
        deadline = time.monotonic() + timeout
        while True:
            entries = self.entries()
            if condition(entries):
                return entries
            if time.monotonic() > deadline:
                raise AssertionError(f"the backend never recorded it; it recorded {entries}")
            await asyncio.sleep(0.02)


async def start_raw_backend(port: int, log: Path) -> asyncio.subprocess.Process:
    """The raw backend as a process of its own (for nginx), ready when this returns."""
    import os

    process = await asyncio.create_subprocess_exec(
        sys.executable, str(RAW_BACKEND), "--port", str(port),
        env={**os.environ, "RAW_BACKEND_LOG": str(log)},
    )  # fmt: skip
    await wait_listening(port)
    return process


async def wait_listening(port: int) -> None:
    """Return once something accepts connections on ``port`` (at most 15 s)."""
    async with asyncio.timeout(15):
        while True:
            try:
                client = await RawClient.connect(port)
            except OSError:
                await asyncio.sleep(0.02)
                continue
            client.close()
            return


@pytest.fixture
def record(tmp_path: Path) -> BackendRecord:
    return BackendRecord(tmp_path / "raw-backend.jsonl")


@pytest.fixture
def start_raw(serve: Callable[..., Any], record: BackendRecord) -> Callable[..., Any]:
    """llamactl with one instance, ``raw``, whose backend is the raw backend."""

    async def start(**environ: str) -> tuple[Running, int]:
        server: Running = await serve(LLAMACTL_LLAMACPP_ARGS=str(RAW_BACKEND), **environ)
        await server.create("raw", environment={"RAW_BACKEND_LOG": str(record.path)})
        async with httpx.AsyncClient(base_url=server.url, headers=headers()) as client:
            warm = await client.get("/llama-cpp/raw/ok", timeout=30)  # started on demand
            assert warm.status_code == 200, warm.text
        return server, int(server.url.rsplit(":", 1)[1])

    return start

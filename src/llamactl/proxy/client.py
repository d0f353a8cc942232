"""A small pooled HTTP/1.1 client for the backends, on asyncio protocols and httptools.

The proxy's hot path needs one thing from a client: send a request that is already in
memory to a backend on loopback and hand the response back as it arrives. A general
client spends most of a request's time on features this does not need (cookies,
redirects, tracing, content decoding); this one keeps connections alive per backend,
parses responses with httptools, streams the body with backpressure, and closes the
connection when the caller goes away so that the backend sees the request end.

Framing follows RFC 9112: interim (1xx) responses are skipped; a connection goes back to
the pool only when its response ended exactly where its framing said (nothing after it, no
body on 204/304/HEAD, never a close-delimited one, never after ``Connection: close``); a
body cut short raises ``UpstreamError`` instead of ending quietly; trailer fields are
dropped. The response head is bounded in size (``MAX_HEAD_BYTES``), its status must be
100-599, and the wait for it is bounded by the pool's ``header_timeout``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import cast

import httptools

__all__ = ["MAX_HEAD_BYTES", "ConnectionPool", "Response", "UpstreamError", "UpstreamTimeout"]

_HIGH_WATER = 1024 * 1024  # bytes buffered before the backend is asked to wait
_CONNECT_TIMEOUT = 10.0
MAX_HEAD_BYTES = 64 * 1024  # the response's status line and header section, 1xx included
_FRAMING = (b"content-length", b"transfer-encoding")


class UpstreamError(Exception):
    """The backend could not be reached, broke the connection or sent a broken response."""


class UpstreamTimeout(UpstreamError):
    """The backend sent no response head within the pool's ``header_timeout``."""


@dataclass
class Response:
    """A response whose body is still arriving: iterate ``body()`` to read it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    _connection: _Connection

    def body(self) -> AsyncIterator[bytes]:
        return self._connection.body_chunks()


class _StrayResponse(Exception):
    """Raised inside the parser to stop it at bytes past the end of the response."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: ConnectionPool, key: tuple[str, int]) -> None:
        self._pool = pool
        self._key = key
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head: asyncio.Future[None] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False
        self._wakeup: asyncio.Future[None] | None = None
        self._paused = False
        self._error: Exception | None = None
        self.received_anything = False
        self.reused = False
        self._no_body = False
        self._keep_alive = False
        self._in_head = False  # a response head (final or interim) is being read
        self._head_bytes = 0
        self._interim = False  # the message being parsed is a 1xx
        self._framed = False  # the final head had Content-Length or Transfer-Encoding
        self._dirty = False  # bytes arrived that belong to no request: never reuse
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_anything = True
        if self._head is None or self._complete:
            self._dirty = True  # idle, or past the end of the response: unframed bytes
            return
        head_pending = not self._head.done()
        if head_pending:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._complete:
                self._dirty = True
            else:
                self._fail(UpstreamError(f"invalid response from the backend: {exc}"))
            return
        if head_pending and not self._head.done() and self._head_bytes > MAX_HEAD_BYTES:
            self._fail(
                UpstreamError(f"the backend's response headers exceed {MAX_HEAD_BYTES} bytes")
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        if self._complete:
            return
        if exc is None and self._head is not None and self._head.done() and not self._framed:
            self._complete = True  # a close-delimited body ends with the connection
            self._wake()
            return
        self._fail(UpstreamError(f"the backend closed the connection: {exc or 'EOF'}"))

    # -- httptools callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            self._dirty = True
            raise _StrayResponse  # a second response to one request: stop parsing here
        self._in_head = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:
            return  # a trailer field: dropped, never turned into a header
        name = name.lower()
        if name in _FRAMING:
            self._framed = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        status = self._parser.get_status_code()
        if not 100 <= status <= 599:
            self._fail(UpstreamError(f"the backend sent an invalid status code {status}"))
            return
        if status < 200:
            self._interim = True  # 100, 103...: wait for the final response
            self._headers = []
            self._framed = False
            return
        # Asked here: once the message is complete the parser no longer knows.
        self._keep_alive = self._parser.should_keep_alive()
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        if self._no_body:
            self._complete = True

    def on_body(self, body: bytes) -> None:
        if self._complete:
            self._dirty = True  # a body on a response to HEAD
            return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True
        self._wake()

    # -- use ---------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    async def send(
        self,
        request: bytes,
        *,
        head: bool = False,
        timeout: float | None = None,
        sent: Callable[[], None] | None = None,
    ) -> Response:
        """Write ``request`` (then call ``sent``) and wait for the status line and headers
        (at most ``timeout`` seconds). Cancelled or failed here, the connection is closed."""
        assert self._transport is not None
        # Written first, so that the backend works while the rest is prepared: nothing it
        # answers is read before this coroutine yields.
        self._transport.write(request)
        if sent is not None:
            sent()
        self._reset()
        self._no_body = head  # a response to HEAD has no body, whatever it announces
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        if timeout:
            self._timer = loop.call_later(timeout, self._head_timed_out, timeout)
        try:
            await self._head
        except BaseException:
            self.close()  # the caller left: the backend must see the request end
            raise
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if self._error is not None:
            self.close()
            raise self._error
        return Response(self._parser.get_status_code(), self._headers, self)

    async def body_chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; the connection goes back to the pool at its end."""
        try:
            while True:
                if self._chunks:
                    yield self._take_buffered()
                    continue
                if self._complete:
                    break
                if self._error is not None:
                    raise self._error
                self._wakeup = asyncio.get_running_loop().create_future()
                await self._wakeup
        except BaseException:
            self.close()  # cancelled or failed midway: the backend must see us go
            raise
        self._release()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()
        self._pool.forget(self)

    # -- internals ---------------------------------------------------------------------

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self._chunks.clear()
        self._buffered = 0
        self._complete = False
        self._error = None
        self._keep_alive = False
        self._head_bytes = 0
        self._in_head = False
        self._interim = False
        self._framed = False
        self.received_anything = False

    def _head_timed_out(self, timeout: float) -> None:
        self._timer = None
        self._fail(UpstreamTimeout(f"no response headers within {timeout:g} s"))

    def _release(self) -> None:
        self._head = None  # idle from here: any byte that arrives now is stray
        if self._keep_alive and not self._dirty and self.usable:
            self._pool.give_back(self._key, self)
        else:
            self.close()

    def _take_buffered(self) -> bytes:
        """Everything that has arrived, as one piece: streaming never waits for more, but
        what is already here goes out in one write rather than one per chunk."""
        chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._resume_if_drained()
        return chunk

    def _resume_if_drained(self) -> None:
        if self._paused and self._buffered < _HIGH_WATER // 2 and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def _fail(self, error: Exception) -> None:
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_result(None)
        self._wake()


class ConnectionPool:
    """Idle keep-alive connections per backend address."""

    def __init__(self, header_timeout: float | None = None) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self.header_timeout = header_timeout or None  # seconds; None or 0: no limit

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: bytes | str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        sent: Callable[[], None] | None = None,
    ) -> Response:
        """Send one request; a reused connection that died unanswered is retried once.
        ``sent`` is called once the request is written (again if it is retried).

        ``target`` is written as it is: the caller makes sure it holds no CR, LF or space.
        """
        payload = _encode(host, port, method, target, headers, body)
        head = method == "HEAD"
        timeout = self.header_timeout
        connection = await self._acquire(host, port)
        try:
            return await connection.send(payload, head=head, timeout=timeout, sent=sent)
        except UpstreamTimeout:
            raise
        except UpstreamError:
            if not connection.reused or connection.received_anything:
                raise
        connection = await self._connect(host, port)
        return await connection.send(payload, head=head, timeout=timeout, sent=sent)

    async def _acquire(self, host: str, port: int) -> _Connection:
        idle = self._idle.get((host, port))
        while idle:
            connection = idle.pop()
            if connection.usable:
                connection.reused = True
                return connection
        return await self._connect(host, port)

    async def _connect(self, host: str, port: int) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _transport, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self, (host, port)), host, port),
                _CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            raise UpstreamError(f"cannot connect to {host}:{port}: {exc}") from exc
        self._all.add(connection)
        return connection

    def give_back(self, key: tuple[str, int], connection: _Connection) -> None:
        connection.reused = False
        self._idle.setdefault(key, []).append(connection)

    def forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        for idle in self._idle.values():
            if connection in idle:
                idle.remove(connection)

    def close(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._idle.clear()


def _encode(
    host: str,
    port: int,
    method: str,
    target: bytes | str,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
) -> bytes:
    if isinstance(target, str):
        target = target.encode("latin-1")
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 bracketed
    lines = [
        method.encode("latin-1"),
        b" ",
        target,
        f" HTTP/1.1\r\nHost: {authority}\r\n".encode("latin-1"),
    ]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
    lines.append(body)
    return b"".join(lines)

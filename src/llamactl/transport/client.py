"""A small pooled HTTP/1.1 client for the backends, on asyncio protocols and httptools:
the ``Transport`` for backends on this machine.

The proxy's hot path needs one thing from a client: send a request that is already in
memory to a backend on loopback and hand the response back as it arrives. A general
client spends most of a request's time on features this does not need (cookies,
redirects, tracing, content decoding); this one keeps connections alive per backend,
parses responses with httptools, streams the body with backpressure, and closes the
connection when the caller goes away so that the backend sees the request end.

A response is delivered to a ``Sink`` as the parser reads it, from the connection's
``data_received``: its head, each piece of body, then its end or a failure. Two ways use
that: ``ConnectionPool.request`` buffers the pieces for a coroutine (``Response.body()``),
and ``ConnectionPool.idle`` with ``Exchange.start`` lets a caller that can act on each
piece at once (write it to its client) do so with no task in between.

Framing follows RFC 9112: interim (1xx) responses are skipped; a connection goes back to
the pool only when its response ended exactly where its framing said (nothing after it, no
body on 204/304/HEAD, never a close-delimited one, never after ``Connection: close``); a
body cut short is a failure (``UpstreamError``), never an end; trailer fields are dropped.
The response head is bounded in size (``MAX_HEAD_BYTES``), its status must be 100-599, and
the wait for it is bounded by the pool's ``header_timeout``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol, cast

import httptools

__all__ = [
    "MAX_HEAD_BYTES",
    "ConnectionPool",
    "Exchange",
    "Response",
    "Sink",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]

_HIGH_WATER = 1024 * 1024  # bytes buffered before the backend is asked to wait
_CONNECT_TIMEOUT = 10.0
MAX_HEAD_BYTES = 64 * 1024  # the response's status line and header section, 1xx included
_FRAMING = (b"content-length", b"transfer-encoding")
_CLOSE = ((b"connection", b"close"),)


class UpstreamError(Exception):
    """The backend could not be reached, broke the connection or sent a broken response."""


class UpstreamTimeout(UpstreamError):
    """The backend sent no response head within the pool's ``header_timeout``."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made: nothing of the request was sent."""


class Sink(Protocol):
    """Receives one response as it is read: ``head``, any number of ``data``, then exactly
    one of ``end`` or ``fail`` (``fail`` may also come before ``head``). Called from the
    connection's ``data_received``: a sink must not block, and must not start another
    request on the same connection from these calls."""

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def data(self, chunk: bytes) -> None: ...

    def flush(self) -> None:
        """The pieces of one read have all been given: pass them on as one."""

    def end(self) -> None: ...

    def fail(self, error: UpstreamError) -> None: ...


class _StrayResponse(Exception):
    """Raised inside the parser to stop it at bytes past the end of the response."""


class Exchange(asyncio.Protocol):
    """One keep-alive connection to a backend; one request and its response at a time."""

    def __init__(self, pool: ConnectionPool, key: tuple[str, int]) -> None:
        self._pool = pool
        self._key = key
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._parser_idle = True  # it ended a message itself: ready for the next one
        self._sink: Sink | None = None  # the response being read goes there
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_seen = False
        self._complete = False
        self._paused = False
        self._failed = False
        self.received_anything = False
        self.reused = False
        self._no_body = False
        self._keep_alive = False
        self._in_head = False  # a response head (final or interim) is being read
        self._head_bytes = 0
        self._interim = False  # the message being parsed is a 1xx
        self._framed = False  # the final head had Content-Length or Transfer-Encoding
        self._dirty = False  # bytes arrived that belong to no request: never reuse
        self._last = False  # the request said ``Connection: close``: never reuse
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_anything = True
        if self._sink is None or self._complete:
            self._dirty = True  # idle, or past the end of the response: unframed bytes
            return
        if not self._head_seen:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._complete:
                self._dirty = True
            else:
                self._fail(UpstreamError(f"invalid response from the backend: {exc}"))
                return
        if not self._head_seen and self._head_bytes > MAX_HEAD_BYTES:
            self._fail(
                UpstreamError(f"the backend's response headers exceed {MAX_HEAD_BYTES} bytes")
            )
        elif self._sink is not None:
            self._sink.flush()
            if self._complete:
                self._finish()  # after the parser returned: the connection may be reused

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        if self._sink is None:
            return
        if exc is None and self._head_seen and not self._framed:
            self._complete = True  # a close-delimited body ends with the connection
            self._finish()
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
        self._head_seen = True
        self._cancel_timer()
        if self._sink is not None:
            self._sink.head(status, self._headers)
        if self._no_body:
            self._complete = True

    def on_body(self, body: bytes) -> None:
        if self._complete:
            self._dirty = True  # a body on a response to HEAD
            return
        if self._sink is not None:
            self._sink.data(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._complete = True
        self._parser_idle = True

    # -- use ---------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def start(
        self,
        request: bytes,
        sink: Sink,
        *,
        head: bool = False,
        timeout: float | None = None,
        last: bool = False,
    ) -> None:
        """Write ``request``; its response goes to ``sink``. ``timeout``: seconds to wait
        for the response head before ``sink.fail(UpstreamTimeout(...))``; ``last``: the
        request says ``Connection: close``, so the connection closes after the response."""
        assert self._transport is not None and self._sink is None
        self._reset()
        self._last = last
        self._sink = sink
        self._no_body = head  # a response to HEAD has no body, whatever it announces
        if self._transport.is_closing():  # closed by the backend since it was connected
            self._fail(UpstreamError("the backend closed the connection before the request"))
            return
        self._transport.write(request)
        if timeout:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(timeout, self._head_timed_out, timeout)

    def pause_reading(self) -> None:
        """Ask the backend to wait (the response's reader is behind)."""
        if not self._paused and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def resume_reading(self) -> None:
        if self._paused and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False

    def abandon(self) -> None:
        """The response's reader went away: close, so that the backend sees the request
        end. Nothing more reaches the sink."""
        if self._sink is not None:
            self._sink = None
            self.close()

    def close(self) -> None:
        self._cancel_timer()
        if self._transport is not None:
            self._transport.abort()
        self._pool.forget(self)

    # -- internals ---------------------------------------------------------------------

    def _reset(self) -> None:
        if not self._parser_idle:
            self._parser = httptools.HttpResponseParser(self)
        self._parser_idle = False
        self._headers = []
        self._head_seen = False
        self._complete = False
        self._failed = False
        self._keep_alive = False
        self._head_bytes = 0
        self._in_head = False
        self._interim = False
        self._framed = False
        self.received_anything = False

    def _head_timed_out(self, timeout: float) -> None:
        self._timer = None
        self._fail(UpstreamTimeout(f"no response headers within {timeout:g} s"))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self) -> None:
        sink, self._sink = self._sink, None
        self.resume_reading()
        if self._keep_alive and not self._dirty and not self._last and self.usable:
            self._pool.give_back(self._key, self)
        else:
            self.close()
        if sink is not None:
            sink.end()

    def _fail(self, error: UpstreamError) -> None:
        sink, self._sink = self._sink, None
        self.close()
        if sink is not None:
            sink.fail(error)


class _Buffered:
    """A sink that keeps the response for a coroutine: ``wait_head`` then ``chunks``."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange: Exchange | None = exchange
        self._head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = False
        self._error: UpstreamError | None = None
        self._wakeup: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []

    # -- Sink --------------------------------------------------------------------------

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.headers = headers
        if not self._head.done():
            self._head.set_result(None)

    def data(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _HIGH_WATER and self._exchange is not None:
            self._exchange.pause_reading()
        self._wake()

    def flush(self) -> None:
        """Nothing to do: ``chunks`` takes whatever has arrived in one piece."""

    def end(self) -> None:
        self._exchange = None
        self._done = True
        self._wake()

    def fail(self, error: UpstreamError) -> None:
        self._exchange = None
        self._error = error
        if not self._head.done():
            self._head.set_result(None)
        self._wake()

    # -- reading -----------------------------------------------------------------------

    async def wait_head(self) -> None:
        """Wait for the head; cancelled here, the connection is closed."""
        try:
            await self._head
        except BaseException:
            self._abandon()
            raise
        if self._error is not None and not self.status:
            raise self._error

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; ``UpstreamError`` if it is cut short."""
        try:
            while True:
                if self._chunks:
                    yield self._take_buffered()
                    continue
                if self._error is not None:
                    raise self._error
                if self._done:
                    return
                self._wakeup = asyncio.get_running_loop().create_future()
                await self._wakeup
        except BaseException:
            self._abandon()  # cancelled or failed midway: the backend must see us go
            raise

    def _take_buffered(self) -> bytes:
        """Everything that has arrived, as one piece: streaming never waits for more, but
        what is already here goes out in one write rather than one per chunk."""
        chunk = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        if self._exchange is not None:
            self._exchange.resume_reading()
        return chunk

    def _abandon(self) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.abandon()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


class Response:
    """A response whose body is still arriving: iterate ``body()`` to read it."""

    def __init__(self, sink: _Buffered) -> None:
        self.status = sink.status
        self.headers = sink.headers
        self._sink = sink

    def body(self) -> AsyncIterator[bytes]:
        return self._sink.chunks()


class ConnectionPool:
    """Idle keep-alive connections per backend address."""

    def __init__(
        self,
        header_timeout: float | None = None,
        *,
        tls: ssl.SSLContext | None = None,
        connect_timeout: float = _CONNECT_TIMEOUT,
    ) -> None:
        """``tls``: speak TLS with this context (another node at an https address)."""
        self._idle: dict[tuple[str, int], list[Exchange]] = {}
        self._all: set[Exchange] = set()
        self.header_timeout = header_timeout or None  # seconds; None or 0: no limit
        self._tls = tls
        self._connect_timeout = connect_timeout

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: bytes | str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        sent: Callable[[], None] | None = None,
        last: bool = False,
    ) -> Response:
        """Send one request; a reused connection that died unanswered is retried once.
        ``sent`` is called once the request is written (again if it is retried).

        ``target`` is written as it is: the caller makes sure it holds no CR, LF or space.
        ``last``: ``headers`` say ``Connection: close``, so the connection is not reused.
        """
        payload = encode_request(host, port, method, target, headers, body)
        exchange = self.idle(host, port) or await self._connect(host, port)
        try:
            return await self._send(exchange, payload, method, sent, last)
        except UpstreamTimeout:
            raise
        except UpstreamError:
            if not exchange.reused or exchange.received_anything:
                raise
        return await self._send(await self._connect(host, port), payload, method, sent, last)

    async def _send(
        self,
        exchange: Exchange,
        payload: bytes,
        method: str,
        sent: Callable[[], None] | None,
        last: bool,
    ) -> Response:
        sink = _Buffered(exchange)
        timeout = self.header_timeout
        exchange.start(payload, sink, head=method == "HEAD", timeout=timeout, last=last)
        if sent is not None:
            sent()
        await sink.wait_head()
        return Response(sink)

    def idle(self, host: str, port: int) -> Exchange | None:
        """An idle keep-alive connection to ``host:port``, taken from the pool, if any."""
        idle = self._idle.get((host, port))
        while idle:
            exchange = idle.pop()
            if exchange.usable:
                exchange.reused = True
                return exchange
        return None

    async def connect(self, host: str, port: int) -> Exchange:
        """A new connection to ``host:port``; ``UpstreamError`` if it cannot be made."""
        return await self._connect(host, port)

    async def _connect(self, host: str, port: int) -> Exchange:
        loop = asyncio.get_running_loop()
        tls = self._tls
        try:
            _transport, exchange = await asyncio.wait_for(
                loop.create_connection(
                    lambda: Exchange(self, (host, port)),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls is not None else None,
                ),
                self._connect_timeout,
            )
        except TimeoutError as exc:
            raise UpstreamUnreachable(
                f"cannot connect to {host}:{port}: no answer in {self._connect_timeout:g} s"
            ) from exc
        except OSError as exc:  # ssl.SSLError included
            raise UpstreamUnreachable(f"cannot connect to {host}:{port}: {exc}") from exc
        self._all.add(exchange)
        return exchange

    def give_back(self, key: tuple[str, int], exchange: Exchange) -> None:
        exchange.reused = False
        self._idle.setdefault(key, []).append(exchange)

    def forget(self, exchange: Exchange) -> None:
        self._all.discard(exchange)
        for idle in self._idle.values():
            if exchange in idle:
                idle.remove(exchange)

    async def probe(self, host: str, port: int, path: str, timeout: float) -> int | None:
        """The status of ``GET path``, its body read and dropped; ``None`` if it cannot
        connect, fails, or takes longer than ``timeout``. Each probe has a connection of
        its own (``Connection: close``): a backend with few HTTP threads keeps them for
        requests, and no idle connection of the probe's goes stale between probes."""
        try:
            async with asyncio.timeout(timeout):
                response = await self.request(host, port, "GET", path, _CLOSE, b"", last=True)
                async for _chunk in response.body():
                    pass
        except (UpstreamError, TimeoutError):
            return None
        return response.status

    def close(self) -> None:
        for exchange in list(self._all):
            exchange.close()
        self._idle.clear()


def encode_request(
    host: str,
    port: int,
    method: str,
    target: bytes | str,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
) -> bytes:
    """The request's bytes: request line, ``Host``, ``headers``, ``Content-Length``, body."""
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

"""The client side of the proxy: one pool of keep-alive connections for every backend.

Requests are relayed with their path and body; responses stream back chunk by chunk as
the backend writes them. Hop-by-hop headers are dropped both ways, llamactl's own API key
headers never reach a backend, and a backend's CORS headers are dropped so that
llamactl's CORS settings are the only ones. The backend's ``Server`` and ``Date`` are
dropped too (the server in front sets its own), as nginx does.

A response the backend cuts off midway is never made to look complete: the client's
response is left unfinished, so the server closes the client connection without the
terminating chunk (a chunked response) or short of its Content-Length, and the cut is
logged as a backend failure.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from llamactl.errors import BackendFailed, GatewayTimeout, LlamactlError
from llamactl.observe import Tally
from llamactl.proxy.asgi import Send
from llamactl.transport import (
    ConnectionPool,
    Exchange,
    Response,
    Transport,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
    encode_request,
)
from llamactl.transport.nodes import HOP_HEADER

_log = logging.getLogger(__name__)

__all__ = [
    "NotConnected",
    "Relay",
    "Responder",
    "Upstream",
    "request_headers",
    "response_headers",
]

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set again by the client library, or llamactl's own credentials.
_NOT_FORWARDED = _HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"authorization",
    b"x-api-key",
    HOP_HEADER.encode("latin-1"),
}
_NOT_RETURNED = _HOP_BY_HOP | {
    b"server",
    b"date",
    b"access-control-allow-origin",
    b"access-control-allow-methods",
    b"access-control-allow-headers",
    b"access-control-allow-credentials",
    b"access-control-max-age",
    b"access-control-expose-headers",
}


def request_headers(
    raw: Iterable[tuple[bytes, bytes]], api_key: str | None = None
) -> list[tuple[bytes, bytes]]:
    """The client's headers to pass on; the backend's own key when the instance has one."""
    headers = [(name, value) for name, value in raw if name not in _NOT_FORWARDED]
    if api_key:
        headers.append((b"authorization", b"Bearer " + api_key.encode("latin-1")))
    return headers


def response_headers(
    raw: Iterable[tuple[bytes, bytes]], extra: Iterable[tuple[bytes, bytes]] = ()
) -> list[tuple[bytes, bytes]]:
    """The backend's headers to return, without hop-by-hop and CORS ones, then ``extra``."""
    return [*((key, value) for key, value in raw if key not in _NOT_RETURNED), *extra]


class Responder(Protocol):
    """The client's side of a ``Relay``: writes its response as soon as a piece is known.

    Called from the event loop's callbacks, so nothing here may wait. ``write`` returns
    whether the client can take more now; when it cannot, the responder keeps what it was
    given and calls the relay's ``resume`` once the client has caught up, and ``gone`` if
    the client disconnects.
    """

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None: ...

    def write(self, chunk: bytes, more: bool) -> bool: ...

    def abort(self) -> None:
        """End the client's connection with its response unfinished."""

    def error(self, exc: LlamactlError) -> None:
        """Answer ``exc`` in the route's error shape (no response has started)."""

    def retry(self) -> None:
        """Handle the request again from the start, the ordinary way (nothing was sent)."""


# Checks a response's status before anything of it is sent to the client: the error to
# answer instead, or None to relay it.
HeadCheck = Callable[[int, bytes], LlamactlError | None]


class Relay:
    """One request relayed with no task in between: the backend's response is written to
    the ``Responder`` piece by piece as the connection reads it (a ``Sink``).

    Failures are handled as ``Upstream.relay`` handles them: a reused connection that died
    unanswered is retried (the ordinary way), no head in time is a 504, a broken head a
    502, a body cut off midway leaves the client's response unfinished. ``done`` is called
    exactly once, when the exchange is over whichever way it ended. A head whose status is
    in ``checked`` goes to ``check`` first: the error it returns is answered instead of
    the response (which is read to its end and dropped). ``tally``, if given, learns the
    status and the body pieces, and is finished after ``done`` (discarded on a retry).
    """

    def __init__(
        self,
        responder: Responder,
        exchange: Exchange,
        extra_headers: Sequence[tuple[bytes, bytes]],
        name: str,
        done: Callable[[], None],
        check: HeadCheck | None = None,
        checked: frozenset[int] = frozenset(),
        tally: Tally | None = None,
    ) -> None:
        self._responder = responder
        self._exchange: Exchange | None = exchange
        self._extra = extra_headers
        self._name = name
        self._done: Callable[[], None] | None = done
        self._started = False
        self._pieces: list[bytes] = []  # the body pieces of the read being parsed
        self._check = check
        self._checked = checked
        self._refused: LlamactlError | None = None
        self._tally = tally

    # -- Sink (from the backend's connection) ------------------------------------------

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if self._check is not None and status in self._checked:
            self._refused = self._check(status, b"")
            if self._refused is not None:
                return
        self._started = True
        if self._tally is not None:
            self._tally.head(status, headers)
        self._guarded(self._responder.start, status, response_headers(headers, self._extra))

    def data(self, chunk: bytes) -> None:
        if self._refused is None:
            self._pieces.append(chunk)  # written at the end of the read (``flush``)

    def flush(self) -> None:
        pieces = self._pieces
        if not pieces:
            return
        chunk = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        if self._tally is not None:
            self._tally.chunk(chunk)
        try:
            more = self._responder.write(chunk, True)
        except Exception:
            self._broken()
            return
        if not more and self._exchange is not None:
            self._exchange.pause_reading()

    def end(self) -> None:
        self.flush()
        if self._done is None:
            return  # the flush failed: both connections are closed already
        self._exchange = None
        if self._refused is not None:
            self._answer(self._refused)
            return
        self._guarded(self._responder.write, b"", False)
        self._finish()

    def fail(self, error: UpstreamError) -> None:
        self.flush()  # what came before the failure reaches the client
        if self._done is None:
            return  # the flush failed: both connections are closed already
        exchange, self._exchange = self._exchange, None
        if self._refused is not None:
            self._answer(self._refused)
        elif self._started:
            self._finish()
            _log.warning("the backend of %s cut its response off: %s", self._name, error)
            self._responder.abort()
        elif isinstance(error, UpstreamTimeout):
            self._answer(GatewayTimeout(f"the backend of {self._name} did not answer: {error}"))
        elif exchange is not None and exchange.reused and not exchange.received_anything:
            if self._tally is not None:
                self._tally.discard()  # the ordinary path counts it
            self._finish()
            self._responder.retry()  # a kept-alive connection the backend had closed
        else:
            self._answer(BackendFailed(f"the backend of {self._name} failed: {error}"))

    # -- from the client's side --------------------------------------------------------

    def resume(self) -> None:
        """The client caught up: read from the backend again."""
        if self._exchange is not None:
            self._exchange.resume_reading()

    def gone(self) -> None:
        """The client disconnected: the backend must see the request end."""
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            exchange.abandon()
        self._finish()

    # -- internals ---------------------------------------------------------------------

    def _guarded(self, write: Callable[..., object], *args: object) -> None:
        """Call the responder; see ``_broken``."""
        try:
            write(*args)
        except Exception:
            self._broken()

    def _broken(self) -> None:
        """The responder failed unexpectedly: both connections end (as the ordinary path's
        response would), logged with the traceback."""
        _log.exception("relaying the response of %s failed", self._name)
        self.gone()
        self._responder.abort()

    def _answer(self, exc: LlamactlError) -> None:
        """End the exchange and answer ``exc`` instead of a response."""
        if self._tally is not None:
            self._tally.answered(exc.status)
        self._finish()
        self._responder.error(exc)

    def _finish(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()
            if self._tally is not None:
                self._tally.finish()


class NotConnected(BackendFailed):
    """No connection to the backend (or node) could be made: nothing of the request was
    sent, so another one may take it."""


class Upstream:
    """The backends' side of the proxy, over a ``Transport``."""

    def __init__(
        self, header_timeout: float | None = None, transport: Transport | None = None
    ) -> None:
        """``header_timeout``: seconds to wait for a response head (None or 0: no limit),
        for the default transport (a pool of loopback connections)."""
        self._pool: Transport = transport or ConnectionPool(header_timeout)

    async def open(self) -> None:
        """Nothing to prepare: connections are opened on first use."""

    async def aclose(self) -> None:
        self._pool.close()

    def relay_now(
        self,
        responder: Responder,
        *,
        method: str,
        host: str,
        port: int,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        extra_headers: Sequence[tuple[bytes, bytes]],
        name: str,
        done: Callable[[], None],
        transport: Transport | None = None,
        check: HeadCheck | None = None,
        checked: frozenset[int] = frozenset(),
        tally: Tally | None = None,
    ) -> Relay | None:
        """Send the request on an idle kept-alive connection, if there is one, and relay
        its response to ``responder`` as it arrives (see ``Relay``); ``None``, having sent
        nothing, when there is no idle connection to the backend. ``transport``,
        ``check``, ``checked`` and ``tally`` as for ``relay``."""
        pool = transport or self._pool
        exchange = pool.idle(host, port)
        if exchange is None:
            return None
        relay = Relay(responder, exchange, extra_headers, name, done, check, checked, tally)
        exchange.start(
            encode_request(host, port, method, target, headers, body),
            relay,
            head=method == "HEAD",
            timeout=pool.header_timeout,
        )
        return relay

    async def relay(
        self,
        send: Send,
        *,
        method: str,
        host: str,
        port: int,
        target: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        name: str = "",
        sent: Callable[[], None] | None = None,
        transport: Transport | None = None,
        check: HeadCheck | None = None,
        checked: frozenset[int] = frozenset(),
        tally: Tally | None = None,
    ) -> None:
        """Send the request to the backend and stream its response to the ASGI ``send``;
        ``sent`` is called as soon as the request is written.

        ``GatewayTimeout`` (504) when no response head comes in time, ``BackendFailed``
        (502) when the backend cannot be reached or answers with a broken head; a body cut
        off midway leaves the client's response unfinished (see the module docstring);
        ``NotConnected`` (a 502) when no connection could be made at all.

        ``transport``: another than the default one (a node's). ``check(status, body)``
        sees a response whose status is in ``checked``, read whole, before anything is
        sent: the error it returns is raised instead. ``tally`` learns the status and the
        body pieces sent.
        """
        try:
            response = await (transport or self._pool).request(
                host, port, method, target, headers, body, sent=sent
            )
        except UpstreamTimeout as exc:
            raise GatewayTimeout(f"the backend of {name} did not answer: {exc}") from exc
        except UpstreamUnreachable as exc:
            raise NotConnected(f"the backend of {name} failed: {exc}") from exc
        except UpstreamError as exc:
            raise BackendFailed(f"the backend of {name} failed: {exc}") from exc
        whole: bytes | None = None
        if check is not None and response.status in checked:
            whole = await _whole(response)
            refused = check(response.status, whole)
            if refused is not None:
                raise refused
        if tally is not None:
            tally.head(response.status, response.headers)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": response_headers(response.headers, extra_headers),
            }
        )
        if whole is not None:
            if tally is not None:
                tally.chunk(whole)
            await send({"type": "http.response.body", "body": whole, "more_body": False})
            return
        try:
            async for chunk in response.body():
                if tally is not None:
                    tally.chunk(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            # Not ended: the server then closes the client's connection mid-response.
            _log.warning("the backend of %s cut its response off: %s", name, exc)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _whole(response: Response) -> bytes:
    """A (small, error) response's body; what arrived if it is cut off."""
    pieces = []
    try:
        async for chunk in response.body():
            pieces.append(chunk)
    except UpstreamError:
        pass
    return b"".join(pieces)

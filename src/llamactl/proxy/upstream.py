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

from llamactl.errors import BackendFailed, GatewayTimeout
from llamactl.proxy.asgi import Send
from llamactl.proxy.client import ConnectionPool, UpstreamError, UpstreamTimeout

_log = logging.getLogger(__name__)

__all__ = ["Upstream", "request_headers", "response_headers"]

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


class Upstream:
    """The backends' side of the proxy: a pool of keep-alive connections."""

    def __init__(self, header_timeout: float | None = None) -> None:
        """``header_timeout``: seconds to wait for a response head (None or 0: no limit)."""
        self._pool = ConnectionPool(header_timeout)

    async def open(self) -> None:
        """Nothing to prepare: connections are opened on first use."""

    async def aclose(self) -> None:
        self._pool.close()

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
    ) -> None:
        """Send the request to the backend and stream its response to the ASGI ``send``;
        ``sent`` is called as soon as the request is written.

        ``GatewayTimeout`` (504) when no response head comes in time, ``BackendFailed``
        (502) when the backend cannot be reached or answers with a broken head; a body cut
        off midway leaves the client's response unfinished (see the module docstring).
        """
        try:
            response = await self._pool.request(
                host, port, method, target, headers, body, sent=sent
            )
        except UpstreamTimeout as exc:
            raise GatewayTimeout(f"the backend of {name} did not answer: {exc}") from exc
        except UpstreamError as exc:
            raise BackendFailed(f"the backend of {name} failed: {exc}") from exc
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": response_headers(response.headers, extra_headers),
            }
        )
        try:
            async for chunk in response.body():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except UpstreamError as exc:
            # Not ended: the server then closes the client's connection mid-response.
            _log.warning("the backend of %s cut its response off: %s", name, exc)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})

"""The client side of the proxy: one pool of keep-alive connections for every backend.

Requests are relayed with their path and body; responses stream back chunk by chunk as
the backend writes them. Hop-by-hop headers are dropped both ways, llamactl's own API key
headers never reach a backend, and a backend's CORS headers are dropped so that
llamactl's CORS settings are the only ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from llamactl.errors import BackendFailed
from llamactl.proxy.asgi import Send
from llamactl.proxy.client import ConnectionPool, UpstreamError

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

    def __init__(self) -> None:
        self._pool = ConnectionPool()

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
        target: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        name: str = "",
    ) -> None:
        """Send the request to the backend and stream its response to the ASGI ``send``."""
        try:
            response = await self._pool.request(host, port, method, target, headers, body)
        except UpstreamError as exc:
            raise BackendFailed(f"the backend of {name} is not reachable: {exc}") from exc
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
        except UpstreamError:
            pass  # the backend went away mid-response: end what the client has
        await send({"type": "http.response.body", "body": b"", "more_body": False})

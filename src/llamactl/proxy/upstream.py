"""The client side of the proxy: one pooled aiohttp session for every backend.

Requests are relayed with their path and body; responses stream back chunk by chunk as
the backend writes them. Hop-by-hop headers are dropped both ways, llamactl's own API key
headers never reach a backend, and a backend's CORS headers are dropped so that
llamactl's CORS settings are the only ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import aiohttp

from llamactl.errors import BackendFailed
from llamactl.proxy.asgi import Send

__all__ = ["Upstream", "request_headers"]

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
_CONNECT_TIMEOUT = 10.0


def request_headers(
    raw: Iterable[tuple[bytes, bytes]], api_key: str | None = None
) -> list[tuple[str, str]]:
    """The client's headers to pass on; the backend's own key when the instance has one."""
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in raw
        if name not in _NOT_FORWARDED
    ]
    if api_key:
        headers.append(("Authorization", f"Bearer {api_key}"))
    return headers


class Upstream:
    """The pooled HTTP client. ``open`` and ``aclose`` run in the server's event loop."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def relay(
        self,
        send: Send,
        *,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        name: str = "",
    ) -> None:
        """Send the request to ``url`` and stream the response to the ASGI ``send``."""
        if self._session is None:
            await self.open()
        assert self._session is not None
        try:
            response = await self._session.request(
                method, url, headers=list(headers), data=body or None, allow_redirects=False
            )
        except aiohttp.ClientError as exc:
            raise BackendFailed(f"the backend of {name or url} is not reachable: {exc}") from exc
        async with response:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status,
                    "headers": [
                        *(
                            (key.lower(), value)
                            for key, value in response.raw_headers
                            if key.lower() not in _NOT_RETURNED
                        ),
                        *extra_headers,
                    ],
                }
            )
            try:
                async for chunk in response.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except aiohttp.ClientError:
                pass  # the backend went away mid-response: end what the client has
            await send({"type": "http.response.body", "body": b"", "more_body": False})

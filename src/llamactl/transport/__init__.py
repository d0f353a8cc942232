"""How llamactl talks HTTP to backends: one small interface, ``Transport``.

The proxy relays requests through it and the manager probes backends' health through it.
``ConnectionPool`` (``transport.client``) is the implementation for backends on this
machine: pooled keep-alive HTTP/1.1 connections over plain TCP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from llamactl.transport.client import (
    ConnectionPool,
    Exchange,
    Response,
    Sink,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnreachable,
    encode_request,
)

__all__ = [
    "ConnectionPool",
    "Exchange",
    "Response",
    "Sink",
    "Transport",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "encode_request",
]


class Transport(Protocol):
    """Requests to backends, and their health."""

    header_timeout: float | None  # seconds to wait for a response head; None: no limit

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
        """Send one request and return its response once the head has arrived."""

    def idle(self, host: str, port: int) -> Exchange | None:
        """A connection to ``host:port`` that can take a request at once, if there is one."""

    async def probe(self, host: str, port: int, path: str, timeout: float) -> int | None:
        """The status of ``GET path``, or ``None`` if nothing answers within ``timeout``."""

    def close(self) -> None:
        """Close every connection."""

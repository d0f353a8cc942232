"""Calls to other llamactl nodes: their management API, and where to relay inference.

A ``NodeClient`` talks to one node at its configured base URL with the node's key. Every
call, and every request relayed to the node, carries ``HOP_HEADER`` with this node's name.
A request that arrived with that header (``forwarded_by`` holds its value while it is
served) is never sent on to another node: requests travel one hop at most, so a loop in
the configuration ends with ``ForwardingLoop`` instead of a storm.

Failures come back as llamactl errors that name the node: ``NodeUnreachable`` (503) when
no connection can be made or the node stops answering, ``NodeRefusedKey`` (502) for a
401 or 403, ``NodeFailed`` for any other error status, with the node's own message.
"""

from __future__ import annotations

import contextvars
import json
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from llamactl.errors import ForwardingLoop, NodeFailed, NodeRefusedKey, NodeUnreachable
from llamactl.transport.client import ConnectionPool

__all__ = [
    "HOP_HEADER",
    "NodeAddress",
    "NodeClient",
    "check_one_hop",
    "forwarded_by",
    "sender",
]

HOP_HEADER = "x-llamactl-forwarded-by"
# The node that forwarded the request being served, if one did (set by the server).
forwarded_by: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "llamactl_forwarded_by", default=None
)


_HOP = HOP_HEADER.encode("latin-1")


def sender(headers: Iterable[Sequence[bytes]]) -> str | None:
    """The node that forwarded a request, from its raw headers (``HOP_HEADER``), if one did."""
    for key, value in headers:
        if key == _HOP:
            return bytes(value).decode("latin-1") or "?"
    return None


def check_one_hop(node: str) -> None:
    """``ForwardingLoop`` if the request being served came from another node: it may not
    go on to ``node``."""
    sender = forwarded_by.get()
    if sender is not None:
        raise ForwardingLoop(
            f"node {sender} forwarded this request here, and it would go on to node {node}: "
            "requests travel one hop at most. Check local_node and nodes on both: an "
            "instance's nodes must name the node that runs it by that node's local_node"
        )


@dataclass(frozen=True)
class NodeAddress:
    """Where a node listens: ``http(s)://host:port`` and an optional path prefix."""

    url: str
    host: str
    port: int
    tls: bool
    prefix: str  # "" or "/under/here", put before every path

    @classmethod
    def parse(cls, url: str) -> NodeAddress:
        parts = urllib.parse.urlsplit(url)
        tls = parts.scheme == "https"
        host = parts.hostname or ""
        return cls(url, host, parts.port or (443 if tls else 80), tls, parts.path.rstrip("/"))


class NodeClient:
    """One other node: its management API over httpx, and a pool for relaying to it."""

    def __init__(
        self,
        name: str,
        url: str,
        api_key: str | None,
        *,
        local_node: str,
        ca_file: str = "",
        connect_timeout: float,
        request_timeout: float,
        header_timeout: float | None,
    ) -> None:
        self.name = name
        self.address = NodeAddress.parse(url)
        headers = {HOP_HEADER: local_node}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._request_timeout = request_timeout
        # One trust for both clients: the system's certificates, or those of ca_file.
        tls = ssl.create_default_context(cafile=ca_file or None) if self.address.tls else None
        self._http = httpx.AsyncClient(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(request_timeout, connect=connect_timeout),
            verify=tls if tls is not None else True,
        )
        self.pool = ConnectionPool(header_timeout, tls=tls, connect_timeout=connect_timeout)
        # What every relayed request carries: the node's key and the hop.
        self.relay_headers: tuple[tuple[bytes, bytes], ...] = tuple(
            (key.encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, object] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """The node's successful answer to ``method path`` (under ``/api/v1``)."""
        check_one_hop(self.name)
        try:
            response = await self._http.request(
                method,
                f"/api/v1{path}",
                json=body,
                params=params,
                timeout=timeout if timeout is not None else self._request_timeout,
            )
        except httpx.TimeoutException as exc:
            raise self._unreachable(f"no answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise self._unreachable(str(exc) or type(exc).__name__) from exc
        if response.is_error:
            raise self.refusal(response.status_code, response.content)
        return response

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """``call``, and the answer's JSON."""
        response = await self.call(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise NodeFailed(f"node {self.name} answered {path} with no JSON") from exc

    async def version(self) -> tuple[str, float]:
        """The node's llamactl version and the round trip in seconds."""
        began = time.monotonic()
        response = await self.call("GET", "/version")
        took = time.monotonic() - began
        for line in response.text.splitlines():
            label, _, value = line.partition(":")
            if label.strip().lower() == "version":
                return value.strip(), took
        return response.text.strip()[:40], took

    @asynccontextmanager
    async def stream(
        self, path: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        """The body of ``GET path`` as it arrives (no limit on the wait between pieces)."""
        check_one_hop(self.name)
        timeout = httpx.Timeout(self._request_timeout, read=None)
        try:
            async with self._http.stream(
                "GET", f"/api/v1{path}", params=params, timeout=timeout
            ) as response:
                if response.is_error:
                    raise self.refusal(response.status_code, await response.aread())
                yield self._pieces(response)
        except httpx.TimeoutException as exc:
            raise self._unreachable(f"no answer in time ({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise self._unreachable(str(exc) or type(exc).__name__) from exc

    async def _pieces(self, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            async for piece in response.aiter_raw():
                yield piece
        except httpx.TransportError as exc:
            raise self._unreachable(str(exc) or type(exc).__name__) from exc

    def refusal(self, status: int, body: bytes) -> NodeFailed:
        """The error for a node's error answer (``status`` and its body)."""
        code, message = _error_of(body)
        if status in (401, 403):
            return NodeRefusedKey(
                f"node {self.name} refused the key in nodes.{self.name}.api_key "
                f"({status}: {message})"
            )
        if status >= 500:
            outward = status if status in (503, 504, 508) else 502
            return NodeFailed(f"node {self.name} failed: {message}", status=outward, code=code)
        return NodeFailed(f"node {self.name}: {message}", status=status, code=code)

    def unreachable(self, reason: str) -> NodeUnreachable:
        return self._unreachable(reason)

    def _unreachable(self, reason: str) -> NodeUnreachable:
        return NodeUnreachable(
            f"node {self.name} ({self.address.url}) cannot be reached: {reason}", retry_after=5
        )

    async def aclose(self) -> None:
        self.pool.close()
        await self._http.aclose()


def _error_of(body: bytes) -> tuple[str | None, str]:
    """The code and message of a llamactl error body (either shape), or the text itself."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        code = error.get("code")
        return (code if isinstance(code, str) else None), error["message"]
    text = body.decode("utf-8", "replace").strip()
    return None, text[:300] or "no message"

"""What every management request must pass before a route sees it.

``ManagementGuard`` wraps the management application (the API, the dashboard, the docs):

- **Body size.** ``server.max_request_body_mb`` holds on every route: a declared
  ``Content-Length`` beyond it is answered 413 at once, without reading the body, and a
  body read past it (chunked, or longer than declared) ends in 413 as soon as the limit is
  crossed. Either 413 closes the connection, so the rest of the body is never read.
- **JSON bodies.** A state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) that
  has a body must send it as ``application/json`` (415 otherwise). A browser sends a
  cross-site ``text/plain`` or form body without asking first; it cannot send
  ``application/json`` without a CORS preflight. Requests without a body (start, stop,
  delete from curl or the CLI) need no content type.
- **Origin.** With management auth off there is no key to prove that a request was meant,
  so a request carrying a foreign ``Origin`` is refused (403): only pages served by this
  llamactl (the ``Origin`` matches the ``Host``) and origins listed one by one in
  ``server.allowed_origins`` may call the API; ``*`` lets any page read CORS answers of
  the proxy but opens no management route to them. Clients that are not browsers send no
  ``Origin`` and pass. With management auth on, the key is the defence: a browser never
  adds it to a request by itself.

``OriginPolicy`` is the last check alone, for the per-instance proxy, which is a
management route served by the proxy. Refusals are rendered in the management error
shape. Nothing here reads a body it does not pass on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamactl.errors import ForeignOrigin, LlamactlError, PayloadTooLarge, UnsupportedMediaType
from llamactl.server.errors import error_response

__all__ = ["ManagementGuard", "OriginPolicy", "refuse"]

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}


class OriginPolicy:
    """Which browser origins may call management routes; see the module docstring."""

    def __init__(self, allowed_origins: Iterable[str], *, enforced: bool) -> None:
        self.enforced = enforced
        self._listed = frozenset(
            _normal_origin(origin) for origin in allowed_origins if origin.strip() != "*"
        )

    def refusal(self, scope: Scope) -> ForeignOrigin | None:
        """The error for a request from a foreign origin, or ``None`` if it may pass."""
        if not self.enforced:
            return None
        origin = _header(scope, b"origin")
        if origin is None:
            return None
        text = origin.decode("latin-1")
        if _normal_origin(text) in self._listed or self._is_same_origin(text, scope):
            return None
        return ForeignOrigin(
            f"{scope.get('method', 'GET')} {scope['path']} from a web page at {text!r} is"
            " refused: management auth is off, so only llamactl's own pages and the origins"
            " listed in server.allowed_origins may use the management API"
        )

    @staticmethod
    def _is_same_origin(origin: str, scope: Scope) -> bool:
        host = _header(scope, b"host")
        if host is None:
            return False
        parts = urlsplit(origin)
        if parts.scheme not in _DEFAULT_PORTS or not parts.netloc:
            return False  # "null" (a sandboxed or local file page) and the like
        return _host_port(parts.netloc, parts.scheme) == _host_port(
            host.decode("latin-1"), parts.scheme
        )


class ManagementGuard:
    """Body size, JSON bodies and origins for the management application."""

    def __init__(self, app: ASGIApp, *, body_limit: int, origins: OriginPolicy) -> None:
        self.app = app
        self.body_limit = body_limit
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._refusal(scope)
        if refused is not None:
            await refuse(scope, receive, send, refused)
            return
        if not _has_body(scope):
            await self.app(scope, receive, send)
            return
        await _LimitedBody(self.app, self.body_limit)(scope, receive, send)

    def _refusal(self, scope: Scope) -> LlamactlError | None:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.body_limit:
            return _too_large(self.body_limit)
        refused = self.origins.refusal(scope)
        if refused is not None:
            return refused
        if scope["method"] in _WRITES and _has_body(scope):
            return _media_type_refusal(scope)
        return None


class _LimitedBody:
    """One request whose body may not grow past ``limit`` bytes while it is read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.received = 0
        self.exceeded = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.limit:
                    self.exceeded = True
                    raise _too_large(self.limit)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and self.exceeded:
                message = {**message, "headers": [*message["headers"], (b"connection", b"close")]}
            await send(message)

        await self.app(scope, limited_receive, closing_send)


async def refuse(scope: Scope, receive: Receive, send: Send, exc: LlamactlError) -> None:
    """Answer ``exc`` in the management shape; a 413 also closes the connection."""
    headers = {"Connection": "close"} if isinstance(exc, PayloadTooLarge) else None
    await error_response(exc.status, exc.code, exc.message, headers=headers)(scope, receive, send)


def _media_type_refusal(scope: Scope) -> UnsupportedMediaType | None:
    raw = _header(scope, b"content-type")
    media_type = b"" if raw is None else raw.split(b";", 1)[0].strip().lower()
    if media_type == b"application/json":
        return None
    got = "no Content-Type" if raw is None else repr(raw.decode("latin-1"))
    return UnsupportedMediaType(
        f"{scope['method']} {scope['path']}: a request body must be JSON sent with"
        f" Content-Type: application/json, got {got}"
    )


def _too_large(limit: int) -> PayloadTooLarge:
    megabytes = limit // (1024 * 1024)
    return PayloadTooLarge(
        f"the request body is larger than {megabytes} MB (server.max_request_body_mb)"
    )


def _has_body(scope: Scope) -> bool:
    declared = _header(scope, b"content-length")
    if declared is not None:
        return declared.strip() not in (b"", b"0")
    return _header(scope, b"transfer-encoding") is not None


def _header(scope: Scope, name: bytes) -> bytes | None:
    headers: Sequence[tuple[bytes, bytes]] = scope["headers"]
    for key, value in headers:
        if key == name:
            return value
    return None


def _normal_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _host_port(netloc: str, scheme: str) -> str:
    """``host:port`` in lower case, with the scheme's default port made explicit."""
    netloc = netloc.strip().lower()
    if netloc.endswith("]") or ":" not in netloc.rsplit("]", 1)[-1]:
        return f"{netloc}:{_DEFAULT_PORTS[scheme]}"
    return netloc

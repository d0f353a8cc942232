"""The one renderer of errors: what an error response is, in either of llamactl's shapes.

- **management** (``/api/v1``, ``/healthz``, the dashboard):
  ``{"error": {"code": "<slug>", "message": "<sentence>"}}``, compact ASCII JSON;
- **openai** (``/v1``, ``/llama-cpp``):
  ``{"error": {"message", "type", "param", "code"}}``, as OpenAI's clients expect;
- **anthropic** (``/v1/messages``, ``/v1/messages/...``: Anthropic's Messages API):
  ``{"type": "error", "error": {"type", "message"}}``, as Anthropic's clients expect.

``shape_for`` tells a route's shape from its path. ``render`` looks at the class of a
``LlamactlError``: ``Unauthorized`` comes in the OpenAI shape on every route but the
Anthropic ones (which get theirs), with ``WWW-Authenticate: Bearer``; ``Unavailable`` with a
``retry_after`` adds ``Retry-After``; ``StartFailedRecently`` adds ``Retry-After`` and
``X-Should-Retry: false``. ``render_status`` renders an error that is not a
``LlamactlError`` (routing, an unexpected exception) from its status, code and message.

A ``Rendered`` is plain bytes: the server wraps it in a Starlette response, the proxy and
the lane send it straight to an ASGI ``send`` with ``send_rendered``. This module imports
no framework, does no other I/O and logs nothing: whoever meets the error logs it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from llamactl.errors import (
    LlamactlError,
    RateLimited,
    StartFailedRecently,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "INTERNAL_ERROR",
    "Rendered",
    "Shape",
    "anthropic_error_body",
    "management_error_body",
    "openai_error_body",
    "render",
    "render_status",
    "send_rendered",
    "shape_for",
]

Header = tuple[bytes, bytes]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# The message of a 500 for an unexpected exception: its details go to the log only.
INTERNAL_ERROR = "internal error"
_UNAUTHORIZED_CODE = "invalid_api_key"  # what OpenAI answers for a missing or wrong key
_JSON = (b"content-type", b"application/json")


class Shape(StrEnum):
    """Which error body a route's clients expect."""

    MANAGEMENT = "management"  # llamactl's own API and pages
    OPENAI = "openai"  # the OpenAI-compatible inference routes
    ANTHROPIC = "anthropic"  # Anthropic's Messages API, relayed on /v1/messages


# Anthropic's error types by status; any other 4xx is invalid_request_error, 5xx api_error.
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
_MESSAGES = "/v1/messages"


def shape_for(path: str) -> Shape:
    """The error shape of the route at ``path`` (a decoded request path)."""
    if path.startswith("/api/"):
        return Shape.MANAGEMENT
    if path.startswith(_MESSAGES) and path[len(_MESSAGES) : len(_MESSAGES) + 1] in ("", "/"):
        return Shape.ANTHROPIC
    return Shape.OPENAI


@dataclass(frozen=True, slots=True)
class Rendered:
    """An error response: status, JSON body, and headers besides the content type and
    length."""

    status: int
    body: bytes
    headers: tuple[Header, ...] = ()

    def raw_headers(self) -> list[Header]:
        """Every header to send, as ASGI wants them."""
        return [_JSON, (b"content-length", str(len(self.body)).encode()), *self.headers]


def render(exc: LlamactlError, shape: Shape) -> Rendered:
    """``exc`` as the response for a route whose clients expect ``shape``."""
    if isinstance(exc, Unauthorized):
        return _unauthorized(exc.message, shape is Shape.ANTHROPIC)
    return Rendered(exc.status, _body(shape, exc.status, exc.code, exc.message), _hints(exc))


def render_status(
    status: int, code: str, message: str, shape: Shape, headers: tuple[Header, ...] = ()
) -> Rendered:
    """An error response from its parts, for errors that are not a ``LlamactlError``."""
    return Rendered(status, _body(shape, status, code, message), headers)


def openai_error_body(status: int, message: str, code: str | None) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``, as OpenAI clients expect."""
    error = {"message": message, "type": _openai_type(status), "param": None, "code": code}
    return json.dumps({"error": error}).encode()


def anthropic_error_body(status: int, message: str) -> bytes:
    """``{"type": "error", "error": {"type", "message"}}``, as Anthropic clients expect."""
    kind = _ANTHROPIC_TYPES.get(status)
    if kind is None:
        kind = "invalid_request_error" if status < 500 else "api_error"
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def management_error_body(code: str, message: str) -> bytes:
    """``{"error": {"code", "message"}}``, the management API's shape."""
    document = {"error": {"code": code, "message": message}}
    return json.dumps(document, ensure_ascii=True, separators=(",", ":")).encode("ascii")


async def send_rendered(send: Send, rendered: Rendered) -> None:
    """Send ``rendered`` as a whole response to an ASGI ``send``."""
    headers = rendered.raw_headers()
    await send({"type": "http.response.start", "status": rendered.status, "headers": headers})
    await send({"type": "http.response.body", "body": rendered.body})


def _body(shape: Shape, status: int, code: str, message: str) -> bytes:
    if shape is Shape.OPENAI:
        return openai_error_body(status, message, code)
    if shape is Shape.ANTHROPIC:
        return anthropic_error_body(status, message)
    return management_error_body(code, message)


def _openai_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 404:
        return "not_found_error"
    return "invalid_request_error" if status < 500 else "api_error"


def _hints(exc: LlamactlError) -> tuple[Header, ...]:
    """The headers that tell a client when to try again."""
    if isinstance(exc, Unavailable | RateLimited) and exc.retry_after is not None:
        return ((b"retry-after", str(exc.retry_after).encode()),)
    if isinstance(exc, StartFailedRecently):
        # Asking again before Retry-After gets the same answer; OpenAI's SDKs honour this.
        return ((b"retry-after", str(exc.retry_after).encode()), (b"x-should-retry", b"false"))
    return ()


_CHALLENGE = ((b"www-authenticate", b"Bearer"),)


@lru_cache(maxsize=16)  # a refused key is answered on the hot path, in a few fixed sentences
def _unauthorized(message: str, anthropic: bool) -> Rendered:
    if anthropic:
        return Rendered(401, anthropic_error_body(401, message), _CHALLENGE)
    return Rendered(401, openai_error_body(401, message, _UNAUTHORIZED_CODE), _CHALLENGE)

"""The management application's exception handlers, over the one renderer.

Every body comes from ``llamactl.rendering`` in the management shape
(``{"error": {"code": "<slug>", "message": "<sentence>"}}``; a 401 in the OpenAI shape, as
on every route). Handlers are looked up by exception class: ``LlamactlError`` carries its
own code and status, FastAPI's request validation becomes 400 ``invalid_request``,
Starlette's ``HTTPException`` (unknown route, wrong method) keeps its status and headers,
and anything else is a 500 ``internal_error`` whose traceback is logged and never sent.
This module raises nothing and knows one thing of the routes: the shape of an instance's
path, so that a name with a ``/`` (which matches no route) is answered with the naming
rule rather than a 404.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.responses import Response

from llamactl.errors import InvalidInstanceName, LlamactlError
from llamactl.instance import NAME_RULE
from llamactl.rendering import INTERNAL_ERROR, Rendered, Shape, render, render_status

__all__ = [
    "ErrorResponse",
    "error_response",
    "exception_response",
    "install_error_handlers",
    "validation_message",
]

logger = logging.getLogger(__name__)

# Codes for HTTP errors raised by routing or by dependencies (auth) rather than by llamactl.
_HTTP_CODES: Mapping[int, str] = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


class ErrorResponse(Response):
    """A rendered error as a Starlette response."""

    def __init__(self, rendered: Rendered) -> None:
        super().__init__(rendered.body, status_code=rendered.status)
        self.raw_headers = rendered.raw_headers()


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
) -> ErrorResponse:
    """The management error body: ``{"error": {"code": ..., "message": ...}}``."""
    raw = tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in (headers or {}).items()
    )
    return ErrorResponse(render_status(status, code, message, Shape.MANAGEMENT, raw))


def exception_response(exc: LlamactlError) -> ErrorResponse:
    """``exc`` rendered for a management route."""
    return ErrorResponse(render(exc, Shape.MANAGEMENT))


def install_error_handlers(app: FastAPI) -> None:
    """Render every error raised under ``app`` in the management shape."""
    app.add_exception_handler(LlamactlError, _llamactl_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    # Starlette hands an ``Exception`` handler registered on the app to its outermost
    # middleware, which re-raises after answering; this one answers and stops there.
    app.add_middleware(
        ExceptionMiddleware, handlers={HTTPException: _http_error, Exception: _internal_error}
    )


async def _llamactl_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LlamactlError)
    if exc.status >= 500:
        logger.error("%s %s: %s (%s)", request.method, request.url.path, exc.message, exc.code)
    return exception_response(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(400, "invalid_request", validation_message(exc.errors()))


def validation_message(errors: Sequence[object]) -> str:
    """One sentence per problem, each naming where the parameter is and what it got."""
    sentences = []
    for error in errors:
        if not isinstance(error, Mapping):
            continue
        location = [str(part) for part in error.get("loc", ())]
        where = f"{location[0]} parameter {'.'.join(location[1:])}" if location else "request"
        sentence = f"{where}: {error.get('msg', 'invalid value')}"
        if "input" in error and error["input"] is not None:
            sentence += f" (got {error['input']!r})"
        sentences.append(sentence)
    return "; ".join(sentences) or "invalid request"


# An instance's routes are .../instances/{name} and .../instances/{name}/{action}; the
# path arrives percent-decoded, so a name sent as a%2Fb is also two segments here.
_INSTANCES = "/api/v1/instances/"
_ACTIONS = ("/logs/follow", "/start", "/stop", "/restart", "/logs")


def _name_with_slash(request: Request) -> str | None:
    """The instance name in an unmatched instance path, if it holds a ``/``."""
    path = request.url.path
    _, found, rest = path.partition(_INSTANCES)
    if not found:
        return None
    name = rest.removesuffix("/")
    for action in _ACTIONS:
        if name.endswith(action) and "/" in name.removesuffix(action):
            name = name.removesuffix(action)
            break
    return name if "/" in name else None


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    name = _name_with_slash(request) if status == 404 else None
    if name is not None:
        message = f"Invalid instance name {name!r}: it cannot contain '/'; {NAME_RULE}."
        return error_response(400, InvalidInstanceName.code, message)
    if status in {204, 304}:
        return Response(status_code=status, headers=exc.headers)
    phrase = _phrase(status)
    code = _HTTP_CODES.get(status, "http_error")
    message = exc.detail if exc.detail and exc.detail != phrase else _default_message(request, exc)
    return error_response(status, code, message, headers=exc.headers)


def _default_message(request: Request, exc: HTTPException) -> str:
    target = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        return f"no route matches {target}"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return f"method {request.method} is not allowed on {request.url.path}" + (
            f"; allowed: {allowed}" if allowed else ""
        )
    return f"{_phrase(exc.status_code) or 'HTTP error'} ({target})"


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", INTERNAL_ERROR)

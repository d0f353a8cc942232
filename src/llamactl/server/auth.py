"""The management application's side of API keys: FastAPI dependencies and the 401.

The keys themselves and their checks are ``llamactl.auth``. ``management_dependency`` /
``inference_dependency`` raise ``errors.Unauthorized``, which the management application's
handlers (``server.errors``) render in the OpenAI error shape, as every 401 is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from llamactl.auth import Keys, rejection
from llamactl.errors import Unauthorized
from llamactl.server.errors import exception_response

__all__ = ["inference_dependency", "management_dependency", "unauthorized_response"]


def unauthorized_response(message: str) -> Response:
    """The 401 response for ``message``: OpenAI error shape, ``WWW-Authenticate: Bearer``."""
    return exception_response(Unauthorized(message))


def _dependency(keys: Keys, *, management: bool) -> Callable[[Request], Awaitable[None]]:
    async def require_key(request: Request) -> None:
        message = rejection(keys, request.scope, management=management)
        if message is not None:
            raise Unauthorized(message)

    return require_key


def management_dependency(keys: Keys) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that raises ``Unauthorized`` unless a management key is given."""
    return _dependency(keys, management=True)


def inference_dependency(keys: Keys) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that raises ``Unauthorized`` unless an accepted key is given.

    Inference routes accept inference keys and management keys.
    """
    return _dependency(keys, management=False)

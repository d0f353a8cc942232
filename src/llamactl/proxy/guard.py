"""The proxy's last guard, for the exceptions that nothing else handles.

``ProxyApp`` answers every ``LlamactlError`` itself; anything else that escapes it is a
bug. ``LastResort`` logs its traceback and answers 500 ``internal_error`` in the route's
shape (``rendering.shape_for``: OpenAI's on ``/v1`` and ``/llama-cpp``, Anthropic's on
``/v1/messages``, the management shape on the per-instance proxy), never with the
exception's text. Once the response has started nothing more can be said to the client:
the exception goes on to the server, which logs it and closes the connection, so that a
cut-off response never looks complete.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from llamactl.proxy.asgi import Message, Receive, Scope, Send
from llamactl.rendering import INTERNAL_ERROR, render_status, send_rendered, shape_for

__all__ = ["LastResort"]

logger = logging.getLogger(__name__)

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class LastResort:
    """Wraps the proxy; see the module docstring."""

    def __init__(self, app: Handler) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._app(scope, receive, tracked)
        except Exception:
            if started:
                raise
            logger.exception("%s %s failed", scope["method"], scope["path"])
            rendered = render_status(
                500, "internal_error", INTERNAL_ERROR, shape_for(scope["path"])
            )
            await send_rendered(send, rendered)

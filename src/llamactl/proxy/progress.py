"""Loading progress: a streamed request that waits for a cold start hears from llamactl.

A request with ``"stream": true`` whose instance is starting would otherwise get nothing
until the backend is ready, which can take minutes: clients and proxies in between time
out on a silent connection. Once the wait has lasted one interval
(``instances.loading_progress_interval``), llamactl opens the response itself (200,
``text/event-stream``, ``cache-control: no-cache``, ``x-accel-buffering: no`` so that nginx
in front passes it on, and the backend's configured ``response_headers``) and writes an
SSE comment every interval::

    : loading <instance> <seconds>s

which SSE clients ignore by the standard. A wait shorter than one interval is unchanged:
nothing is sent before the first comment is due.

Once the head has gone out, the backend's response follows as its body, unchanged; the
backend's own head (status and headers) cannot be sent any more and is dropped. What
cannot be answered with a status any more ends the stream with an SSE error event in the
route's shape, then the response ends cleanly::

    event: error
    data: {"error": {...}}              (OpenAI's shape; Anthropic's on /v1/messages)

That is a start that fails or times out, and a backend answering with a status that is not
2xx (its message is passed on, with its status). The client leaving still cancels the
wait: the ticker is cancelled with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from llamactl.errors import BackendRefused, LlamactlError
from llamactl.proxy.asgi import Message, Send
from llamactl.rendering import Shape, render

__all__ = ["NOT_2XX", "Progress"]

_log = logging.getLogger(__name__)

# The statuses a relay after the early head checks: they become an error event.
NOT_2XX = frozenset(status for status in range(100, 1000) if not 200 <= status < 300)
_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_MESSAGE_LIMIT = 500  # characters of a backend's error message passed on


class Progress:
    """The loading progress of one streamed request; see the module docstring.

    ``during`` wraps the wait for the instance. Afterwards ``send`` is what the relay
    writes to, ``check`` what it checks statuses with (when ``started``), and ``fail``
    ends the stream for an error that came after the head.
    """

    def __init__(
        self,
        send: Send,
        name: str,
        shape: Shape,
        interval: float,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._send = send
        self._name = name
        self._shape = shape
        self._interval = interval
        self._extra = extra_headers
        self._clock = clock or asyncio.get_running_loop().time
        self.started = False  # the early head has gone out

    async def during(self, wait: Awaitable[None]) -> None:
        """Await ``wait``, writing the head and a comment every interval meanwhile."""
        ticker = asyncio.create_task(self._tick(self._clock()))
        try:
            await wait
        finally:
            ticker.cancel()  # at a sleep, or after a write: a frame is never cut
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([ticker])
            if ticker.done() and not ticker.cancelled() and ticker.exception() is not None:
                # A write to a client that went away: the disconnect watch ends the request.
                _log.debug("loading progress of %s: %r", self._name, ticker.exception())

    async def send(self, message: Message) -> None:
        """The relay's ``send``: the backend's head is dropped once the early one is out."""
        if self.started and message["type"] == "http.response.start":
            return
        await self._send(message)

    def check(self, status: int, body: bytes) -> LlamactlError:
        """The error event for a backend's status that is not 2xx (``NOT_2XX``)."""
        return BackendRefused(
            f"the backend of {self._name} answered {status}: {_message_of(body)}",
            status=status,
        )

    async def fail(self, exc: LlamactlError) -> None:
        """End the started stream with ``exc`` as an SSE error event."""
        data = render(exc, self._shape).body
        await self._send(_body(b"event: error\ndata: " + data + b"\n\n", more=True))
        await self._send(_body(b"", more=False))

    async def _tick(self, began: float) -> None:
        while True:
            await asyncio.sleep(self._interval)
            if not self.started:
                self.started = True
                headers = [*_HEADERS, *self._extra]
                start = {"type": "http.response.start", "status": 200, "headers": headers}
                await self._send(start)
            seconds = round(self._clock() - began)
            comment = f": loading {self._name} {seconds}s\n\n".encode()
            await self._send(_body(comment, more=True))


def _body(chunk: bytes, *, more: bool) -> Message:
    return {"type": "http.response.body", "body": chunk, "more_body": more}


def _message_of(body: bytes) -> str:
    """The message of a backend's error body: its ``error.message`` (OpenAI's and
    Anthropic's shapes, llama-server's), else its text, shortened."""
    text = body.decode("utf-8", "replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if isinstance(document, dict):
        error = document.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            text = error["message"]
        elif isinstance(error, str):
            text = error
    text = text or "(no body)"
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + "…"

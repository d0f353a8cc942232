"""uvicorn's HTTP protocol with a direct lane for warm inference requests.

For each request uvicorn creates a task that runs the ASGI application, and every piece of
a streamed response goes from the backend's connection to that task and back to the
client's transport. For a ``POST /v1/...`` to an instance that is ready, that is all
overhead: this protocol hands such a request, once its body has arrived, to
``ProxyApp.relay_now``, which writes it to the backend from the same callback, and the
response is written to the client from the backend connection's callbacks, through
uvicorn's own response writer (``RequestResponseCycle.send``, which only waits when the
client's buffer is full, and is never called then).

Only requests that cannot need anything else take the lane: HTTP/1.1 kept alive, a
``Content-Length`` body small enough to stay below uvicorn's read pause, no ``Expect``, no
``Origin`` (the CORS layer answers those). Everything else, and every request the proxy
declines (no key, unknown model, instance not ready, no idle connection), runs as an ASGI
task exactly as before, with the body uvicorn has buffered.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Coroutine
from typing import Any, cast

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from llamactl.errors import LlamactlError
from llamactl.proxy.app import ProxyApp
from llamactl.proxy.asgi import Scope, Send, send_error
from llamactl.proxy.upstream import Relay
from llamactl.server import auth

__all__ = ["http_protocol"]

_log = logging.getLogger(__name__)

# A body up to this size is read in full without uvicorn pausing the connection.
_LANE_BODY_LIMIT = HIGH_WATER_LIMIT


def http_protocol(proxy: ProxyApp) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, its lane leading to ``proxy``."""
    return type("LlamactlHttpProtocol", (LaneProtocol,), {"proxy": proxy})


class LaneProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the direct lane; see the module docstring."""

    proxy: ProxyApp

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: tuple[RequestResponseCycle, Any] | None = None  # body still arriving
        self._lane: _Lane | None = None  # the request on the lane, if any
        self._remembered = auth.Remembered()  # the key that passed last on this connection

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if app is self.app and _suits_lane(cycle):
            if cycle.more_body:
                self._waiting = (cycle, app)  # decided in on_message_complete
                return
            if self._take(cycle, app):
                return
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        waiting = self._waiting
        if waiting is not None and not waiting[0].more_body:
            self._waiting = None
            cycle, app = waiting
            if not self._take(cycle, app):
                super()._start_asgi_task(cycle, app)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._waiting = None
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.client_gone()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._lane is not None:
            self._lane.client_resumed()

    def _take(self, cycle: RequestResponseCycle, app: Any) -> bool:
        """Relay ``cycle``'s request on the lane; ``False`` if the proxy declines it."""
        lane = _Lane(self, cycle, app)
        relay = self.proxy.relay_now(
            cast(Scope, cycle.scope), bytes(cycle.body), lane, self._remembered
        )
        if relay is None:
            return False
        lane.relay = relay
        if not lane.over:
            self._lane = lane
        return True

    def lane_over(self, lane: _Lane) -> None:
        if self._lane is lane:
            self._lane = None

    def start_ordinary(self, cycle: RequestResponseCycle, app: Any) -> None:
        """Run ``cycle`` as an ASGI task after all (its body is still buffered)."""
        super()._start_asgi_task(cycle, app)


def _suits_lane(cycle: RequestResponseCycle) -> bool:
    scope = cycle.scope
    if scope["method"] != "POST" or not scope["path"].startswith("/v1/"):
        return False
    if not cycle.keep_alive or cycle.waiting_for_100_continue:
        return False
    length = None
    typed = json = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            length = value
        elif name == b"content-type" and not typed:
            typed, json = True, value[:16].lower() == b"application/json"
        elif name == b"origin" or name == b"transfer-encoding":
            return False
    return json and length is not None and length.isdigit() and int(length) < _LANE_BODY_LIMIT


class _Lane:
    """A ``Responder`` over uvicorn's ``RequestResponseCycle``, for one request."""

    def __init__(self, protocol: LaneProtocol, cycle: RequestResponseCycle, app: Any) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._app = app
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self.relay: Relay | None = None
        self.over = False

    # -- Responder ---------------------------------------------------------------------

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self._deliver({"type": "http.response.start", "status": status, "headers": headers})

    def write(self, chunk: bytes, more: bool) -> bool:
        flow = self._protocol.flow
        streaming = more and chunk and self._cycle.chunked_encoding
        if streaming and not self._pending and not flow.write_paused:
            # What the writer would write, without a message and a coroutine per chunk.
            self._protocol.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            return not flow.write_paused
        self._deliver({"type": "http.response.body", "body": chunk, "more_body": more})
        return not self._pending and not flow.write_paused

    def abort(self) -> None:
        self._end()
        self._protocol.transport.abort()

    def error(self, exc: LlamactlError) -> None:
        self._end()
        # A rare path: the ordinary renderer, in a task of its own.
        task = asyncio.get_running_loop().create_task(
            send_error(cast(Send, self._cycle.send), exc, openai=True)
        )
        self._protocol.tasks.add(task)
        task.add_done_callback(self._protocol.tasks.discard)

    def retry(self) -> None:
        self._end()
        self._protocol.start_ordinary(self._cycle, self._app)

    # -- from the protocol -------------------------------------------------------------

    def client_resumed(self) -> None:
        while self._pending and not self._protocol.flow.write_paused:
            self._send(self._pending.popleft())
        if not self._pending and self.relay is not None:
            self.relay.resume()

    def client_gone(self) -> None:
        self._pending.clear()
        if self.relay is not None:
            self.relay.gone()

    # -- internals ---------------------------------------------------------------------

    def _deliver(self, message: dict[str, Any]) -> None:
        if self._pending or self._protocol.flow.write_paused:
            self._pending.append(message)  # sent once the client catches up
        else:
            self._send(message)

    def _send(self, message: dict[str, Any]) -> None:
        _complete(self._cycle.send(message))  # type: ignore[arg-type]
        if message["type"] == "http.response.body" and not message["more_body"]:
            self._end()

    def _end(self) -> None:
        self.over = True
        self._protocol.lane_over(self)


def _complete(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a ``send`` that does not wait (the client's buffer has room) to its end."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the response writer waited although the client could take more")

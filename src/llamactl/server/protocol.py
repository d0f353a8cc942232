"""uvicorn's HTTP protocol with a direct lane for warm inference requests.

For each request uvicorn builds a scope, a request-response cycle and a task that runs the
ASGI application, and every piece of a streamed response goes from the backend's
connection to that task and back to the client's transport. For a ``POST /v1/...`` to an
instance that is ready, all of that is overhead. So this protocol reads such a request
itself, with a parser of its own, before uvicorn sees a byte of it; once the request has
arrived in full it is handed to ``ProxyApp.relay_now``, which writes it to the backend from
the same callback, and the response is written to the client from the backend
connection's callbacks.

Only requests that cannot need anything else take the lane: HTTP/1.1 kept alive, a
``Content-Length`` JSON body small enough to stay below uvicorn's read pause, no ``Expect``,
no ``Origin`` (the CORS layer answers those), no percent-escapes in the path, nothing
pipelined behind. For everything else, and for every request the proxy declines (no key,
unknown model, instance not ready, no idle connection), the bytes read so far go to
uvicorn's own parser, and the request runs as an ASGI task exactly as it would have.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import httptools
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from llamactl import auth
from llamactl.errors import LlamactlError
from llamactl.proxy.app import ProxyApp
from llamactl.proxy.asgi import Message, Scope, send_error
from llamactl.proxy.upstream import Relay
from llamactl.rendering import shape_for

__all__ = ["http_protocol"]

_log = logging.getLogger(__name__)
_access_log = logging.getLogger("uvicorn.access")

# A body up to this size is read in full without uvicorn pausing the connection.
_LANE_BODY_LIMIT = HIGH_WATER_LIMIT
_LANE_PREFIX = b"POST /v1/"


def http_protocol(proxy: ProxyApp) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)``, its lane leading to ``proxy``."""
    return type("LlamactlHttpProtocol", (LaneProtocol,), {"proxy": proxy})


class LaneProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the direct lane; see the module docstring."""

    proxy: ProxyApp

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading: _Request | None = None  # a lane request still arriving
        self._lane: _Lane | None = None  # the request being answered on the lane
        self._held: list[bytes] = []  # what the client sent while the lane answered
        self._in_message = False  # uvicorn's parser is inside a request
        self._remembered = auth.Remembered()  # the key that passed last on this connection
        self._open = self.root_path == "" and self.limit_concurrency is None

    # -- uvicorn's protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._lane is not None:
            self._held.append(data)  # answered in order, once the lane's response is done
            self.flow.pause_reading()
            return
        reading = self._reading
        if reading is None and self._may_start_lane(data):
            reading = self._reading = _Request()
        if reading is None:
            super().data_received(data)
            return
        self._unset_keepalive_if_required()
        if reading.feed(data) and not reading.complete:
            return  # the rest of the request is still to come
        self._reading = None
        if not (reading.suits and self._take(reading)):
            super().data_received(reading.raw())

    def on_message_begin(self) -> None:
        self._in_message = True
        super().on_message_begin()

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._reading = None
        self._held.clear()
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.client_gone()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._lane is not None:
            self._lane.client_resumed()

    def shutdown(self) -> None:
        if self._lane is not None:
            self._lane.keep_alive = False  # the connection closes after this response
        else:
            super().shutdown()

    # -- the lane ----------------------------------------------------------------------

    def _may_start_lane(self, data: bytes) -> bool:
        """Whether ``data`` begins a request uvicorn is not already parsing or answering."""
        return (
            data[:9] == _LANE_PREFIX
            and self._open
            and not self._in_message
            and (self.cycle is None or self.cycle.response_complete)
            and not self.pipeline
            and not self.transport.is_closing()
        )

    def _take(self, request: _Request) -> bool:
        """Relay ``request`` on the lane; ``False`` if the proxy declines it."""
        lane = _Lane(self, request)
        try:
            relay = self.proxy.relay_now(
                request.scope(self), request.body(), lane, self._remembered
            )
        except Exception:  # a bug: the ordinary path, with its last-resort guard, answers
            _log.exception("the direct lane failed; the request takes the ordinary path")
            return False
        if relay is None:
            return False
        lane.relay = relay
        if not lane.over:
            self._lane = lane
        return True

    def lane_over(self, lane: _Lane, keep_alive: bool) -> None:
        """``lane``'s response is complete: go on as uvicorn does after a response."""
        if self._lane is lane:
            self._lane = None
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()  # counts it; for a closing connection, nothing more
        if self._held and keep_alive:
            self.loop.call_soon(self._replay)

    def lane_aborted(self, lane: _Lane) -> None:
        if self._lane is lane:
            self._lane = None
        self._held.clear()

    def start_ordinary(self, raw: bytes) -> None:
        """Handle a request the lane let go of as an ASGI task, from its bytes."""
        self._lane = None
        held, self._held = self._held, []
        super().data_received(b"".join([raw, *held]))

    def _replay(self) -> None:
        """Read what the client sent while the lane was answering."""
        if self._held and self._lane is None and not self.transport.is_closing():
            held, self._held = self._held, []
            self.data_received(b"".join(held))


class _Request:
    """A request read by the lane's own parser: what the lane needs, and its raw bytes."""

    def __init__(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._chunks: list[bytes] = []
        self._url = b""
        self._body: list[bytes] = []
        self._length = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.path = ""
        self.raw_path = b""
        self.query = b""
        self.suits = True  # still a candidate for the lane
        self.complete = False
        self._messages = 0

    def feed(self, data: bytes) -> bool:
        """Parse ``data``; whether the request is still a candidate for the lane."""
        self._chunks.append(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self.suits = False  # uvicorn answers it with its 400
        if self._messages > 1 or (self.complete and self._parser.should_upgrade()):
            self.suits = False
        return self.suits

    def raw(self) -> bytes:
        return b"".join(self._chunks)

    def body(self) -> bytes:
        return b"".join(self._body)

    def scope(self, protocol: HttpToolsProtocol) -> Scope:
        return {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": protocol.scheme,
            "path": self.path,
            "raw_path": self.raw_path,
            "query_string": self.query,
            "root_path": "",
            "headers": self.headers,
            "client": protocol.client,
            "server": protocol.server,
        }

    # -- parser callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._messages += 1

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name in _DISQUALIFYING:
            self.suits = False
        self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self._parser
        if (
            parser.get_http_version() != "1.1"
            or not parser.should_keep_alive()
            or parser.should_upgrade()
            or not self._suitable_headers()
        ):
            self.suits = False
            return
        url = httptools.parse_url(self._url)
        raw_path = url.path
        if b"%" in raw_path or raw_path[:4] != b"/v1/":
            self.suits = False
            return
        self.raw_path = raw_path
        self.path = raw_path.decode("ascii")
        self.query = url.query or b""

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    def _suitable_headers(self) -> bool:
        length = None
        json = False
        typed = False
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None:
                    return False
                length = value
            elif name == b"content-type" and not typed:
                typed, json = True, value[:16].lower() == b"application/json"
        if not json or length is None or not length.isdigit():
            return False
        return int(length) < _LANE_BODY_LIMIT


# Headers that send a request the ordinary way: CORS, 100-continue, chunked bodies.
_DISQUALIFYING = frozenset({b"origin", b"expect", b"transfer-encoding"})


class _Lane:
    """A ``Responder`` writing one response straight to the client's transport, framed as
    uvicorn frames its own responses."""

    def __init__(self, protocol: LaneProtocol, request: _Request) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._request = request
        self._chunked = True
        self._status = 0
        self.keep_alive = True
        self.relay: Relay | None = None
        self.over = False

    # -- Responder ---------------------------------------------------------------------

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self._status = status
        line = STATUS_LINE.get(status) or b"HTTP/1.1 %d \r\n" % status
        content = [line]
        chunked = None
        for name, value in [*self._protocol.server_state.default_headers, *headers]:
            name = name.lower()
            if name == b"content-length" and chunked is None:
                chunked = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            content.extend((name, b": ", value, b"\r\n"))
        if chunked is None and status not in (204, 304):
            chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        self._chunked = bool(chunked)
        content.append(b"\r\n")
        self._transport.write(b"".join(content))
        if self._protocol.access_log:
            self._log_access()

    def write(self, chunk: bytes, more: bool) -> bool:
        if self._chunked:
            if chunk:
                frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
                self._transport.write(frame if more else frame + b"0\r\n\r\n")
            elif not more:
                self._transport.write(b"0\r\n\r\n")
        elif chunk:
            self._transport.write(chunk)
        if not more:
            self._end()
        return not self._protocol.flow.write_paused

    def abort(self) -> None:
        self.over = True
        self._protocol.lane_aborted(self)
        self._transport.abort()

    def error(self, exc: LlamactlError) -> None:
        _complete(send_error(self._send, exc, shape_for(self._request.path)))

    def retry(self) -> None:
        self.over = True
        self._protocol.start_ordinary(self._request.raw())

    # -- from the protocol -------------------------------------------------------------

    def client_resumed(self) -> None:
        if self.relay is not None:
            self.relay.resume()

    def client_gone(self) -> None:
        if self.relay is not None:
            self.relay.gone()

    # -- internals ---------------------------------------------------------------------

    async def _send(self, message: Message) -> None:
        """An ASGI ``send`` over this responder, for the error renderer."""
        if message["type"] == "http.response.start":
            self.start(message["status"], list(message.get("headers", [])))
        else:
            self.write(message.get("body", b""), message.get("more_body", False))

    def _end(self) -> None:
        self.over = True
        self._protocol.lane_over(self, self.keep_alive)

    def _log_access(self) -> None:
        request = self._request
        client = self._protocol.client
        address = f"{client[0]}:{client[1]}" if client else ""
        target = request.path + ("?" + request.query.decode("ascii") if request.query else "")
        _access_log.info('%s - "POST %s HTTP/1.1" %d', address, target, self._status)


def _complete(coroutine: Any) -> None:
    """Run a coroutine that never waits to its end, here and now."""
    try:
        cast(Any, coroutine).send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the lane's error response waited")

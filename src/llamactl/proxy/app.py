"""The proxy's routes, as one bare ASGI application.

- ``GET /v1/models``: every instance, with its status.
- ``POST /v1/...``: routed by the body's ``model`` (an instance name) with the path kept;
  JSON bodies and multipart forms (audio) alike; started on demand.
- ``/llama-cpp/{name}/...``: llama.cpp's own endpoints, the prefix stripped; started on
  demand. ``GET /llama-cpp/{name}/`` (its web page) needs no key and starts nothing;
  every other request is refused before the name is even looked at, unless it has a key.
- ``/api/v1/instances/{name}/proxy/...``: any request to a running backend, management key
  required, never started on demand.

Errors on ``/v1`` and ``/llama-cpp`` come in the OpenAI shape, those on Anthropic's
Messages API (``/v1/messages``, ``/v1/messages/count_tokens``) in Anthropic's; a backend
whose spec says it has no Messages API (``messages_api``) gets no such request: 501,
before anything is started. Each request counts as in
flight from its arrival until its response ends or its client goes away; a client that
goes away cancels the request to the backend.

An instance that lives on other nodes is relayed to one of them with the request target
as received (``remote``): the node starts it on demand, queues and evicts as for its own
clients. The client's key stays here; the node gets its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from urllib.parse import unquote_to_bytes

from llamactl import auth
from llamactl.backends import BackendType, spec_for
from llamactl.config import AppConfig
from llamactl.database.keys import KeyPermission, KeyRecord
from llamactl.errors import (
    CapacityReached,
    InstanceNotFound,
    InstanceNotRunning,
    InvalidInput,
    LlamactlError,
    NotFound,
    NotServed,
    PermissionDenied,
)
from llamactl.instance import Instance, Status, validate_name
from llamactl.manager import InstanceManager
from llamactl.manager.instance_process import backend_config
from llamactl.observe import Recorder, Tally
from llamactl.proxy import jsonscan
from llamactl.proxy.asgi import (
    ClientGone,
    DisconnectWatch,
    Receive,
    Scope,
    Send,
    read_body,
    send_error,
    send_json,
)
from llamactl.proxy.progress import NOT_2XX, Progress
from llamactl.proxy.remote import RemoteRelay
from llamactl.proxy.scheduler import Scheduler
from llamactl.proxy.upstream import Relay, Responder, Upstream, request_headers
from llamactl.rendering import Shape, render_status, send_rendered, shape_for

__all__ = ["ProxyApp"]

_INSTANCE_PROXY = re.compile(r"^/api/v1/instances/([^/]+)/proxy(/.*)?$", re.DOTALL)
_LLAMA_CPP = re.compile(r"^/llama-cpp/([^/]+)(/.*)?$", re.DOTALL)
# The part of a raw request target that names the instance, stripped before forwarding.
_RAW_PREFIX = re.compile(rb"^(?:/llama-cpp/([^/]*)|/api/v1/instances/([^/]*)/proxy)")
# Never written into a request line: control characters (CR, LF...), space and DEL.
_UNSAFE_TARGET = re.compile(rb"[\x00-\x20\x7f]")
_MULTIPART_MODEL = re.compile(
    rb'content-disposition:[^\r\n]*name="model"[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n',
    re.IGNORECASE,
)
# Bodies up to this size are parsed whole to find their model (faster than the scan).
_PARSED_WHOLE = 64 * 1024

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


class ProxyApp:
    """Routes inference requests to instances; see the module docstring."""

    def __init__(
        self,
        manager: InstanceManager,
        config: AppConfig,
        keys: auth.Keys,
        upstream: Upstream,
        scheduler: Scheduler,
        recorder: Recorder | None = None,
    ) -> None:
        """``recorder`` counts each ``/v1`` and ``/llama-cpp`` request (the metrics and the
        activity log); without one nothing is counted."""
        self._manager = manager
        self._upstream = upstream
        self._scheduler = scheduler
        self._recorder = recorder
        self._remote = RemoteRelay(manager, upstream)
        self.reconfigure(config, keys)

    def reconfigure(self, config: AppConfig, keys: auth.Keys) -> None:
        """Use new settings and keys from now on (a configuration reload)."""
        self._config = config
        self._keys = keys
        self._body_limit = config.server.max_request_body_mb * 1024 * 1024
        # Set by a router over a shared database: the refusal for every request while
        # what it knows may be out of date (``server.replication``), else ``None``.
        self.stale: Callable[[], LlamactlError | None] | None = None
        self._response_headers = {
            backend_type: [
                (key.lower().encode("latin-1"), value.encode("latin-1"))
                for key, value in backend_config(config, backend_type).response_headers.items()
            ]
            for backend_type in BackendType
        }

    @staticmethod
    def handles(path: str) -> bool:
        """Whether ``path`` is one of the proxy's routes."""
        return (
            path.startswith("/v1/")
            or path.startswith("/llama-cpp/")
            or _INSTANCE_PROXY.match(path) is not None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        openai = not path.startswith("/api/")
        recorder = self._recorder
        tally = recorder.begin(path) if recorder is not None and openai else None
        try:
            if path.startswith("/v1/"):
                await self._openai(scope, receive, send, tally)
            elif path.startswith("/llama-cpp/"):
                await self._llama_cpp(scope, receive, send, tally)
            else:
                await self._instance_proxy(scope, receive, send)
        except ClientGone:
            return
        except LlamactlError as exc:
            if tally is not None:
                tally.answered(exc.status)
            await send_error(send, exc, shape_for(path))
        finally:
            if tally is not None:
                tally.finish()

    def relay_now(
        self, scope: Scope, body: bytes, responder: Responder, remembered: auth.Remembered
    ) -> Relay | None:
        """Relay a ``POST /v1/...`` with a small JSON body that has arrived, with no task
        in between, when nothing needs waiting for: a key that passes (``remembered`` is
        the client connection's last one), a ``model`` naming an instance that accepts
        requests now, and an idle connection to its backend.

        ``None``, having done nothing, for anything else: the ordinary path then handles
        the request, and answers what is wrong with it. The request counts in flight until
        the relay is done.
        """
        if scope["path"].startswith("/v1/models") or len(body) > self._body_limit:
            return None
        if self.stale is not None and self.stale() is not None:
            return None  # the ordinary path refuses it
        if not auth.inference_allowed(self._keys, scope, remembered):
            return None
        name = _small_json_model(body)
        if name is None or not self._scheduler.accepts(name):
            return None  # no model, unknown, starting, held: the ordinary path decides
        if shape_for(scope["path"]) is Shape.ANTHROPIC and not self._serves_messages(name):
            return None  # the ordinary path answers 501
        record = remembered.record  # the stored key that passed, if it was one
        if record is not None:
            if record.permission_mode != "allow_all" and _permission(record, name) is None:
                return None  # the ordinary path refuses it
            if record.max_concurrent is not None or record.requests_per_minute is not None:
                return None  # the ordinary path holds it to its limits
            self._book_used(record)
        recorder = self._recorder
        tally = recorder.begin(scope["path"]) if recorder is not None else None
        try:
            if self._manager.is_remote(name):
                if tally is not None:
                    _identify(tally, self._manager.get(name), record)
                target = _remote_target(scope)
                return self._remote.relay_now(scope, responder, name, body, target, tally)
            inst = self._manager.get(name)
            if tally is not None:
                _identify(tally, inst, record)
            return self._relay_now(scope, responder, inst, self._body_for(inst, body, True), tally)
        except LlamactlError:
            return None

    def _relay_now(
        self, scope: Scope, responder: Responder, inst: Instance, body: bytes, tally: Tally | None
    ) -> Relay | None:
        name = inst.name
        host, port = self._manager.address(name)
        target = _target(scope, name)
        self._scheduler.begin(name)
        relay = self._upstream.relay_now(
            responder,
            method="POST",
            host=host,
            port=port,
            target=target,
            headers=request_headers(scope["headers"], _backend_key(inst)),
            body=body,
            extra_headers=self._response_headers[inst.options.backend_type],
            name=name,
            done=lambda: self._scheduler.end(name),
            tally=tally,
        )
        if relay is None:
            self._scheduler.end(name)
        return relay

    def _check_fresh(self) -> None:
        """Raise ``stale``'s refusal, if there is one now."""
        refusal = self.stale() if self.stale is not None else None
        if refusal is not None:
            raise refusal

    # -- routes -------------------------------------------------------------------------

    async def _openai(
        self, scope: Scope, receive: Receive, send: Send, tally: Tally | None
    ) -> None:
        if not await self._authorized(scope, send, management=False, tally=tally):
            return
        self._check_fresh()
        record = auth.key_record(self._keys, scope)
        method = scope["method"]
        if record is not None and method == "GET" and scope["path"].startswith("/v1/models"):
            self._book_used(record)  # a read of the models; a request counts once admitted
        if tally is not None:
            _identify(tally, None, record)
        if scope["path"] == "/v1/models" and method == "GET":
            await _answer_json(send, tally, self._models(record))
            return
        if scope["path"].startswith("/v1/models/") and method == "GET":
            # The decoded path, once: decoding it again would read "%2541" as "A".
            name = scope["path"].removeprefix("/v1/models/")
            await _answer_json(send, tally, self._model(name, record))
            return
        if method != "POST":
            if tally is not None:
                tally.answered(405)
            message = f"{method} is not allowed here"
            shape = shape_for(scope["path"])
            allow = ((b"allow", b"POST"),)
            rendered = render_status(405, "method_not_allowed", message, shape, allow)
            await send_rendered(send, rendered)
            return
        body = await read_body(scope, receive, self._body_limit)
        name, is_json = _model_of(scope, body)
        await self._manager.catch_up(name)
        inst = self._instance(
            name, not_found=f"model {name!r} not found: no instance has that name"
        )
        if tally is not None:
            _identify(tally, inst, record)
        self._permit(record, inst)
        _check_served(inst, scope["path"])
        with self._limited(record):
            if self._remote.goes_elsewhere(name):
                target = _remote_target(scope)
                await self._remote.forward(scope, receive, send, name, body, target, tally)
                return
            body = self._body_for(inst, body, is_json)
            await self._forward(
                scope, receive, send, inst, scope["path"], body, on_demand=True, tally=tally
            )

    async def _llama_cpp(
        self, scope: Scope, receive: Receive, send: Send, tally: Tally | None
    ) -> None:
        match = _LLAMA_CPP.match(scope["path"])
        rest = (match.group(2) if match else None) or "/"
        is_page = match is not None and rest == "/" and scope["method"] == "GET"
        # The key first: without one, nothing may tell which instances exist or run.
        if not is_page and not await self._authorized(scope, send, management=False, tally=tally):
            return
        self._check_fresh()
        if match is None:
            raise NotFound(f"no route matches {scope['path']}: use /llama-cpp/{{name}}/...")
        name = _path_name(match.group(1))
        inst = self._instance(name)
        record = None if is_page else auth.key_record(self._keys, scope)
        if tally is not None:
            _identify(tally, inst, record)
        self._permit(record, inst)
        if inst.options.backend_type is not BackendType.LLAMA_CPP:
            raise InvalidInput(f"instance {name} is not a llama_cpp instance")
        remote = self._remote.goes_elsewhere(name)
        if is_page and not remote and not self._manager.is_ready(name):
            raise InstanceNotRunning(f"instance {name} is not running")
        body = await read_body(scope, receive, self._body_limit)
        with self._limited(record):
            if remote:  # the node has the whole path: its own prefix routing applies there
                target = _remote_target(scope)
                await self._remote.forward(scope, receive, send, name, body, target, tally)
                return
            await self._forward(
                scope, receive, send, inst, rest, body, on_demand=not is_page, tally=tally
            )

    async def _instance_proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _INSTANCE_PROXY.match(scope["path"])
        assert match is not None
        if not await self._authorized(scope, send, management=True):
            return
        name = _path_name(match.group(1))
        inst = self._instance(name)
        remote = self._manager.is_remote(name)
        if not remote and not self._manager.is_ready(name):
            raise InstanceNotRunning(
                f"instance {name} is {inst.status.value}, not running and ready"
            )
        body = await read_body(scope, receive, self._body_limit)
        if remote:
            await self._remote.forward(scope, receive, send, name, body, _remote_target(scope))
            return
        await self._forward(
            scope, receive, send, inst, match.group(2) or "/", body, on_demand=False
        )

    # -- forwarding ---------------------------------------------------------------------

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        inst: Instance,
        path: str,
        body: bytes,
        *,
        on_demand: bool,
        tally: Tally | None = None,
    ) -> None:
        """Relay to the instance's backend, counted in flight, cancelled if the client goes.

        The watch for the client going away starts once the request is written to the
        backend (or before a wait for the instance), so that it costs the request nothing.
        A streamed request that waits for the instance may get loading progress
        (``progress``): an error after its early head ends the stream as an event.
        """
        name = inst.name
        self._scheduler.begin(name)
        current = asyncio.current_task()
        assert current is not None
        watch = DisconnectWatch(receive, current)
        progress: Progress | None = None
        try:
            if on_demand and not self._scheduler.accepts(name):
                watch.start()
                progress = self._progress(scope, send, inst, body)
                if progress is None:
                    await self._wait_for(name, tally)
                else:
                    await progress.during(self._wait_for(name, tally))
            inst = self._manager.get(name)
            await self._relay(scope, send, inst, path, body, watch.start, tally, progress)
        except asyncio.CancelledError:
            if not watch.gone:
                raise
            current.uncancel()  # the client left: nothing more to send
        except LlamactlError as exc:
            if progress is None or not progress.started:
                raise
            if tally is not None:
                tally.answered(exc.status)  # what the error event says, not the early 200
            await progress.fail(exc)
        finally:
            watch.stop()
            self._scheduler.end(name)

    async def _wait_for(self, name: str, tally: Tally | None) -> None:
        """Wait until ``name`` is ready (the tally learns for how long, and whether it was
        a cold start: not running and ready when the wait began)."""
        if tally is None:
            await self._scheduler.ready(name)
            return
        cold = not self._manager.is_ready(name)
        began = time.perf_counter()
        try:
            await self._scheduler.ready(name)
        finally:
            tally.waited(began, cold)

    async def _relay(
        self,
        scope: Scope,
        send: Send,
        inst: Instance,
        path: str,
        body: bytes,
        sent: Callable[[], None],
        tally: Tally | None,
        progress: Progress | None = None,
    ) -> None:
        host, port = self._manager.address(inst.name)
        target = _target(scope, inst.name)
        started = progress is not None and progress.started
        await self._upstream.relay(
            progress.send if progress is not None else send,
            method=scope["method"],
            host=host,
            port=port,
            target=target,
            headers=request_headers(scope["headers"], _backend_key(inst)),
            body=body,
            extra_headers=self._response_headers[inst.options.backend_type],
            name=inst.name,
            sent=sent,
            tally=tally,
            check=progress.check if progress is not None and started else None,
            checked=NOT_2XX if started else frozenset(),
        )

    def _progress(self, scope: Scope, send: Send, inst: Instance, body: bytes) -> Progress | None:
        """The loading progress of a streamed request that must wait for ``inst``, unless
        the instance's ``loading_progress`` (else ``instances.loading_progress``) is off."""
        settings = self._config.instances
        enabled = inst.options.loading_progress
        if not (settings.loading_progress if enabled is None else enabled):
            return None
        if scope["method"] != "POST" or not jsonscan.is_streamed(body):
            return None
        return Progress(
            send,
            inst.name,
            shape_for(scope["path"]),
            settings.loading_progress_interval,
            self._response_headers[inst.options.backend_type],
            self._manager.clock,
        )

    # -- helpers ------------------------------------------------------------------------

    async def _authorized(
        self, scope: Scope, send: Send, *, management: bool, tally: Tally | None = None
    ) -> bool:
        refused = auth.rejection(self._keys, scope, management=management)
        if refused is None:
            return True
        if tally is not None:
            tally.answered(401)
        await auth.reject(send, refused, shape_for(scope["path"]))
        return False

    @contextlib.contextmanager
    def _limited(self, record: KeyRecord | None) -> Iterator[None]:
        """Hold the request to its stored key's limits while it is served (429 if over)."""
        book = self._keys.book
        if record is None or book is None:
            yield
            return
        book.admit(record)
        book.used(record)  # counted once admitted: a refused request is no use of the key
        try:
            yield
        finally:
            book.release(record)

    def _book_used(self, record: KeyRecord) -> None:
        book = self._keys.book
        if book is not None:
            book.used(record)

    def _permit(self, record: KeyRecord | None, inst: Instance) -> None:
        """Refuse what a ``per_instance`` key may not do with ``inst``: use it at all
        (403), start it (503 while it is not running), or make room for it (503 while
        every running slot is taken)."""
        if record is None or record.permission_mode == "allow_all":
            return
        permission = _permission(record, inst.name)
        if permission is None:
            raise PermissionDenied(f"this API key may not use the instance {inst.name}")
        if permission.can_start and permission.can_evict:
            return
        if inst.status in (Status.RUNNING, Status.RESTARTING):
            return
        if not permission.can_start:
            raise InstanceNotRunning(
                f"instance {inst.name} is {inst.status.value}, and this API key may not start it"
            )
        if self._manager.is_remote(inst.name):
            return  # its node decides whether there is room
        limit = self._config.instances.max_running_instances
        if 0 <= limit <= self._manager.running_count():
            raise CapacityReached(
                f"instance {inst.name} is not running and every running slot "
                f"(max_running_instances = {limit}) is taken: this API key may not stop "
                "another to make room",
                retry_after=10,
            )

    def _instance(self, name: str, not_found: str | None = None) -> Instance:
        try:
            return self._manager.get(name)
        except InstanceNotFound:
            if not_found is None:
                raise
            raise NotFound(not_found) from None

    def _models(self, record: KeyRecord | None) -> bytes:
        """Every model the key may use."""
        data = [
            self._model_object(inst) for inst in self._manager.list() if _may_use(record, inst.name)
        ]
        return json.dumps({"object": "list", "data": data}).encode()

    def _model(self, name: str, record: KeyRecord | None) -> bytes:
        """One model (``GET /v1/models/{name}``); 404 in the OpenAI shape if none (or
        none the key may use)."""
        not_found = f"model {name!r} not found: no instance has that name"
        if not _may_use(record, name):
            raise NotFound(not_found)
        inst = self._instance(name, not_found=not_found)
        return json.dumps(self._model_object(inst)).encode()

    def _model_object(self, inst: Instance) -> dict[str, object]:
        """The model of an instance: its status, readiness and the node it runs on (one
        that has it ready, for an instance on several)."""
        manager = self._manager
        copies = manager.copies(inst.name)
        node = manager.nodes.local
        elsewhere = manager.is_remote(inst.name) or not manager.is_ready(inst.name)
        if copies is not None and elsewhere and (copies.ready or manager.is_remote(inst.name)):
            node = copies.lead_node()
        return {
            "id": inst.name,
            "object": "model",
            "created": inst.created,
            "owned_by": "llamactl",
            "status": inst.status.value,
            "ready": manager.is_ready(inst.name),
            "node": node,
        }

    def _serves_messages(self, name: str) -> bool:
        try:
            return spec_for(self._manager.get(name).options.backend_type).messages_api
        except LlamactlError:
            return False

    def _body_for(self, inst: Instance, body: bytes, is_json: bool) -> bytes:
        """The body to send: a backend that checks the name (its spec's ``rewrites_model``:
        vLLM, MLX) gets its own model name in a JSON body's ``model`` (its value replaced,
        every other byte kept)."""
        options = inst.options
        spec = spec_for(options.backend_type)
        if not is_json or not spec.rewrites_model:
            return body
        model = spec.served_model_name(options.backend_options)
        span = jsonscan.model_span(body)
        if not model or span is None:
            return body
        start, end = span
        whole = memoryview(body)  # slices of a view are not copies: the join is the one copy
        return b"".join((whole[:start], json.dumps(model).encode(), whole[end:]))


def _identify(tally: Tally, inst: Instance | None, record: KeyRecord | None) -> None:
    """Tell ``tally`` the request's instance and its stored key (id and name, never the
    key)."""
    if inst is not None:
        tally.instance = inst.name
        tally.backend = inst.options.backend_type.value
    if record is not None:
        tally.key_id, tally.key_name = record.id, record.name


async def _answer_json(send: Send, tally: Tally | None, body: bytes) -> None:
    if tally is not None:
        tally.answered(200)
    await send_json(send, 200, body)


def _permission(record: KeyRecord, name: str) -> KeyPermission | None:
    for permission in record.permissions:
        if permission.instance_name == name:
            return permission
    return None


def _may_use(record: KeyRecord | None, name: str) -> bool:
    return (
        record is None
        or record.permission_mode == "allow_all"
        or (_permission(record, name) is not None)
    )


def _check_served(inst: Instance, path: str) -> None:
    """``NotServed`` (501) for Anthropic's Messages API on a backend without it."""
    if shape_for(path) is not Shape.ANTHROPIC:
        return
    spec = spec_for(inst.options.backend_type)
    if not spec.messages_api:
        raise NotServed(
            f"instance {inst.name} runs {spec.label}, which does not serve Anthropic's "
            f"Messages API ({path}): use /v1/chat/completions with it"
        )


def _backend_key(inst: Instance) -> str | None:
    """The key the instance's backend itself requires, if it has one."""
    options = inst.options
    return spec_for(options.backend_type).api_key(options.backend_options)


def _target(scope: Scope, name: str) -> bytes:
    """The request target to send: the raw path as received (never the decoded one),
    without the route's instance prefix, and the query string without ``api_key``."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    if raw[:4] == b"/v1/" and not scope["query_string"]:  # nothing to take out
        return _safe(raw)
    prefix = _RAW_PREFIX.match(raw)
    if prefix is not None:
        segment = prefix.group(1) if prefix.group(1) is not None else prefix.group(2)
        if unquote_to_bytes(segment) != name.encode("utf-8"):
            raise InvalidInput(f"the instance name in the path is not plainly {name!r}")
        raw = raw[prefix.end() :] or b"/"
    query = _without_api_key(scope["query_string"])
    return _safe(raw + b"?" + query if query else raw)


def _remote_target(scope: Scope) -> bytes:
    """The request target for another node: the raw path as received, whole (the node
    routes it as this one would), and the query string without ``api_key``."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = _without_api_key(scope["query_string"])
    return _safe(raw + b"?" + query if query else raw)


def _safe(target: bytes) -> bytes:
    if _UNSAFE_TARGET.search(target) is not None:
        raise InvalidInput("the request path holds characters that cannot be forwarded")
    return target


def _without_api_key(query: bytes) -> bytes:
    """``query`` without its ``api_key`` parameters (llamactl's key stays here), the
    others kept in their order and spelling."""
    if b"key" not in query and b"%" not in query:
        return query
    pairs = query.split(b"&")
    kept = [pair for pair in pairs if _query_name(pair) != b"api_key"]
    return query if len(kept) == len(pairs) else b"&".join(kept)


def _query_name(pair: bytes) -> bytes:
    return unquote_to_bytes(pair.partition(b"=")[0].replace(b"+", b" "))


def _path_name(segment: str) -> str:
    """The instance name of a (decoded) path segment; ``InvalidInstanceName`` (400) if it
    is not one. Not decoded again: "%2541" names "%41", never "A"."""
    return validate_name(segment)


def _model_of(scope: Scope, body: bytes) -> tuple[str, bool]:
    """The ``model`` of a multipart form or a JSON object, and whether the body is JSON.

    A small body is parsed whole, which is quickest; one that does not parse, and every
    large one, is scanned (``jsonscan``), never built, so its size costs no more memory.
    Both read the same ``model`` from valid JSON (the last one)."""
    content_type = b""
    for key, value in scope["headers"]:
        if key == b"content-type":
            content_type = bytes(value).lower()
            break
    if content_type.startswith(b"multipart/form-data"):
        match = _MULTIPART_MODEL.search(body)
        model = match.group(1).decode("utf-8", "replace") if match else None
        is_json = False
    else:
        model = _small_json_model(body) if len(body) <= _PARSED_WHOLE else None
        if model is None:
            span = jsonscan.model_span(body)
            model = jsonscan.string_value(body, span) if span is not None else None
        is_json = True
    if not model:
        raise InvalidInput("the request has no 'model' string: name the instance to use")
    return model, is_json


def _small_json_model(body: bytes) -> str | None:
    """The ``model`` string of a small JSON object, or ``None`` to let the scan decide
    (the body is not valid JSON, not an object, or has no string ``model``)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    model = document.get("model")
    return model if isinstance(model, str) and model else None

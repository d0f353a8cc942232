"""``/api/v1/instances``: create, read, update and delete instances, run them, read logs.

Handlers translate HTTP into ``InstanceManager`` calls and nothing more: the manager
owns the rules, and errors it raises are rendered by ``server.errors``. Every
per-instance route checks the name (400) and then that the instance exists (404) before
doing anything else. The CRUD routes also answer with a trailing slash, as remote nodes
call them that way.

An instance that lives on other nodes is read from them on every read (the list asks
each node once, in parallel, and shows a node that does not answer with its last known
state); its logs come from the node that runs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from llamactl.config import AppConfig
from llamactl.errors import InvalidInput, LlamactlError
from llamactl.manager.logs import tail_lines
from llamactl.server.bodies import OPTIONS_SCHEMA, current_body, read_object
from llamactl.server.lifecycle import Services
from llamactl.server.responses import JSONResponse
from llamactl.server.routes_common import InstanceName, ServicesDep, error_responses

__all__ = ["router"]

router = APIRouter(tags=["instances"])

_OPTIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": OPTIONS_SCHEMA}},
    }
}
_FALLBACK_START_TIMEOUT = 30.0  # when instances.on_demand_start_timeout is 0


@router.get("/instances")
async def list_instances(services: ServicesDep) -> JSONResponse:
    """Every instance, sorted by name."""
    manager = services.manager
    await manager.refresh_all()
    return JSONResponse([current_body(manager, inst.name) for inst in manager.list()])


@router.post(
    "/instances/{name}",
    status_code=201,
    openapi_extra=_OPTIONS_BODY,
    responses=error_responses(400, 409),
)
@router.post("/instances/{name}/", include_in_schema=False)
async def create_instance(name: InstanceName, services: ServicesDep, request: Request) -> Response:
    """Create a stopped instance from its options; unset settings take the defaults."""
    options = await read_object(request)
    await services.manager.create(name, options)
    return JSONResponse(current_body(services.manager, name), status_code=201)


@router.get("/instances/{name}", responses=error_responses(400, 404))
@router.get("/instances/{name}/", include_in_schema=False)
async def get_instance(name: InstanceName, services: ServicesDep) -> JSONResponse:
    """The instance; for one on other nodes, as they say now (503 if none answers)."""
    await services.manager.refresh(name)
    return JSONResponse(current_body(services.manager, name))


@router.put(
    "/instances/{name}",
    openapi_extra=_OPTIONS_BODY,
    responses=error_responses(400, 404, 409, 502),
)
@router.put("/instances/{name}/", include_in_schema=False)
async def update_instance(name: InstanceName, services: ServicesDep, request: Request) -> Response:
    """Replace the options (``nodes`` are kept); a running instance restarts with them."""
    services.manager.get(name)
    options = await read_object(request)
    await services.manager.update(name, options)
    return JSONResponse(current_body(services.manager, name))


@router.delete(
    "/instances/{name}",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 404, 409),
)
@router.delete("/instances/{name}/", status_code=204, include_in_schema=False)
async def delete_instance(name: InstanceName, services: ServicesDep) -> Response:
    """Delete a stopped instance (409 while its backend may be running)."""
    services.manager.get(name)
    await services.manager.delete(name)
    if services.book is not None:  # its permissions went with it
        services.book.load(await anyio.to_thread.run_sync(services.db.list_keys))
    return Response(status_code=204)


@router.post("/instances/{name}/start", responses=error_responses(400, 404, 409, 502))
async def start_instance(
    name: InstanceName,
    services: ServicesDep,
    wait: Annotated[
        bool, Query(description="answer once the backend is ready (502 if it fails)")
    ] = False,
    timeout: Annotated[
        float | None,
        Query(
            gt=0,
            allow_inf_nan=False,
            description="seconds to wait with wait=true "
            "(default: instances.on_demand_start_timeout)",
        ),
    ] = None,
) -> JSONResponse:
    """Start the backend; ``running``/``starting`` at once, or ``ready`` with ``wait``."""
    manager = services.manager
    manager.get(name)
    if timeout is not None and not wait:
        raise InvalidInput("timeout applies only with wait=true")
    await manager.start(name)
    if wait:
        await manager.wait_ready(name, timeout or _start_timeout(services.config))
    return JSONResponse(current_body(manager, name))


@router.post("/instances/{name}/stop", responses=error_responses(400, 404))
async def stop_instance(name: InstanceName, services: ServicesDep) -> JSONResponse:
    """Stop the backend, letting requests in flight finish (within bounds)."""
    services.manager.get(name)
    await services.manager.stop(name)
    return JSONResponse(current_body(services.manager, name))


@router.post("/instances/{name}/restart", responses=error_responses(400, 404, 409, 502))
async def restart_instance(name: InstanceName, services: ServicesDep) -> JSONResponse:
    services.manager.get(name)
    await services.manager.restart(name)
    return JSONResponse(current_body(services.manager, name))


@router.get(
    "/instances/{name}/logs",
    response_class=PlainTextResponse,
    responses=error_responses(400, 404),
)
async def instance_logs(
    name: InstanceName,
    services: ServicesDep,
    lines: Annotated[
        str | None, Query(description="the last N lines; absent or 0: the whole file")
    ] = None,
) -> PlainTextResponse:
    """The instance's log file, whether or not it ran since llamactl started."""
    manager = services.manager
    manager.get(name)
    count = _line_count(lines)
    if manager.is_remote(name):
        owner = manager.remote(name)
        client = manager.nodes.client(owner.lead_node())
        params = {"lines": str(count)} if lines is not None else None
        answer = await client.call("GET", f"/instances/{name}/logs", params=params)
        return PlainTextResponse(answer.text)
    path = services.manager.log_path(name)
    return PlainTextResponse(await anyio.to_thread.run_sync(tail_lines, path, count))


_FOLLOW_LINES = 100
_KEEP_ALIVE = 15.0  # seconds between comments on a quiet stream, so proxies keep it open


@router.get(
    "/instances/{name}/logs/follow",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-sent events"},
        **error_responses(400, 404),
    },
)
async def follow_logs(
    name: InstanceName,
    services: ServicesDep,
    lines: Annotated[
        str | None, Query(description="how many past lines to send first (default 100)")
    ] = None,
) -> StreamingResponse:
    """Server-sent events: the last lines, then output as the backend writes it.

    ``event: log`` carries ``{"text": ...}`` (append it as it is); ``event: status``
    carries ``{"status", "readiness"}`` whenever either changes. The stream stays open
    until the client leaves, the server stops, or the instance is deleted (after an
    ``event: deleted``).
    """
    count = _FOLLOW_LINES if lines is None else _line_count(lines)
    if services.manager.is_remote(name):
        return await _follow_remote(services, name, count)
    owner = services.manager.owner(name)
    queue = owner.follow()  # before reading the past: nothing is missed between

    async def events() -> AsyncIterator[bytes]:
        try:
            past = await anyio.to_thread.run_sync(tail_lines, owner.log_path(), count)
            yield _sse("log", {"text": past + "\n" if past else ""})
            yield _sse("status", owner.status_event())
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), _KEEP_ALIVE)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield _sse(*event)
        finally:
            owner.unfollow(queue)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _follow_remote(services: Services, name: str, count: int) -> StreamingResponse:
    """The node's own follow stream, passed through as it arrives."""
    manager = services.manager
    owner = manager.remote(name)
    client = manager.nodes.client(owner.lead_node())
    stream = client.stream(f"/instances/{name}/logs/follow", {"lines": str(count)})
    pieces = await stream.__aenter__()  # the node's refusal is this request's error

    async def events() -> AsyncIterator[bytes]:
        ended = asyncio.ensure_future(owner.followers_end())
        try:
            while True:
                piece = asyncio.ensure_future(anext(pieces))
                await asyncio.wait((piece, ended), return_when=asyncio.FIRST_COMPLETED)
                if not piece.done():  # the server stops, or the instance is deleted
                    piece.cancel()
                    await asyncio.gather(piece, return_exceptions=True)
                    return
                yield piece.result()
        except (StopAsyncIteration, LlamactlError):
            return  # the node ended the stream, or went away
        finally:
            ended.cancel()
            await stream.__aexit__(None, None, None)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(kind: str, data: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _line_count(lines: str | None) -> int:
    if lines is None:
        return 0
    if not (lines.isascii() and lines.isdigit()):
        raise InvalidInput(f"lines must be a non-negative integer, got {lines!r}")
    try:
        return int(lines)
    except ValueError:  # longer than int() reads (4300 digits)
        raise InvalidInput(f"lines is too large ({len(lines)} digits)") from None


def _start_timeout(config: AppConfig) -> float:
    configured = config.instances.on_demand_start_timeout
    return float(configured) if configured > 0 else _FALLBACK_START_TIMEOUT

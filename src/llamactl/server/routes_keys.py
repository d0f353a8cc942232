"""``/api/v1/auth/keys``: the inference keys stored in the database (management key only).

A key is made here and shown once, in the answer to its creation; only its keyed hash is
stored. Every change is written first, then taken by the key book the inference routes
check keys against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Path, Request, Response

from llamactl.auth.stored import KeyBook, new_key
from llamactl.database.keys import KeyRecord
from llamactl.errors import Unavailable
from llamactl.server.bodies import read_object
from llamactl.server.key_bodies import (
    Resolver,
    changes_from,
    key_body,
    new_key_from,
    permissions_body,
)
from llamactl.server.lifecycle import Services
from llamactl.server.responses import JSONResponse
from llamactl.server.routes_common import ServicesDep, error_responses

__all__ = ["router"]

router = APIRouter(tags=["keys"])

KeyId = Annotated[int, Path(ge=1, description="the key's id")]


def _book(services: Services) -> KeyBook:
    if services.book is None:
        raise Unavailable("stored keys are not available on this server")
    return services.book


@router.post("/auth/keys", status_code=201, responses=error_responses(400))
async def create_key(services: ServicesDep, request: Request) -> JSONResponse:
    """Make a key; the answer is the only place its plaintext ``key`` ever appears."""
    book = _book(services)
    body = await read_object(request)
    key = new_key()
    resolve = _resolver(services)
    new = await anyio.to_thread.run_sync(
        lambda: new_key_from(body, key, book.hasher.digest(key.encode()), resolve)
    )
    record = await anyio.to_thread.run_sync(services.db.create_key, new)
    book.put(record)
    return JSONResponse({**key_body(record), "key": key}, status_code=201)


@router.get("/auth/keys")
async def list_keys(services: ServicesDep) -> JSONResponse:
    _book(services)
    records = await anyio.to_thread.run_sync(services.db.list_keys)
    return JSONResponse([key_body(record) for record in records])


@router.get("/auth/keys/{key_id}", responses=error_responses(400, 404))
async def get_key(key_id: KeyId, services: ServicesDep) -> JSONResponse:
    _book(services)
    return JSONResponse(key_body(await anyio.to_thread.run_sync(services.db.get_key, key_id)))


@router.get("/auth/keys/{key_id}/permissions", responses=error_responses(400, 404))
async def key_permissions(key_id: KeyId, services: ServicesDep) -> JSONResponse:
    _book(services)
    record = await anyio.to_thread.run_sync(services.db.get_key, key_id)
    return JSONResponse(permissions_body(record))


@router.put("/auth/keys/{key_id}", responses=error_responses(400, 404))
async def update_key(key_id: KeyId, services: ServicesDep, request: Request) -> JSONResponse:
    """Change the fields given: name, permission_mode, permissions, limits, expiry,
    disabled (``null`` clears a limit or the expiry)."""
    book = _book(services)
    body = await read_object(request)
    db, resolve = services.db, _resolver(services)

    def write() -> KeyRecord:
        changes = changes_from(body, db.get_key(key_id), resolve)
        return db.update_key(key_id, changes)

    record = await anyio.to_thread.run_sync(write)
    book.put(record)
    return JSONResponse(key_body(record))


@router.delete(
    "/auth/keys/{key_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 404),
)
async def delete_key(key_id: KeyId, services: ServicesDep) -> Response:
    book = _book(services)
    await anyio.to_thread.run_sync(services.db.delete_key, key_id)
    book.remove(key_id)
    return Response(status_code=204)


def _resolver(services: Services) -> Resolver:
    db = services.db

    def resolve(names: Sequence[str], ids: Sequence[int]) -> tuple[dict[str, int], dict[int, str]]:
        return db.resolve_instances(names, ids)

    return resolve

"""``/api/v1`` about llamactl itself: version, configuration (no secrets) and nodes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from llamactl import __version__
from llamactl.config import public_config
from llamactl.errors import NotFound
from llamactl.server.responses import JSONResponse
from llamactl.server.routes_common import ServicesDep, error_responses

__all__ = ["router"]

router = APIRouter(tags=["system"])


@router.get("/version", response_class=PlainTextResponse)
async def version() -> PlainTextResponse:
    return PlainTextResponse(f"Version: {__version__}\nCommit: unknown\nBuild Time: unknown\n")


@router.get("/config")
async def config(services: ServicesDep) -> JSONResponse:
    """The configuration in effect, with every key and node API key left out."""
    return JSONResponse(public_config(services.config))


@router.get("/nodes")
async def list_nodes(services: ServicesDep) -> JSONResponse:
    """Every configured node by name; this llamactl's own node has the address ``""``."""
    nodes = services.config.nodes
    return JSONResponse({name: {"address": nodes[name].address} for name in sorted(nodes)})


@router.get("/nodes/{name}", responses=error_responses(404))
async def get_node(name: str, services: ServicesDep) -> JSONResponse:
    node = services.config.nodes.get(name)
    if node is None:
        known = ", ".join(sorted(services.config.nodes)) or "none"
        raise NotFound(f"node not found: {name} (configured: {known})")
    return JSONResponse({"address": node.address})

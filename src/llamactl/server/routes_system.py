"""``/api/v1`` about llamactl itself: version, configuration (no secrets) and nodes."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from llamactl import __version__
from llamactl.config import public_config
from llamactl.errors import NotFound
from llamactl.manager.nodes import NodeState
from llamactl.server.lifecycle import Services
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
    """Every configured node by name, with its health as last checked (every
    ``node_check_interval``); this llamactl's own node has the address ``""``."""
    names = sorted(services.config.nodes)
    return JSONResponse({name: _node_body(services, name) for name in names})


@router.get("/nodes/{name}", responses=error_responses(404))
async def get_node(name: str, services: ServicesDep) -> JSONResponse:
    """One node, checked now (this one answers for itself)."""
    if name not in services.config.nodes:
        known = ", ".join(sorted(services.config.nodes)) or "none"
        raise NotFound(f"node not found: {name} (configured: {known})")
    if name != services.config.local_node:
        await services.manager.nodes.check(name)
    return JSONResponse(_node_body(services, name))


def _node_body(services: Services, name: str) -> dict[str, object]:
    config, manager = services.config, services.manager
    if name == config.local_node:
        here = manager.local_list()
        return {
            "address": config.nodes[name].address,
            "local": True,
            "status": NodeState.HEALTHY.value,
            "error": None,
            "rtt_ms": 0.0,
            "version": __version__,
            "checked_at": time.time(),
            "instances": len(here),
            "running": manager.running_count(),
            "max_running_instances": config.instances.max_running_instances,
        }
    health = manager.nodes.health(name)
    return {
        "address": config.nodes[name].address,
        "local": False,
        "status": health.state.value,
        "error": health.error,
        "rtt_ms": None if health.rtt is None else round(health.rtt * 1000, 2),
        "version": health.version,
        "checked_at": health.checked_at,
        "instances": health.instances,
        "running": health.running,
        "max_running_instances": health.max_running,
    }

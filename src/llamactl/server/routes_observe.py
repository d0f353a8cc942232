"""What llamactl saw: ``/metrics`` for Prometheus, ``/metrics/targets`` for its service
discovery, and the activity log under ``/api/v1/activity``.

``/metrics`` needs a management key unless ``metrics.require_auth`` is off (a Prometheus on
the same host), and is 404 while ``metrics.enabled`` is off. ``/metrics/targets`` lists
this node and every configured node in Prometheus' ``http_sd`` form, each labelled with
its ``node``. The activity routes read the request log (newest first) and its per-bucket
figures for charts.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from typing import Annotated
from urllib.parse import urlsplit

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from llamactl import auth
from llamactl.database.activity import Activity, ActivityQuery
from llamactl.errors import InvalidInput, NotFound, Unauthorized
from llamactl.instance import validate_name
from llamactl.observe import Metrics
from llamactl.server.lifecycle import Services
from llamactl.server.responses import JSONResponse
from llamactl.server.routes_common import ServicesDep, error_responses

__all__ = ["metrics_router", "router"]

router = APIRouter(tags=["activity"])
metrics_router = APIRouter(tags=["metrics"])

_STATUS_CLASS = re.compile(r"^([1-5])xx$")
_MAX_LIMIT = 1000
_MAX_SAMPLES = 100_000  # rows read for one chart at most (the newest)


def _metrics(services: Services, request: Request) -> Metrics:
    """The metrics, after the key check ``metrics.require_auth`` asks for."""
    config = services.config.metrics
    recorder = services.recorder
    if not config.enabled or recorder is None or recorder.metrics is None:
        raise NotFound("metrics are off on this server (metrics.enabled)")
    if config.require_auth:
        refused = auth.rejection(services.keys, request.scope, management=True)
        if refused is not None:
            raise Unauthorized(refused)
    return recorder.metrics


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **error_responses(401, 404)},
)
def metrics(services: ServicesDep, request: Request) -> Response:
    """Every metric in the Prometheus text format."""
    body = _metrics(services, request).exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@metrics_router.get("/metrics/targets", responses=error_responses(401, 404))
def metrics_targets(services: ServicesDep, request: Request) -> JSONResponse:
    """This node and every other configured node, in Prometheus' ``http_sd`` form."""
    _metrics(services, request)
    config = services.config
    here = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    groups: list[dict[str, object]] = [_target(here, request.url.scheme, "", config.local_node)]
    for name, node in sorted(config.nodes.items()):
        if name == config.local_node or not node.address:
            continue
        parts = urlsplit(node.address)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        groups.append(
            _target(f"{parts.hostname}:{port}", parts.scheme, parts.path.rstrip("/"), name)
        )
    return JSONResponse(groups)


def _target(address: str, scheme: str, prefix: str, node: str) -> dict[str, object]:
    return {
        "targets": [address],
        "labels": {"node": node, "__scheme__": scheme, "__metrics_path__": f"{prefix}/metrics"},
    }


# -- the activity log -------------------------------------------------------------------


def _statuses(text: str | None) -> tuple[int, int] | None:
    """The status range of the ``status`` filter: ``4xx``, ``error`` (400 and above),
    ``ok`` (below 400) or one code."""
    if text is None or text == "":
        return None
    text = text.strip().lower()
    if text == "error":
        return 400, 599
    if text == "ok":
        return 100, 399
    match = _STATUS_CLASS.match(text)
    if match:
        low = int(match.group(1)) * 100
        return low, low + 99
    if text.isdigit() and 100 <= int(text) <= 599:
        return int(text), int(text)
    raise InvalidInput(
        f"invalid status filter {text!r}: use a code (404), a class (4xx), 'error' or 'ok'"
    )


def _instance(name: str | None) -> str | None:
    return None if name is None or name == "" else validate_name(name)


def _seconds(name: str, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise InvalidInput(f"invalid {name} {value!r}: expected unix seconds")
    return value


@router.get("/activity", responses=error_responses(400))
async def list_activity(
    services: ServicesDep,
    instance: Annotated[str | None, Query(description="only this instance's requests")] = None,
    status: Annotated[
        str | None, Query(description="a code (404), a class (4xx), 'error' or 'ok'")
    ] = None,
    since: Annotated[float | None, Query(description="from this time on (unix seconds)")] = None,
    until: Annotated[float | None, Query(description="before this time (unix seconds)")] = None,
    after: Annotated[int | None, Query(ge=0, description="only rows with a larger id")] = None,
    before: Annotated[
        int | None, Query(ge=0, description="only rows with a smaller id (paging back)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=_MAX_LIMIT, description="rows at most")] = 100,
) -> JSONResponse:
    """The request log, newest first; ``next_before`` pages back when more may exist."""
    query = ActivityQuery(
        instance=_instance(instance),
        statuses=_statuses(status),
        since=_seconds("since", since),
        until=_seconds("until", until),
        after=after,
        before=before,
        limit=limit,
    )
    rows = await anyio.to_thread.run_sync(services.db.list_activity, query)
    more = len(rows) == limit
    return JSONResponse(
        {"items": [row.to_json() for row in rows], "next_before": rows[-1].id if more else None}
    )


@router.get("/activity/series", responses=error_responses(400))
async def activity_series(
    services: ServicesDep,
    instance: Annotated[str, Query(description="the instance to chart")],
    since: Annotated[
        float | None, Query(description="from this time on (unix seconds; default: 1 h ago)")
    ] = None,
    step: Annotated[int, Query(ge=1, le=86_400, description="bucket width in seconds")] = 60,
) -> JSONResponse:
    """Per bucket of ``step`` seconds: requests, errors, TTFB p50/p95, tokens/s, cold
    starts and their waits (only buckets that saw requests)."""
    name = validate_name(instance)
    start = _seconds("since", since)
    if start is None:
        start = time.time() - 3600
    rows = await anyio.to_thread.run_sync(services.db.activity_samples, name, start, _MAX_SAMPLES)
    return JSONResponse({"instance": name, "step": step, "points": _buckets(rows, step)})


def _buckets(rows: list[Activity], step: int) -> list[dict[str, object]]:
    groups: dict[int, list[Activity]] = {}
    for row in rows:
        groups.setdefault(int(row.time // step) * step, []).append(row)
    return [_point(at, group) for at, group in sorted(groups.items())]


def _point(at: int, rows: list[Activity]) -> dict[str, object]:
    first_bytes = sorted(row.ttfb for row in rows if row.ttfb is not None)
    rates = [row.tokens_per_second for row in rows if row.tokens_per_second is not None]
    loads = [row.queue_wait for row in rows if row.cold_start and row.queue_wait is not None]
    return {
        "time": at,
        "requests": len(rows),
        "errors": sum(1 for row in rows if row.status >= 400),
        "ttfb_p50": _quantile(first_bytes, 0.5),
        "ttfb_p95": _quantile(first_bytes, 0.95),
        "tokens_per_second": round(statistics.fmean(rates), 3) if rates else None,
        "cold_starts": sum(1 for row in rows if row.cold_start),
        "load_seconds": round(statistics.fmean(loads), 3) if loads else None,
    }


def _quantile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values (nearest rank), or ``None`` for none."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

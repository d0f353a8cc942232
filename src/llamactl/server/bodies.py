"""The JSON bodies of the management API: instances out, JSON objects in.

``instance_body`` is an instance as the API shows it: the stored record (``name``,
``status``, ``created``, ``options``) followed by what only the running manager knows
(``readiness``, ``failure``, ``restarts``, ``in_flight``, ``queued``, ``held``,
``idle_seconds``, ``pid``). ``read_object`` reads a request body as a JSON object with
errors that say what was wrong, and refuses a string anywhere in it that is not valid
Unicode text (a lone surrogate such as ``"\ud800"``). ``OPTIONS_SCHEMA`` documents the
create/update body in OpenAPI; validation itself is ``Options.from_json``.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from llamactl.backends import BackendType
from llamactl.errors import InvalidInput, InvalidJson
from llamactl.instance import Instance
from llamactl.instance.text import lone_surrogate
from llamactl.manager import InstanceManager
from llamactl.manager.runtime import RuntimeInfo

__all__ = ["OPTIONS_SCHEMA", "current_body", "instance_body", "read_object"]


def instance_body(inst: Instance, info: RuntimeInfo) -> dict[str, object]:
    """The API form of an instance: its JSON form plus readiness, failure and process."""
    body = inst.to_json()
    body["readiness"] = None if info.readiness is None else info.readiness.value
    body["failure"] = (
        None
        if info.failure is None
        else {"reason": info.failure.reason, "last_lines": list(info.failure.last_lines)}
    )
    body["restarts"] = info.restarts
    body["in_flight"] = info.in_flight
    body["queued"] = info.queued
    body["held"] = info.held
    body["idle_seconds"] = None if info.idle_seconds is None else round(info.idle_seconds, 1)
    body["pid"] = info.pid
    body["id"] = inst.id or None
    return body


def current_body(manager: InstanceManager, name: str) -> dict[str, object]:
    """The body of ``name`` as the manager sees it now, with the node it lives on; for an
    instance that lives on other nodes, also each node's copy and how that node is."""
    inst = manager.get(name)
    body = instance_body(inst, manager.info(name))
    copies = manager.copies(name)
    if copies is None:
        body["node"] = manager.nodes.local
        return body
    if manager.is_remote(name):
        lead = copies.lead_node()
        body["node"] = lead
        body["node_status"] = manager.nodes.health(lead).state.value
        body["copies"] = copies.views()
        return body
    here = {
        "node": manager.nodes.local,
        "node_status": "healthy",
        "status": body["status"],
        "readiness": body["readiness"],
        "pid": body["pid"],
        "defined": True,
    }
    body["node"] = manager.nodes.local
    body["copies"] = [here, *copies.views()]
    return body


async def read_object(request: Request) -> dict[str, object]:
    """The request body as a JSON object; ``InvalidJson`` or ``InvalidInput`` if it is not."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidJson("the request body is empty: send a JSON object")
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise InvalidJson("the request body is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise InvalidJson("the request body nests arrays or objects too deeply") from exc
    except ValueError as exc:  # an integer longer than int() reads (4300 digits)
        raise InvalidJson(f"the request body cannot be read: {str(exc).split(':')[0]}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"the request body must be a JSON object, got {_json_kind(data)}")
    bad_text = lone_surrogate(data)
    if bad_text is not None:
        key, detail = bad_text
        raise InvalidInput(f"{key or 'the request body'}: {detail}")
    return data


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# OpenAPI only: the instance options accepted by create and update (§1.5 of the docs).
OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["backend_type", "backend_options"],
    "properties": {
        "backend_type": {"type": "string", "enum": [kind.value for kind in BackendType]},
        "backend_options": {
            "type": "object",
            "description": "The backend's flags as snake_case keys; unknown keys become "
            "extra_args.",
        },
        "auto_restart": {"type": "boolean"},
        "max_restarts": {"type": "integer", "description": "-1 unlimited, 0 never"},
        "restart_delay": {"type": "integer", "description": "seconds"},
        "on_demand_start": {"type": "boolean"},
        "idle_timeout": {"type": "integer", "description": "minutes; 0 never"},
        "loading_progress": {
            "type": "boolean",
            "description": "SSE ': loading' comments for a streamed request that waits for a "
            "start; unset: instances.loading_progress",
        },
        "environment": {"type": "object", "additionalProperties": {"type": "string"}},
        "docker_enabled": {"type": "boolean"},
        "command_override": {"type": "string"},
        "nodes": {"type": "array", "items": {"type": "string"}},
    },
    "example": {
        "backend_type": "llama_cpp",
        "backend_options": {"model": "/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", "ctx_size": 4096},
        "idle_timeout": 30,
    },
}

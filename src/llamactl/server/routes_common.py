"""What every management route module shares: the services, a checked instance name and
the OpenAPI documentation of error responses."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from llamactl.instance import NAME_RULE, validate_name
from llamactl.server.lifecycle import Services

__all__ = ["InstanceName", "ServicesDep", "error_responses", "get_services"]


def get_services(request: Request) -> Services:
    """The services of the application that received ``request``."""
    services = request.app.state.services
    assert isinstance(services, Services)
    return services


async def instance_name(name: Annotated[str, Path(description=NAME_RULE)], request: Request) -> str:
    """The ``{name}`` path segment; ``InvalidInstanceName`` (400) if it breaks the rule.
    Over a shared database, a name not known here is looked up there first."""
    validate_name(name)
    await get_services(request).manager.catch_up(name)
    return name


ServicesDep = Annotated[Services, Depends(get_services)]
InstanceName = Annotated[str, Depends(instance_name)]


# The management error body; a 401 is in OpenAI's shape, which adds ``type`` and ``param``.
_ERROR_BODY = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": ["string", "null"]}, "message": {"type": "string"}},
        }
    },
}
_ERROR_DESCRIPTIONS = {
    400: "Invalid request: a malformed parameter or body",
    401: "A management API key is required",
    403: "With management auth off: a web page of a foreign origin (server.allowed_origins)",
    404: "Not found",
    409: "Conflicts with the instance's current state or a configured limit",
    413: "The request body is larger than server.max_request_body_mb",
    415: "A POST, PUT or DELETE body that is not application/json",
    502: "The backend failed to start or to run",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route for the error statuses it may answer."""
    return {
        status: {
            "description": _ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": _ERROR_BODY}},
        }
        for status in statuses
    }

"""What every management route module shares: the services and a checked instance name."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from llamactl.instance import NAME_RULE, validate_name
from llamactl.server.lifecycle import Services

__all__ = ["InstanceName", "ServicesDep", "get_services"]


def get_services(request: Request) -> Services:
    """The services of the application that received ``request``."""
    services = request.app.state.services
    assert isinstance(services, Services)
    return services


def instance_name(name: Annotated[str, Path(description=NAME_RULE)]) -> str:
    """The ``{name}`` path segment; ``InvalidInstanceName`` (400) if it breaks the rule."""
    return validate_name(name)


ServicesDep = Annotated[Services, Depends(get_services)]
InstanceName = Annotated[str, Depends(instance_name)]

"""The instance manager: registry, limits and (later) process supervision."""

from llamactl.manager.manager import InstanceManager, instance_defaults

__all__ = ["InstanceManager", "instance_defaults"]

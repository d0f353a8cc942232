"""The instance manager: the registry, limits and ports, and one owner per backend process."""

from llamactl.manager.manager import InstanceManager
from llamactl.manager.rules import instance_defaults

__all__ = ["InstanceManager", "instance_defaults"]

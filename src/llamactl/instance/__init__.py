"""Instances: names, statuses, options and the instance record itself.

Pure: this package validates and converts values; it starts no process, opens no socket
and touches no file.
"""

from llamactl.instance.instance import Failure, Instance
from llamactl.instance.names import MAX_NAME_LENGTH, NAME_RULE, validate_name
from llamactl.instance.options import InstanceDefaults, Options
from llamactl.instance.status import Status, ensure_transition, parse_status

__all__ = [
    "MAX_NAME_LENGTH",
    "NAME_RULE",
    "Failure",
    "Instance",
    "InstanceDefaults",
    "Options",
    "Status",
    "ensure_transition",
    "parse_status",
    "validate_name",
]

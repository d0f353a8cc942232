"""The persisted process status of an instance and the moves between statuses. No I/O.

The status says what the llamactl-managed process is doing, not whether the backend is
ready to answer requests (readiness is reported beside it, elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from llamactl.backends.values import expected
from llamactl.errors import InvalidTransition

__all__ = ["Status", "ensure_transition", "parse_status"]


class Status(StrEnum):
    """Where an instance's process is in its lifecycle."""

    # No process; the instance waits for a start (manual, on demand or at boot).
    STOPPED = "stopped"
    # The process has been spawned and has not exited (it may still be loading).
    RUNNING = "running"
    # The process exited abnormally and will not be restarted automatically.
    FAILED = "failed"
    # The process exited abnormally; a restart is scheduled after the restart delay.
    RESTARTING = "restarting"
    # A stop was requested; in-flight requests drain, then the process is signalled.
    SHUTTING_DOWN = "shutting_down"

    def can_transition_to(self, new: Status) -> bool:
        """Whether an instance in this status may move to ``new`` (same status: yes)."""
        return new is self or new in _TRANSITIONS[self]

    @classmethod
    def check_transition(cls, old: Status, new: Status) -> None:
        """Raise ``InvalidTransition`` unless ``old`` may move to ``new``."""
        ensure_transition(old, new)


# Allowed moves, besides staying in the same status.
_TRANSITIONS: Mapping[Status, frozenset[Status]] = MappingProxyType(
    {
        # A start whose process cannot be spawned goes straight to failed.
        Status.STOPPED: frozenset({Status.RUNNING, Status.FAILED}),
        Status.FAILED: frozenset({Status.RUNNING, Status.STOPPED}),
        Status.RUNNING: frozenset(
            {Status.STOPPED, Status.FAILED, Status.RESTARTING, Status.SHUTTING_DOWN}
        ),
        Status.RESTARTING: frozenset({Status.RUNNING, Status.STOPPED, Status.FAILED}),
        Status.SHUTTING_DOWN: frozenset({Status.STOPPED, Status.FAILED}),
    }
)


def ensure_transition(old: Status, new: Status) -> None:
    """Raise ``InvalidTransition`` with a sentence when ``old`` may not move to ``new``."""
    if old.can_transition_to(new):
        return
    allowed = " or ".join(f"'{status}'" for status in sorted(_TRANSITIONS[old]))
    raise InvalidTransition(
        f"An instance cannot go from '{old}' to '{new}'; from '{old}' it can only go to {allowed}."
    )


def parse_status(value: object, field: str = "status") -> Status:
    """Read a status name; anything else raises ``InvalidOptions`` naming ``field``."""
    if isinstance(value, str) and value in _NAMES:
        return Status(value)
    raise expected(field, f"one of {_CHOICES}", value)


_NAMES = frozenset(status.value for status in Status)
_CHOICES = ", ".join(f"'{status}'" for status in Status)

"""One named instance: its status, creation time, options and last failure. No I/O.

``Instance`` is frozen: a status change or an options update gives a new object
(``with_status`` checks the transition, ``with_options`` swaps the options), so a value
handed to another thread or layer never changes under it. ``failure`` is why the backend
last ended badly; it is stored so that it survives a restart of llamactl, but it is not
part of the JSON form (the API reports it beside the instance).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from llamactl.backends.values import check_int, describe, expected, invalid, nested
from llamactl.errors import InvalidInstanceName, InvalidOptions
from llamactl.instance.names import validate_name
from llamactl.instance.options import Options
from llamactl.instance.status import Status, ensure_transition, parse_status

__all__ = ["Failure", "Instance"]

_KEYS = ("name", "status", "created", "options")
_KEY_LIST = ", ".join(_KEYS)


@dataclass(frozen=True)
class Failure:
    """Why an instance is failed or restarting: what ended it and its last output."""

    reason: str
    last_lines: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Instance:
    """A named, configured backend; ``created`` is in unix seconds (0 when unknown)."""

    name: str
    created: int = 0
    status: Status = Status.STOPPED
    options: Options
    failure: Failure | None = None
    # The row id the database gave it (0 until it is stored); not part of what it is.
    id: int = dataclasses.field(default=0, compare=False)

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.created < 0:
            raise expected("created", "unix seconds >= 0", self.created)

    def with_status(self, new: Status) -> Instance:
        """A copy in status ``new``; raises ``InvalidTransition`` if the move is forbidden."""
        ensure_transition(self.status, new)
        return dataclasses.replace(self, status=new)

    def with_options(self, options: Options) -> Instance:
        """A copy with ``options`` replacing the current ones."""
        return dataclasses.replace(self, options=options)

    def with_failure(self, failure: Failure | None) -> Instance:
        """A copy whose last failure is ``failure`` (``None`` clears it)."""
        return self if failure == self.failure else dataclasses.replace(self, failure=failure)

    @property
    def is_running(self) -> bool:
        """Whether a process is up (``restarting`` does not count)."""
        return self.status is Status.RUNNING

    def to_json(self) -> dict[str, object]:
        """The JSON form: ``name``, ``status``, ``created`` (left out when 0), ``options``."""
        result: dict[str, object] = {"name": self.name, "status": str(self.status)}
        if self.created:
            result["created"] = self.created
        result["options"] = self.options.to_json()
        return result

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Instance:
        """Read the JSON form (API clients, legacy instance files); strict like ``Options``.

        A missing ``status`` means ``stopped`` and a missing ``created`` means 0.
        """
        if not isinstance(data, Mapping):
            raise expected("instance", "a JSON object", data)
        for key in data:
            if key not in _KEYS:
                value = data[key]
                detail = f"unknown instance key (value {describe(value)}); known: {_KEY_LIST}"
                raise invalid(str(key), detail, value)
        return cls(
            name=_name(data.get("name")),
            created=_created(data.get("created")),
            status=_status(data.get("status")),
            options=_options(data.get("options")),
        )


def _name(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInstanceName(f"Invalid instance name {value!r}: it must be a string.")
    return validate_name(value)


def _created(value: object) -> int:
    if value is None:
        return 0
    created = check_int("created", value)
    if created < 0:
        raise expected("created", "unix seconds >= 0", value)
    return created


def _status(value: object) -> Status:
    return Status.STOPPED if value is None else parse_status(value)


def _options(value: object) -> Options:
    if not isinstance(value, Mapping):
        raise expected("options", "a JSON object", value)
    try:
        return Options.from_json(value)
    except InvalidOptions as exc:
        raise nested(exc, "options") from exc

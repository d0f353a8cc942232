"""What the flags of ``llamactl keys create|edit`` ask for, as the keys API's JSON.

``--instance NAME[:LEVEL]`` lets a key use an instance at one of three levels, each a pair
of the API's flags (``LEVELS``): ``use`` it while it runs, also ``start`` it, or also
``evict`` others to start it (the default). ``--expires`` is a duration from now
(``30d``, ``12h``, ``90m``, ``1d12h``) or an ISO date or time (local time unless it names
its zone; a date alone is its midnight). A value that cannot be read is a
``click.BadParameter`` naming the flag and the value, before any request; the server
still checks what is sent (that an instance exists, that a limit is a number from 1).
``level_of`` names the level of a stored permission, for the tables.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence

import click

__all__ = [
    "DEFAULT_LEVEL",
    "LEVELS",
    "expiry",
    "key_changes",
    "level_of",
    "new_key",
    "parse_expiry",
    "parse_grants",
]

JsonObject = dict[str, object]

# level -> (can_start, can_evict)
LEVELS: Mapping[str, tuple[bool, bool]] = {
    "use": (False, False),
    "start": (True, False),
    "evict": (True, True),
}
DEFAULT_LEVEL = "evict"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")


def level_of(permission: Mapping[str, object]) -> str:
    """``use``, ``start`` or ``evict``: what the proxy lets a permission do (evicting
    without starting is using)."""
    if permission.get("can_start") is not True:
        return "use"
    return "evict" if permission.get("can_evict") is True else "start"


def _grant(item: str) -> JsonObject:
    name, sep, level = item.partition(":")
    if not name.strip():
        raise click.BadParameter(f"expected NAME[:LEVEL], got {item!r}", param_hint="--instance")
    level = level if sep else DEFAULT_LEVEL
    if level not in LEVELS:
        raise click.BadParameter(
            f"{item!r}: the level {level!r} is not one of {', '.join(LEVELS)}",
            param_hint="--instance",
        )
    can_start, can_evict = LEVELS[level]
    return {"instance": name.strip(), "can_start": can_start, "can_evict": can_evict}


def parse_grants(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> object:
    """``--instance NAME[:LEVEL]``, repeated: the API's ``permissions``, one per instance."""
    grants: list[JsonObject] = []
    for item in values:
        grant = _grant(item)
        if any(given["instance"] == grant["instance"] for given in grants):
            raise click.BadParameter(
                f"{grant['instance']!r} is given twice: give each instance once, with its level",
                param_hint="--instance",
            )
        grants.append(grant)
    return grants


def expiry(text: str, now: float) -> int:
    """The unix time ``text`` names: ``now`` plus a duration, or an ISO date or time."""
    if _DURATION.fullmatch(text):
        seconds = sum(int(count) * _UNITS[unit] for count, unit in _PART.findall(text))
        if seconds == 0:
            raise click.BadParameter(f"{text!r} is no time at all", param_hint="--expires")
        return _checked(int(now) + seconds, text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            "expected a duration from now (30d, 12h, 90m) or a date or time (2030-01-31, "
            f"2030-01-31T18:00, 2030-01-31T18:00Z), got {text!r}",
            param_hint="--expires",
        ) from None
    at = int(moment.timestamp())  # a time without a zone is local time
    if at <= now:
        raise click.BadParameter(f"{text!r} is in the past", param_hint="--expires")
    return _checked(at, text)


def _checked(at: int, text: str) -> int:
    """``at``, if it is a time a calendar can show (else the database could not hold it)."""
    try:
        datetime.datetime.fromtimestamp(at, datetime.UTC)
    except (OverflowError, OSError, ValueError):
        raise click.BadParameter(f"{text!r} is too far ahead", param_hint="--expires") from None
    return at


def parse_expiry(ctx: click.Context, param: click.Parameter, value: str | None) -> object:
    """``--expires``: the unix time it names, from the time the command runs."""
    import time

    return None if value is None else expiry(value, time.time())


def new_key(
    name: str,
    grants: Sequence[JsonObject],
    limits: Mapping[str, int | None],
    disabled: bool,
) -> JsonObject:
    """The body of ``POST /auth/keys``: every instance without ``grants``, else those.
    ``limits`` are ``expires_at``, ``max_concurrent`` and ``requests_per_minute``; those
    left out or ``None`` are not sent."""
    body: JsonObject = {"name": name, "permission_mode": "per_instance" if grants else "allow_all"}
    if grants:
        body["permissions"] = list(grants)
    body.update({field: value for field, value in limits.items() if value is not None})
    if disabled:
        body["disabled"] = True
    return body


def key_changes(
    name: str | None,
    grants: Sequence[JsonObject] | None,
    limits: Mapping[str, tuple[int | None, bool]],
    disabled: bool | None,
) -> JsonObject:
    """The body of ``PUT /auth/keys/ID``: only what the flags change.

    ``grants`` replaces the key's instances (``[]``: every instance, none listed);
    ``limits`` maps each API field to (its flag's value, whether its ``--no-...`` flag was
    given), which clears it (``null``).
    """
    body: JsonObject = {}
    if name is not None:
        body["name"] = name
    if grants is not None:
        body["permission_mode"] = "per_instance" if grants else "allow_all"
        body["permissions"] = list(grants)
    for field, (value, cleared) in limits.items():
        if cleared:
            body[field] = None
        elif value is not None:
            body[field] = value
    if disabled is not None:
        body["disabled"] = disabled
    return body

"""What ``llamactl instances list|get``, ``ps``, ``nodes`` and ``keys list|show`` print:
plain aligned columns.

Columns are separated by two spaces and padded to the widest cell, the last column not at
all, so that no line ends in spaces; nothing is cut to fit a width, and a line is the same
on a terminal and in a pipe (``grep``, ``awk``, ``cut`` read it). Newlines in a value
become spaces: one instance is one line. Pure functions of the server's JSON (and, for
the keys' times, of the time now).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence

from llamactl.cli.key_options import level_of

__all__ = [
    "columns",
    "format_idle",
    "format_span",
    "grants",
    "instance_lines",
    "instances_lines",
    "key_lines",
    "keys_lines",
    "node_lines",
    "nodes_lines",
    "running_lines",
]

_GAP = "  "
# NODE goes last but one: the columns before it stay where scripts already read them.
_INSTANCE_HEADINGS = (
    "NAME", "BACKEND", "STATUS", "READINESS", "PORT", "RESTARTS", "NODE", "FAILURE"
)  # fmt: skip
_NODE_HEADINGS = (
    "NAME", "ADDRESS", "STATUS", "LATENCY MS", "VERSION", "RUNNING", "INSTANCES", "ERROR"
)  # fmt: skip
_RUNNING_HEADINGS = ("NAME", "MODEL", "BACKEND", "PORT", "READINESS", "IN FLIGHT", "IDLE", "UNTIL")
_KEY_HEADINGS = (
    "ID", "NAME", "PREFIX", "MODE", "INSTANCES", "LIMITS", "EXPIRES", "DISABLED", "LAST USED",
    "REQUESTS",
)  # fmt: skip
_KEY_TIMES = ("expires_at", "created_at", "updated_at", "last_used_at")
# What each level lets a key do with its instance, for ``keys show``.
_LEVEL_MEANINGS = {
    "use": "while it runs",
    "start": "may start it, not stop others for it",
    "evict": "may start it, stopping others to make room",
}
_HEALTHY = "healthy"
_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def columns(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (the first is the heading) as aligned lines without trailing spaces."""
    cells = [[_one_line(cell) for cell in row] for row in rows]
    widths = [max(len(row[index]) for row in cells) for index in range(len(cells[0]))]
    return [
        _GAP.join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def text(value: object) -> str:
    """A cell: ``-`` for nothing, else the value as text."""
    return "-" if value is None or value == "" else str(value)


def _backend_options(body: Mapping[str, object]) -> Mapping[str, object]:
    return _mapping(_mapping(body.get("options")).get("backend_options"))


def instances_lines(instances: Iterable[Mapping[str, object]]) -> list[str]:
    """``instances list``: one line per instance, the failure reason whole."""
    rows = [_INSTANCE_HEADINGS]
    for body in instances:
        options = _mapping(body.get("options"))
        rows.append(
            (
                text(body.get("name")),
                text(options.get("backend_type")),
                text(body.get("status")),
                text(body.get("readiness")),
                text(_backend_options(body).get("port")),
                text(body.get("restarts")),
                _node(body),
                text(_mapping(body.get("failure")).get("reason")),
            )
        )
    return columns(rows)


def _node(body: Mapping[str, object]) -> str:
    """The node an instance lives on, with that node's state when it is not healthy:
    ``gpu1 (unreachable)``."""
    status = body.get("node_status")
    if status is None or status == _HEALTHY:
        return text(body.get("node"))
    return f"{text(body.get('node'))} ({status})"


def running_lines(instances: Iterable[Mapping[str, object]]) -> list[str]:
    """``ps``: the running instances, with their model, requests in flight and idle time."""
    rows = [_RUNNING_HEADINGS]
    for body in instances:
        backend_options = _backend_options(body)
        options = _mapping(body.get("options"))
        model = backend_options.get("model") or backend_options.get("hf_repo")
        idle = body.get("idle_seconds")
        rows.append(
            (
                text(body.get("name")),
                text(model),
                text(options.get("backend_type")),
                text(backend_options.get("port")),
                text(body.get("readiness")),
                _in_flight(body),
                format_idle(idle),
                _until(idle, options.get("idle_timeout")),
            )
        )
    return columns(rows)


def _in_flight(body: Mapping[str, object]) -> str:
    in_flight, queued = body.get("in_flight"), body.get("queued")
    if not isinstance(in_flight, int):
        return "-"
    if isinstance(queued, int) and queued:
        return f"{in_flight} ({queued} queued)"
    return str(in_flight)


def format_idle(seconds: object) -> str:
    """``42s``, ``3m 05s``, ``2h 10m``; ``-`` while busy (the server then sends null)."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "-"
    whole = int(seconds)
    if whole < _MINUTE:
        return f"{whole}s"
    if whole < _HOUR:
        return f"{whole // _MINUTE}m {whole % _MINUTE:02d}s"
    return f"{whole // _HOUR}h {whole % _HOUR // _MINUTE:02d}m"


def _until(idle: object, idle_timeout: object) -> str:
    """When an idle instance is stopped: ``in 4m 10s``, ``never`` with no idle timeout."""
    if idle_timeout == 0:
        return "never"
    if not isinstance(idle, int | float) or not isinstance(idle_timeout, int):
        return "-"
    left = max(0.0, idle_timeout * _MINUTE - idle)
    return f"in {format_idle(left)}"


def instance_lines(body: Mapping[str, object]) -> list[str]:
    """``instances get``: one ``key  value`` line per field, options flattened."""
    return columns(list(_instance_rows(body)))


def _instance_rows(body: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    for key, value in body.items():
        if key == "created" and isinstance(value, int):
            yield key, datetime.datetime.fromtimestamp(value).isoformat(sep=" ")
        elif key not in {"options", "failure"}:
            yield key, text(value)
    options = dict(_mapping(body.get("options")))
    backend_options = _mapping(options.pop("backend_options", None))
    for key, value in options.items():
        yield key, _json_text(value)
    for key, value in backend_options.items():
        yield f"backend_options.{key}", _json_text(value)
    failure = _mapping(body.get("failure"))
    if failure:
        yield "failure", text(failure.get("reason"))
        last_lines = failure.get("last_lines")
        for line in last_lines if isinstance(last_lines, list) else []:
            yield "", str(line)


def _json_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def nodes_lines(nodes: Mapping[str, Mapping[str, object]]) -> list[str]:
    """``nodes``: one line per node, this one first, the error whole."""
    rows = [_NODE_HEADINGS]
    ordered = sorted(nodes.items(), key=lambda item: item[1].get("local") is not True)
    for name, body in ordered:
        rows.append(
            (
                name,
                _address(body),
                text(body.get("status")),
                _latency(body),
                text(body.get("version")),
                _running(body.get("running"), body.get("max_running_instances")),
                text(body.get("instances")),
                text(body.get("error")),
            )
        )
    return columns(rows)


def _address(body: Mapping[str, object]) -> str:
    """``local`` for this node (with its address, if it has one), ``remote URL`` for another."""
    where = "local" if body.get("local") is True else "remote"
    address = body.get("address")
    return f"{where} {address}" if isinstance(address, str) and address else where


def _latency(body: Mapping[str, object]) -> str:
    """The round trip of the last check, for another node that answered it: a node that is
    down keeps the figure of its last good check, which says nothing about it now."""
    rtt = body.get("rtt_ms")
    if body.get("local") is True or body.get("status") != _HEALTHY:
        return "-"
    if not isinstance(rtt, int | float) or isinstance(rtt, bool):
        return "-"
    return f"{rtt:.2f}"


def _running(running: object, limit: object) -> str:
    """``2/4``; ``2/unlimited`` with no limit (-1); ``-`` for what the node has not said."""
    if running is None and limit is None:
        return "-"
    most = "unlimited" if isinstance(limit, int) and limit < 0 else text(limit)
    return f"{text(running)}/{most}"


def node_lines(name: str, body: Mapping[str, object]) -> list[str]:
    """``nodes NAME``: one ``key  value`` line per field, the check time as a local time."""
    rows = [("name", name)]
    for key, value in body.items():
        if key == "checked_at" and isinstance(value, int | float):
            checked = datetime.datetime.fromtimestamp(value).isoformat(sep=" ", timespec="seconds")
            rows.append((key, checked))
        else:
            rows.append((key, _json_text(value) if isinstance(value, bool) else text(value)))
    return columns(rows)


# -- stored keys ---------------------------------------------------------------------------


def format_span(seconds: float) -> str:
    """A length of time as ``format_idle`` says it, and ``3d 04h`` from a day on."""
    whole = int(seconds)
    if whole < _DAY:
        return format_idle(whole)
    return f"{whole // _DAY}d {whole % _DAY // _HOUR:02d}h"


def _from_now(at: object, now: float, *, none: str) -> str:
    """``in 29d 23h``, ``5m 03s ago``; ``none`` when there is no time."""
    if not isinstance(at, int | float) or isinstance(at, bool):
        return none
    if at > now:
        return f"in {format_span(at - now)}"
    return f"{format_span(now - at)} ago"


def _expires(at: object, now: float) -> str:
    """``in 29d 23h``, ``expired 2h 05m ago``, ``never``."""
    shown = _from_now(at, now, none="never")
    return f"expired {shown}" if isinstance(at, int | float) and at <= now else shown


def _permissions(body: Mapping[str, object]) -> list[Mapping[str, object]]:
    permissions = body.get("permissions")
    return [_mapping(item) for item in permissions] if isinstance(permissions, list) else []


def _grant(permission: Mapping[str, object]) -> str:
    """``alpha:use``; an instance without a name by its id (``#7:start``)."""
    name = permission.get("instance_name") or f"#{text(permission.get('instance_id'))}"
    return f"{name}:{level_of(permission)}"


def grants(body: Mapping[str, object]) -> list[str]:
    """The instances a key lists, with their levels: ``["alpha:use", "beta:evict"]``."""
    return [_grant(permission) for permission in _permissions(body)]


def _instances(body: Mapping[str, object]) -> str:
    """``all`` for an allow_all key, else its grants (``alpha:use,beta:evict``)."""
    if body.get("permission_mode") == "allow_all":
        return "all"
    return ",".join(grants(body)) or "none"


def _limits(body: Mapping[str, object]) -> str:
    """``2 at once, 60/min``; ``-`` for a key without limits."""
    limits = []
    if body.get("max_concurrent") is not None:
        limits.append(f"{body['max_concurrent']} at once")
    if body.get("requests_per_minute") is not None:
        limits.append(f"{body['requests_per_minute']}/min")
    return ", ".join(limits) or "-"


def keys_lines(keys: Iterable[Mapping[str, object]], now: float) -> list[str]:
    """``keys list``: one line per key, its times from ``now``; never a key itself (the
    server does not list it)."""
    rows = [_KEY_HEADINGS]
    for body in keys:
        rows.append(
            (
                text(body.get("id")),
                text(body.get("name")),
                text(body.get("prefix")),
                text(body.get("permission_mode")),
                _instances(body),
                _limits(body),
                _expires(body.get("expires_at"), now),
                "yes" if body.get("disabled") is True else "no",
                _from_now(body.get("last_used_at"), now, none="never"),
                text(body.get("requests")),
            )
        )
    return columns(rows)


def key_lines(body: Mapping[str, object], now: float) -> list[str]:
    """``keys show``: one ``key  value`` line per field, times as local times and from
    ``now``, one line per instance the key may use."""
    return columns(list(_key_rows(body, now)))


def _key_rows(body: Mapping[str, object], now: float) -> Iterator[tuple[str, str]]:
    for field, value in body.items():
        if field == "permissions":
            yield from _permission_rows(body)
        elif field in _KEY_TIMES:
            yield field, _moment(field, value, now)
        else:
            yield field, _json_text(value) if isinstance(value, bool) else text(value)


def _permission_rows(body: Mapping[str, object]) -> Iterator[tuple[str, str]]:
    if body.get("permission_mode") == "allow_all":
        yield "permissions", "every instance"
        return
    lines = [
        f"{_grant(permission)} ({_LEVEL_MEANINGS[level_of(permission)]})"
        for permission in _permissions(body)
    ]
    for index, line in enumerate(lines or ["none"]):
        yield "permissions" if index == 0 else "", line


def _moment(field: str, value: object, now: float) -> str:
    """``2030-01-31 18:00:00 (in 29d 23h)``; ``never`` for no expiry and no use yet."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "never" if field in {"expires_at", "last_used_at"} else text(value)
    local = datetime.datetime.fromtimestamp(value).isoformat(sep=" ", timespec="seconds")
    relative = _expires(value, now) if field == "expires_at" else _from_now(value, now, none="-")
    return f"{local} ({relative})"

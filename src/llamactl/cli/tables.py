"""What ``llamactl instances list|get``, ``ps`` and ``nodes`` print: plain aligned columns.

Columns are separated by two spaces and padded to the widest cell, the last column not at
all, so that no line ends in spaces; nothing is cut to fit a width, and a line is the same
on a terminal and in a pipe (``grep``, ``awk``, ``cut`` read it). Newlines in a value
become spaces: one instance is one line. Pure functions of the server's JSON.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = [
    "columns",
    "format_idle",
    "instance_lines",
    "instances_lines",
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
_HEALTHY = "healthy"
_MINUTE = 60
_HOUR = 60 * _MINUTE


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

"""The other llamactl nodes: where an instance lives, and how each node is doing.

``Nodes`` holds a ``NodeClient`` per configured node other than this one
(``local_node``), decides an instance's placement from its ``nodes`` (none, or a list
naming this node: here; otherwise on the nodes listed), and keeps each node's health,
checked in the background every ``node_check_interval``: ``GET /api/v1/version`` with
the node's key for health and round trip, then ``GET /api/v1/instances`` for what runs
there, handed to whoever listens (the manager copies it into its remote instances).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from llamactl.config import AppConfig
from llamactl.errors import InvalidInput, LlamactlError, NodeRefusedKey, NodeUnreachable
from llamactl.transport.nodes import NodeClient

__all__ = ["NodeHealth", "NodeState", "Nodes", "Placement"]

logger = logging.getLogger("llamactl")

Listener = Callable[[str, list[dict[str, Any]]], None]


class NodeState(StrEnum):
    """How a node answered its last check."""

    HEALTHY = "healthy"
    UNREACHABLE = "unreachable"
    UNAUTHORIZED = "unauthorized"  # it answers, but refuses the configured key
    UNKNOWN = "unknown"  # not checked yet


@dataclass(frozen=True)
class NodeHealth:
    """A node's last check: its state, the error, round trip, version and load."""

    state: NodeState = NodeState.UNKNOWN
    error: str | None = None
    rtt: float | None = None  # seconds
    version: str | None = None
    checked_at: float | None = None  # unix time
    instances: int | None = None
    running: int | None = None
    max_running: int | None = None  # -1: no limit

    @property
    def free(self) -> float:
        """Running slots left (infinite without a limit; 0 when not known)."""
        if self.max_running is None or self.running is None:
            return 0.0
        if self.max_running < 0:
            return float("inf")
        return float(max(self.max_running - self.running, 0))


@dataclass(frozen=True)
class Placement:
    """Where an instance lives: here, on other nodes, or both."""

    local: bool
    remote: tuple[str, ...]

    @property
    def remote_only(self) -> bool:
        return not self.local


class Nodes:
    """The configured nodes, their clients and their health; see the module docstring."""

    def __init__(self, config: AppConfig, header_timeout: float | None = None) -> None:
        self.local = config.local_node
        self._interval = config.node_check_interval.total_seconds()
        self._clients = {
            name: NodeClient(
                name,
                node.address,
                node.api_key.get_secret_value() if node.api_key is not None else None,
                local_node=self.local,
                ca_file=node.ca_file,
                connect_timeout=config.node_connect_timeout.total_seconds(),
                request_timeout=config.node_request_timeout.total_seconds(),
                header_timeout=header_timeout,
            )
            for name, node in sorted(config.nodes.items())
            if name != self.local
        }
        self._health = {name: NodeHealth() for name in self._clients}
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None

    # -- placement ----------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every node, this one first."""
        return [self.local, *self._clients]

    def placement(self, nodes: Sequence[str]) -> Placement:
        """Where an instance with these ``nodes`` lives; ``InvalidInput`` (400) naming an
        unknown node and the configured ones."""
        for name in nodes:
            if name != self.local and name not in self._clients:
                known = ", ".join(f"{node} (this one)" if node == self.local else node
                                  for node in self.names())  # fmt: skip
                raise InvalidInput(f"node {name} not found: the configured nodes are {known}")
        return self.stored_placement(nodes)

    def stored_placement(self, nodes: Sequence[str]) -> Placement:
        """The placement of a stored instance, whose nodes may have left the configuration."""
        if not nodes or self.local in nodes:
            return Placement(True, tuple(name for name in nodes if name != self.local))
        return Placement(False, tuple(nodes))

    def is_remote(self, nodes: Sequence[str]) -> bool:
        return bool(nodes) and self.local not in nodes

    def client(self, name: str) -> NodeClient:
        """The client of node ``name``; ``NodeUnreachable`` if it is not configured."""
        try:
            return self._clients[name]
        except KeyError:
            raise NodeUnreachable(f"node {name} is not in the configuration (nodes)") from None

    # -- health -------------------------------------------------------------------------

    def health(self, name: str) -> NodeHealth:
        return self._health.get(name) or NodeHealth(
            NodeState.UNREACHABLE, error=f"node {name} is not in the configuration (nodes)"
        )

    def listen(self, listener: Listener) -> None:
        """Call ``listener(node, instance_bodies)`` after every successful check."""
        self._listeners.append(listener)

    def reachable(self, name: str) -> bool:
        return self.health(name).state in (NodeState.HEALTHY, NodeState.UNKNOWN)

    def failed(self, name: str, error: LlamactlError) -> None:
        """Take what a call to ``name`` just learnt: it is unreachable or refuses the key."""
        if name not in self._health:
            return
        if isinstance(error, NodeRefusedKey):
            self._set(name, NodeState.UNAUTHORIZED, error.message)
        elif isinstance(error, NodeUnreachable):
            self._set(name, NodeState.UNREACHABLE, error.message)

    def _set(self, name: str, state: NodeState, error: str | None, **more: Any) -> None:
        before = self._health[name]
        after = replace(before, state=state, error=error, checked_at=time.time(), **more)
        self._health[name] = after
        if before.state is not state and before.state is not NodeState.UNKNOWN:
            log = logger.info if state is NodeState.HEALTHY else logger.warning
            log("node %s: %s%s", name, state.value, f" ({error})" if error else "")
        elif before.state is NodeState.UNKNOWN and state is not NodeState.HEALTHY:
            logger.warning("node %s: %s (%s)", name, state.value, error)

    async def check(self, name: str) -> NodeHealth:
        """Check ``name`` now (version, then its instances); its health after."""
        client = self.client(name)
        try:
            version, rtt = await client.version()
            bodies = await client.json("GET", "/instances")
            limits = await self._limits(client)
        except (NodeUnreachable, NodeRefusedKey) as exc:
            self.failed(name, exc)
            return self._health[name]
        except LlamactlError as exc:
            self._set(name, NodeState.UNREACHABLE, exc.message)
            return self._health[name]
        listed = [body for body in bodies if isinstance(body, dict)]
        running = sum(1 for body in listed if body.get("status") in ("running", "restarting"))
        self._set(
            name, NodeState.HEALTHY, None, rtt=rtt, version=version,
            instances=len(listed), running=running, max_running=limits,
        )  # fmt: skip
        for listener in self._listeners:
            listener(name, listed)
        return self._health[name]

    async def _limits(self, client: NodeClient) -> int | None:
        config = await client.json("GET", "/config")
        instances = config.get("instances") if isinstance(config, dict) else None
        limit = instances.get("max_running_instances") if isinstance(instances, dict) else None
        return limit if isinstance(limit, int) else None

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(name) for name in self._clients))

    def start_checks(self) -> None:
        """Check every node now and then every ``node_check_interval``, until ``close``."""
        if self._clients and self._task is None:
            self._task = asyncio.create_task(self._checks(), name="llamactl node checks")

    async def _checks(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:  # one bad sweep must not end the checks
                logger.exception("checking the nodes failed")
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for client in self._clients.values():
            await client.aclose()

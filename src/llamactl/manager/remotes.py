"""The copies of instances on other nodes: defined there, read back from there.

An instance whose ``nodes`` name other nodes has a ``RemoteInstance`` for its copies on
them. When it lives on other nodes only, that is its owner (the manager's registry holds
it in place of an ``InstanceProcess``); when its nodes also name this one, it runs here
as usual and the copies on the others stand beside it, for requests to go to whichever
node has it ready (see ``proxy.remote``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from llamactl.errors import LlamactlError
from llamactl.instance import Instance, Options
from llamactl.manager.nodes import Nodes
from llamactl.manager.remote import RemoteInstance

__all__ = ["Remotes"]


class Remotes:
    """Every instance's copies on other nodes, by name; see the module docstring.

    ``on_change(copies)`` is called when a copy's status, readiness or failure moves.
    """

    def __init__(self, nodes: Nodes, on_change: Callable[[RemoteInstance], None]) -> None:
        self.nodes = nodes
        self._on_change = on_change
        self._copies: dict[str, RemoteInstance] = {}
        nodes.listen(self._take_node_list)

    def of(self, name: str) -> RemoteInstance | None:
        """The copies of ``name`` on other nodes, if it has any."""
        return self._copies.get(name)

    def load(self, inst: Instance) -> RemoteInstance | None:
        """The copies of a stored instance (its status is theirs until they answer)."""
        placement = self.nodes.stored_placement(inst.options.nodes)
        if not placement.remote:
            return None
        copies = RemoteInstance(
            inst.name, self.nodes, placement.remote, self._on_change,
            status=inst.status, failure=inst.failure,
        )  # fmt: skip
        self._copies[inst.name] = copies
        return copies

    def forget(self, name: str) -> None:
        self._copies.pop(name, None)

    async def define(self, name: str, options: Options) -> tuple[RemoteInstance, Options]:
        """Create ``name`` on each of its other nodes; the copies, and the options to keep
        here for an instance that lives on them only (what the first node completed)."""
        placement = self.nodes.placement(options.nodes)
        copies = RemoteInstance(name, self.nodes, placement.remote, self._on_change)
        answered = await copies.define(options.to_json())
        return copies, _answered(answered, options)

    def adopt(self, copies: RemoteInstance) -> None:
        """Keep ``copies`` (defined on the nodes, and the row here written)."""
        self._copies[copies.name] = copies

    async def redefine(self, copies: RemoteInstance, options: Options) -> Options:
        """Replace the options on each node; the options to keep here (as ``define``)."""
        return _answered(await copies.redefine(options.to_json()), options)

    async def refresh_all(self) -> None:
        """Copy in every instance's copies: one list call per node, in parallel; a node
        that does not answer keeps its last known state (and is marked)."""
        nodes = {node for copies in self._copies.values() for node in copies.copies}
        await asyncio.gather(*(self._refresh_node(node) for node in sorted(nodes)))

    async def _refresh_node(self, node: str) -> None:
        try:
            bodies = await self.nodes.client(node).json("GET", "/instances")
        except LlamactlError as exc:
            self.nodes.failed(node, exc)
            return
        if isinstance(bodies, list):
            self._take_node_list(node, [body for body in bodies if isinstance(body, dict)])

    def _take_node_list(self, node: str, bodies: list[dict[str, Any]]) -> None:
        """A node's list of instances: copy each of our copies' state from it."""
        by_name = {body.get("name"): body for body in bodies}
        for copies in list(self._copies.values()):
            if node in copies.copies:
                body = by_name.get(copies.name)
                if body is None:
                    copies.gone_from(node)
                else:
                    copies.take(node, body)


def _answered(answered: Mapping[str, object], sent: Options) -> Options:
    """The options a node answered with, with our ``nodes``; ``sent`` if the answer
    cannot be read."""
    try:
        return dataclasses.replace(Options.from_json(answered), nodes=sent.nodes)
    except LlamactlError:
        return sent

"""Relaying inference for an instance that lives on other nodes.

The request goes to the instance's best node (``RemoteInstance.candidates``: where it is
ready, else the reachable node with the most free running slots), through that node's
pool (TLS for an https address), with the node's key in place of the client's and the
hop header. A node that cannot be connected to, before any byte of the request was sent,
is marked unreachable and the next candidate gets the request; once the request went
out, whatever happens is that node's answer (an error then ends the response and is not
retried). A node that refuses its key answers 502 here, never the node's 401.

The owning node does the on-demand start, the queueing and the eviction, and the
response streams through unbuffered; a client that goes away cancels the request there.
"""

from __future__ import annotations

import asyncio

from llamactl.errors import LlamactlError, NodeUnreachable
from llamactl.manager import InstanceManager
from llamactl.manager.nodes import NodeState
from llamactl.observe import Tally
from llamactl.proxy.asgi import DisconnectWatch, Receive, Scope, Send
from llamactl.proxy.upstream import (
    HeadCheck,
    NotConnected,
    Relay,
    Responder,
    Upstream,
    request_headers,
)
from llamactl.transport.nodes import NodeClient, check_one_hop, forwarded_by, sender

__all__ = ["RemoteRelay"]

_REFUSED_KEY = frozenset({401, 403})


class RemoteRelay:
    """Sends requests for remote instances to their nodes; see the module docstring."""

    def __init__(self, manager: InstanceManager, upstream: Upstream) -> None:
        self._manager = manager
        self._upstream = upstream

    def goes_elsewhere(self, name: str) -> bool:
        """Whether a request for ``name`` goes to another node: it lives on others only,
        or it also lives here but is not ready here while a copy elsewhere is, or another
        node has more free running slots than this one."""
        manager = self._manager
        if manager.is_remote(name):
            return True
        copies = manager.copies(name)
        if copies is None or manager.is_ready(name):
            return False
        if copies.ready:
            return True
        limit = manager.settings.max_running_instances
        here = float("inf") if limit < 0 else float(limit - manager.running_count())
        nodes = manager.nodes
        return any(
            nodes.reachable(node) and nodes.health(node).free > here for node in copies.copies
        )

    def relay_now(
        self,
        scope: Scope,
        responder: Responder,
        name: str,
        body: bytes,
        target: bytes,
        tally: Tally | None = None,
    ) -> Relay | None:
        """Relay a request for an instance that lives on other nodes only with no task in
        between (see ``ProxyApp.relay_now``): when its best node has it ready, is known
        healthy and has an idle connection, and the request did not come from a node.
        ``None``, having sent nothing, otherwise."""
        if sender(scope["headers"]) is not None:
            return None
        copies = self._manager.copies(name)
        if copies is None:
            return None
        node = copies.candidates()[0]
        nodes = self._manager.nodes
        if not copies.copies[node].ready or nodes.health(node).state is not NodeState.HEALTHY:
            return None
        client = nodes.client(node)
        address = client.address
        headers = request_headers(scope["headers"])
        headers.extend(client.relay_headers)
        if tally is not None:
            tally.node = node
        return self._upstream.relay_now(
            responder,
            method="POST",
            host=address.host,
            port=address.port,
            target=address.prefix.encode("latin-1") + target,
            headers=headers,
            body=body,
            extra_headers=(),
            name=f"{name} on node {node}",
            done=_nothing,
            transport=client.pool,
            check=self._refusal(client),
            checked=_REFUSED_KEY,
            tally=tally,
        )

    def _refusal(self, client: NodeClient) -> HeadCheck:
        """The error for a node's refusal of its key, which also marks the node."""

        def refused(status: int, body: bytes) -> LlamactlError:
            error = client.refusal(status, body)
            self._manager.nodes.failed(client.name, error)
            return error

        return refused

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        body: bytes,
        target: bytes,
        tally: Tally | None = None,
    ) -> None:
        """Relay to a node of ``name``: the first that takes the connection."""
        came_from = sender(scope["headers"])
        current = asyncio.current_task()
        assert current is not None
        watch = DisconnectWatch(receive, current)
        token = forwarded_by.set(came_from)
        try:
            await self._to_a_node(scope, send, name, body, target, watch, tally)
        except asyncio.CancelledError:
            if not watch.gone:
                raise
            current.uncancel()  # the client left: nothing more to send
        finally:
            forwarded_by.reset(token)
            watch.stop()

    async def _to_a_node(
        self,
        scope: Scope,
        send: Send,
        name: str,
        body: bytes,
        target: bytes,
        watch: DisconnectWatch,
        tally: Tally | None,
    ) -> None:
        nodes = self._manager.nodes
        tried: list[str] = []
        copies = self._manager.copies(name)
        assert copies is not None, "only instances with copies on other nodes come here"
        for node in copies.candidates():
            check_one_hop(node)
            client = nodes.client(node)
            if tally is not None:
                tally.node = node
            try:
                await self._relay(scope, send, client, name, body, target, watch, tally)
                return
            except NotConnected as exc:
                nodes.failed(node, client.unreachable(exc.message))
                tried.append(node)
            except LlamactlError as exc:
                nodes.failed(node, exc)
                raise
        raise NodeUnreachable(
            f"instance {name} lives on node(s) {', '.join(tried)}, and none can be reached",
            retry_after=5,
        )

    async def _relay(
        self,
        scope: Scope,
        send: Send,
        client: NodeClient,
        name: str,
        body: bytes,
        target: bytes,
        watch: DisconnectWatch,
        tally: Tally | None,
    ) -> None:
        address = client.address
        headers = request_headers(scope["headers"])
        headers.extend(client.relay_headers)
        await self._upstream.relay(
            send,
            method=scope["method"],
            host=address.host,
            port=address.port,
            target=address.prefix.encode("latin-1") + target,
            headers=headers,
            body=body,
            name=f"{name} on node {client.name}",
            sent=watch.start,
            transport=client.pool,
            check=self._refusal(client),
            checked=_REFUSED_KEY,
            tally=tally,
        )


def _nothing() -> None:
    """Nothing to count here: the node counts its own requests."""

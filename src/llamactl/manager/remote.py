"""An instance that lives on other nodes: its owner here, over their management API.

``RemoteInstance`` has the small interface of ``InstanceProcess`` (start, stop, wait until
ready, state), carried out by the owning nodes with their keys. It holds one ``Copy`` per
node the instance is defined on, each the node's own answer, taken whenever a call or a
node check returns it. This node runs nothing for it: no process, no port, no log. The
instance's status here is the most active of its copies' (running before restarting
before shutting down before failed before stopped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from llamactl.errors import BackendFailed, LlamactlError, NodeFailed, NodeUnreachable
from llamactl.instance import Failure, Options, Status
from llamactl.manager.lifecycle import StopCause
from llamactl.manager.nodes import Nodes, NodeState
from llamactl.manager.runtime import Readiness, RuntimeInfo

__all__ = ["Copy", "RemoteInstance"]

logger = logging.getLogger("llamactl")

_RANK = {
    Status.RUNNING: 0,
    Status.RESTARTING: 1,
    Status.SHUTTING_DOWN: 2,
    Status.FAILED: 3,
    Status.STOPPED: 4,
}
_WAIT_STEP = 0.2  # seconds between looks at a node while waiting for readiness


@dataclass
class Copy:
    """What one node last said about its copy of the instance."""

    node: str
    status: Status = Status.STOPPED
    readiness: Readiness | None = None
    failure: Failure | None = None
    pid: int | None = None
    restarts: int = 0
    in_flight: int = 0
    queued: int = 0
    idle_seconds: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    defined: bool = True  # False once the node said it has no such instance

    @property
    def ready(self) -> bool:
        return self.status is Status.RUNNING and self.readiness is Readiness.READY

    def take(self, body: Mapping[str, Any]) -> bool:
        """Take a node's instance body; whether anything shown here changed."""
        before = self._key()
        self.status = _status(body.get("status"))
        self.readiness = _readiness(body.get("readiness"))
        self.failure = _failure(body.get("failure"))
        self.pid = _int_or_none(body.get("pid"))
        self.restarts = _int_or_none(body.get("restarts")) or 0
        self.in_flight = _int_or_none(body.get("in_flight")) or 0
        self.queued = _int_or_none(body.get("queued")) or 0
        idle = body.get("idle_seconds")
        self.idle_seconds = float(idle) if isinstance(idle, int | float) else None
        options = body.get("options")
        self.options = options if isinstance(options, dict) else {}
        self.defined = True
        return self._key() != before

    def _key(self) -> tuple[object, ...]:
        return (self.status, self.readiness, self.failure, self.defined)


class RemoteInstance:
    """The owner of an instance whose nodes are all other nodes; see the module docstring.

    ``on_change(owner)`` is called whenever a copy's status, readiness or failure moves.
    """

    remote = True

    def __init__(
        self,
        name: str,
        nodes: Nodes,
        on: tuple[str, ...],
        on_change: Callable[[RemoteInstance], None],
        *,
        status: Status = Status.STOPPED,
        failure: Failure | None = None,
    ) -> None:
        self.name = name
        self.lock = asyncio.Lock()
        self._nodes = nodes
        self._on_change = on_change
        self.copies = {node: Copy(node, status=status, failure=failure) for node in on}
        self._ended = asyncio.Event()  # set when follow streams must end

    # -- state --------------------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self._lead().status

    @property
    def failure(self) -> Failure | None:
        return self._lead().failure

    @property
    def ready(self) -> bool:
        """Whether some node has the instance ready and answers its checks."""
        return any(copy.ready and self._nodes.reachable(copy.node) for copy in self._copies())

    def info(self, now: float) -> RuntimeInfo:
        lead = self._lead()
        return RuntimeInfo(
            readiness=lead.readiness,
            pid=None,  # the process is the other node's: its pid means nothing here
            failure=lead.failure,
            restarts=lead.restarts,
            in_flight=sum(copy.in_flight for copy in self._copies()),
            queued=sum(copy.queued for copy in self._copies()),
            last_activity=None,
            idle_seconds=lead.idle_seconds,
        )

    def views(self) -> list[dict[str, object]]:
        """Each node's copy, for the API."""
        return [
            {
                "node": copy.node,
                "node_status": self._nodes.health(copy.node).state.value,
                "status": copy.status.value,
                "readiness": None if copy.readiness is None else copy.readiness.value,
                "pid": copy.pid,
                "defined": copy.defined,
            }
            for copy in self.copies.values()
        ]

    def candidates(self) -> list[str]:
        """The nodes to send a request to, best first: those with it ready, then the
        reachable ones with the most free running slots, then the unreachable ones."""

        def rank(copy: Copy) -> tuple[int, float, str]:
            health = self._nodes.health(copy.node)
            reachable = health.state in (NodeState.HEALTHY, NodeState.UNKNOWN)
            warm = copy.ready or copy.status is Status.RUNNING
            group = 0 if reachable and warm else 1 if reachable else 2
            return group, -health.free, copy.node

        return [copy.node for copy in sorted(self._copies(), key=rank)]

    def lead_node(self) -> str:
        """The node whose copy speaks for the instance (where it runs, if it does)."""
        return self._lead().node

    def _copies(self) -> list[Copy]:
        return [copy for copy in self.copies.values() if copy.defined]

    def _lead(self) -> Copy:
        """The copy that speaks for the instance: the most active one."""
        copies = self._copies() or list(self.copies.values())
        return min(copies, key=lambda copy: (not copy.ready, _RANK[copy.status]))

    # -- what the nodes say -------------------------------------------------------------

    def take(self, node: str, body: Mapping[str, Any]) -> None:
        """A node's body of this instance (an answer, or a node check)."""
        copy = self.copies.get(node)
        if copy is not None and copy.take(body):
            self._on_change(self)

    def gone_from(self, node: str) -> None:
        """The node has no such instance (deleted there, or never created)."""
        copy = self.copies.get(node)
        if copy is not None and copy.defined:
            copy.defined, copy.status, copy.readiness = False, Status.STOPPED, None
            self._on_change(self)

    async def refresh(self) -> None:
        """Ask every node now. Raises the error of the first node that failed if none
        answered (the caller cannot show anything current)."""
        results = await asyncio.gather(
            *(self._refresh(node) for node in self.copies), return_exceptions=True
        )
        errors = [result for result in results if isinstance(result, LlamactlError)]
        if errors and len(errors) == len(results):
            raise errors[0]
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, LlamactlError):
                raise result

    async def _refresh(self, node: str) -> None:
        try:
            body = await self._call(node, "GET", "")
        except NodeFailed as exc:
            if exc.status != 404:
                raise
            self.gone_from(node)
            return
        self.take(node, body)

    # -- definitions on the nodes -------------------------------------------------------

    async def define(self, options: Mapping[str, object]) -> dict[str, Any]:
        """Create the instance on each node (each copy says it lives on that node); on a
        failure, delete it from those done and raise. Returns the options the first node
        answered with (completed with its defaults)."""
        done: list[str] = []
        try:
            for node in self.copies:
                body = await self._call(node, "POST", "", body=_for(node, options))
                self.take(node, body)
                done.append(node)
        except LlamactlError:
            await self._undefine(done)
            raise
        return self.copies[done[0]].options

    async def redefine(self, options: Mapping[str, object]) -> dict[str, Any]:
        """Replace the options on each node (a running copy restarts there)."""
        for node in self.copies:
            self.take(node, await self._call(node, "PUT", "", body=_for(node, options)))
        return next(iter(self.copies.values())).options

    async def undefine(self) -> None:
        """Delete the instance from every node; one that does not have it is fine."""
        await self._undefine(list(self.copies))

    async def _undefine(self, nodes: list[str]) -> None:
        for node in nodes:
            try:
                await self._call(node, "DELETE", "")
            except NodeFailed as exc:
                if exc.status != 404:
                    raise

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, options: Options | None = None, *, fresh: bool = True) -> None:
        """Start it on the best node (see ``candidates``), unless a copy already runs."""
        if any(copy.status in (Status.RUNNING, Status.RESTARTING) for copy in self._copies()):
            return
        error: LlamactlError | None = None
        for node in self.candidates():
            try:
                self.take(node, await self._call(node, "POST", "/start"))
                return
            except NodeUnreachable as exc:
                error = error or exc  # the next node may take it
        assert error is not None, "an instance lives on at least one node"
        raise error

    async def stop(self, reason: str | None = None, *, cause: StopCause = StopCause.MANUAL) -> None:
        """Stop every copy (the nodes drain their own requests). What is known here may be
        behind (a node starts its copy on demand), so each node is asked. A node that
        cannot be reached is passed over if another one stopped its copy."""
        errors: list[NodeUnreachable] = []
        for copy in self._copies():
            try:
                self.take(copy.node, await self._call(copy.node, "POST", "/stop"))
            except NodeUnreachable as exc:
                errors.append(exc)
        if errors and len(errors) == len(self._copies()):
            raise errors[0]

    async def stop_quietly(self) -> None:
        """``stop``, a failure logged rather than raised (copies beside a local one)."""
        try:
            await self.stop()
        except LlamactlError as exc:
            logger.warning("instance %s: could not stop its copies: %s", self.name, exc.message)

    async def restart(self) -> None:
        await self.stop("to restart")
        await self.start()

    async def wait_ready(self, timeout: float) -> None:
        """Wait until some node has it ready; ``BackendFailed`` if every copy failed or
        ``timeout`` passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.ready:
            copies = self._copies()
            if copies and all(copy.status is Status.FAILED for copy in copies):
                reason = self.failure.reason if self.failure else "it failed"
                raise BackendFailed(f"instance {self.name} failed to start: {reason}")
            if loop.time() >= deadline:
                raise BackendFailed(f"instance {self.name} did not become ready in {timeout:g} s")
            await asyncio.sleep(_WAIT_STEP)
            await self.refresh()

    async def halt(self) -> None:
        """Nothing: this node stopping leaves the other nodes' backends as they are."""

    def mark_stopped(self) -> None:
        """Nothing: the status is the nodes' (taken from their answers)."""

    def deleted(self) -> None:
        """The instance is deleted: the follow streams relayed from its node end."""
        self._ended.set()

    def end_followers(self) -> None:
        """The server is stopping: the follow streams relayed from its node end."""
        self._ended.set()

    async def followers_end(self) -> None:
        """Return once follow streams relayed for this instance must end."""
        await self._ended.wait()

    async def _call(
        self, node: str, method: str, suffix: str, body: Mapping[str, object] | None = None
    ) -> dict[str, Any]:
        client = self._nodes.client(node)
        path = f"/instances/{self.name}{suffix}"
        try:
            if method == "DELETE":  # 204, no body
                await client.call(method, path)
                return {}
            answer = await client.json(method, path, body=body)
        except LlamactlError as exc:
            self._nodes.failed(node, exc)
            raise
        return answer if isinstance(answer, dict) else {}


def _for(node: str, options: Mapping[str, object]) -> dict[str, object]:
    """The options as ``node`` gets them: its copy lives there, on it alone."""
    return {**options, "nodes": [node]}


def _status(value: object) -> Status:
    try:
        return Status(str(value))
    except ValueError:
        return Status.STOPPED


def _readiness(value: object) -> Readiness | None:
    try:
        return Readiness(str(value)) if value is not None else None
    except ValueError:
        return None


def _failure(value: object) -> Failure | None:
    if not isinstance(value, dict) or not isinstance(value.get("reason"), str):
        return None
    lines = value.get("last_lines")
    kept = tuple(line for line in lines if isinstance(line, str)) if isinstance(lines, list) else ()
    return Failure(value["reason"], kept)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

"""Ports for backends: the lowest free port of the configured range that the OS also has free.

A port is held by its instance from creation until deletion, so an instance keeps its port
across restarts. An explicit port may lie outside the range; it only has to be unique.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections.abc import Callable, Sequence

from llamactl.errors import Conflict, LimitReached
from llamactl.instance import Instance, Options

__all__ = ["LOOPBACK", "PortAllocator", "connect_host", "is_port_free", "log_portless", "with_port"]

LOOPBACK = "127.0.0.1"  # where backends listen unless their options say otherwise

logger = logging.getLogger(__name__)


def is_port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` right now.

    SO_REUSEADDR, as servers set it, so that connections of a stopped backend still in
    TIME_WAIT do not count as the port being taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Tracks which instance holds which port."""

    def __init__(
        self, port_range: tuple[int, int], is_free: Callable[[int], bool] = is_port_free
    ) -> None:
        self._first, self._last = port_range
        self._is_free = is_free
        self._owners: dict[int, str] = {}

    def owner(self, port: int) -> str | None:
        return self._owners.get(port)

    def allocate(self, name: str) -> int:
        """Reserve the lowest port of the range that nobody holds and the OS has free."""
        for port in range(self._first, self._last + 1):
            if port not in self._owners and self._is_free(port):
                self._owners[port] = name
                return port
        raise LimitReached(f"no free port left in instances.port_range {self._first}-{self._last}")

    def reserve(self, name: str, port: int) -> None:
        """Reserve an explicit port for ``name``; refused if another instance holds it."""
        holder = self._owners.get(port)
        if holder is not None and holder != name:
            raise Conflict(f"port {port} is already used by instance {holder}")
        self._owners[port] = name

    def release(self, name: str) -> None:
        """Free every port that ``name`` holds."""
        for port in [port for port, holder in self._owners.items() if holder == name]:
            del self._owners[port]

    def claim(self, name: str, port: int | None) -> int:
        """Reserve ``port`` for ``name``, or allocate one if it is ``None``."""
        if port is None:
            return self.allocate(name)
        self.reserve(name, port)
        return port

    def keep_only(self, name: str, port: int | None) -> None:
        """Free the ports of ``name`` other than ``port``."""
        self.release(name)
        if port is not None:
            self.reserve(name, port)

    def fix(self, inst: Instance) -> Instance | None:
        """``inst`` with a newly allocated port if it has none (or shares one), else
        ``None``; ``LimitReached`` if the range is full."""
        port = inst.options.backend_options.port
        if port is None or self.owner(port) != inst.name:
            return inst.with_options(with_port(inst.options, self.allocate(inst.name)))
        return None

    def settle(self, instances: Sequence[Instance]) -> tuple[list[Instance], list[str]]:
        """Reserve the stored ports (the first instance to hold one keeps it) and give
        the others one: the instances whose port changed, and those left without one
        because the range is full (each gets one when it starts, if one is free then)."""
        for inst in instances:
            port = inst.options.backend_options.port
            if port is not None and self.owner(port) is None:
                self.reserve(inst.name, port)
        fixed, portless = [], []
        for inst in instances:
            try:
                moved = self.fix(inst)
            except LimitReached:
                portless.append(inst.name)
                continue
            if moved is not None:
                fixed.append(moved)
        return fixed, portless


def with_port(options: Options, port: int) -> Options:
    return dataclasses.replace(options, backend_options=options.backend_options.replace(port=port))


def log_portless(names: Sequence[str], port_range: tuple[int, int]) -> None:
    """Say which instances have no port because the range is full (if any)."""
    if not names:
        return
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    logger.error(
        "%d instances have no port because instances.port_range %d-%d is full (%s); "
        "each gets one when it starts, if one is free by then",
        len(names),
        *port_range,
        shown,
    )


def connect_host(host: str) -> str:
    """Where to connect to reach a backend bound to ``host`` (wildcards mean loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)

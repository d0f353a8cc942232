"""Ports for backends: the lowest free port of the configured range that the OS also has free.

A port is held by its instance from creation until deletion, so an instance keeps its port
across restarts. An explicit port may lie outside the range; it only has to be unique.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from llamactl.errors import Conflict, LimitReached

__all__ = ["PortAllocator", "is_port_free"]


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


def connect_host(host: str) -> str:
    """Where to connect to reach a backend bound to ``host`` (wildcards mean loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)

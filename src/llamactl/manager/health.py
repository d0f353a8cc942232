"""Readiness probes: one HTTP GET against a backend's health endpoint.

A tiny client on a raw asyncio connection: the probe runs every few hundred milliseconds
while a backend loads, and needs no more than the status line.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["connect_host", "probe"]


def connect_host(host: str) -> str:
    """Where to connect to reach a backend bound to ``host`` (wildcards mean loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


async def probe(host: str, port: int, path: str = "/health", timeout: float = 2.0) -> int | None:
    """The HTTP status of ``GET path``, or ``None`` when nothing answers in time."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(connect_host(host), port), timeout
        )
    except (OSError, TimeoutError):
        return None
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("ascii"))
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status_line.split()
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None

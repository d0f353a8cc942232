"""Ports and probes on the loopback interface."""

from __future__ import annotations

import socket

import httpx

__all__ = ["free_port", "healthy"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free on ``host`` right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def healthy(port: int) -> bool:
    """Whether a (fake) llama-server on ``port`` answers ``/health`` with 200."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False

"""A real llamactl process for the browser tests, over the fake llama-server.

Chromium is Debian's ``chromium`` package (``scripts/install-browser``), driven by
Playwright; Playwright never downloads a browser of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.config import FAKE_SERVER
from tests.support.net import free_port
from tests.support.server_process import environment, start, stop, wait_healthy

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "KEY",
    "SESSION_PORTS",
    "SKIP_REASON",
    "RestartableServer",
    "Server",
    "server_environment",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "sk-web"
SKIP_REASON = "browser tests need Debian's chromium and Playwright for Python"


@dataclass(frozen=True)
class Server:
    url: str  # with a trailing slash: the dashboard

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """A management API call with the key, outside the browser."""
        return httpx.request(
            method,
            f"{self.url}api/v1/{path}",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
            **kwargs,  # type: ignore[arg-type]
        )


# The backend ports of this session, below the OS's ephemeral range and apart from those
# of the manager tests (20000-29999), so that sessions running side by side do not take
# each other's ports: the shared server gets the first half, restartable ones the second.
SESSION_PORTS = 10000 + (os.getpid() % 100) * 100


def server_environment(home: Path, port: int, first_backend_port: int) -> dict[str, str]:
    last = first_backend_port + 49
    return environment(
        home,
        LLAMACTL_PORT=str(port),
        LLAMACTL_INSTANCE_PORT_RANGE=f"{first_backend_port}-{last}",
        LLAMACTL_MANAGEMENT_KEYS=KEY,
        LLAMACTL_DATA_DIRECTORY=str(home / "data"),
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
        FAKE_LLAMA_LOAD_SECONDS="1",
    )


class RestartableServer:
    """A llamactl of one test's own, which the test may stop and start again (same port,
    same data), as a user does with the dashboard still open."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[str] | None = None

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return Server(self.url).api(method, path, **kwargs)

    def start(self) -> None:
        assert self.process is None, "already running"
        env = server_environment(self.home, self.port, SESSION_PORTS + 50)
        self.process = start(self.home, env)
        wait_healthy(self.process, f"{self.url}healthz")

    def stop(self) -> str:
        """SIGTERM (a graceful stop: backends are stopped, rows keep their status)."""
        assert self.process is not None, "not running"
        process, self.process = self.process, None
        return stop(process)

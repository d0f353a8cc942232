"""``python -m llamactl`` as a real process: a clean environment, start, wait, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

__all__ = ["STARTUP_SECONDS", "environment", "start", "stop", "wait_healthy"]

STARTUP_SECONDS = 30


def environment(home: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no LLAMACTL_* from the caller, HOME in the test's folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LLAMACTL_")}
    env.update({"HOME": str(home), "LLAMACTL_HOST": "127.0.0.1", **extra})
    return env


def start(cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "llamactl"],
        cwd=cwd,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_healthy(process: subprocess.Popen[str], url: str) -> httpx.Response:
    """Poll until the server answers or the process exits; fail after STARTUP_SECONDS."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llamactl exited with {process.returncode}:\n{stop(process)}")
        try:
            return httpx.get(url, timeout=1)
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail("llamactl did not answer /healthz in time")


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, wait for the exit and return everything the process printed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""

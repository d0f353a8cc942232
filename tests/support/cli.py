"""The ``llamactl`` command line against a real server process on a free port.

The server's llama.cpp backend is ``tests/fake_llama_server.py`` run by this interpreter,
so instances really start, become ready, write logs and fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from llamactl.cli import main
from tests.support.config import FAKE_SERVER
from tests.support.net import free_port
from tests.support.server_process import environment, start, stop, wait_healthy

__all__ = ["MANAGEMENT_KEY", "Server", "api_get", "clean_env", "create", "invoke", "launch"]

MANAGEMENT_KEY = "sk-cli"


@dataclass(frozen=True)
class Server:
    url: str
    key: str
    data_dir: Path

    def run(self, *args: str, input: str | None = None, **env: str) -> Result:
        """``llamactl ARGS --url URL --api-key KEY`` in-process; LLAMACTL_* from ``env`` only."""
        return invoke(*args, "--url", self.url, "--api-key", self.key, input=input, **env)


def invoke(*args: str, input: str | None = None, **env: str) -> Result:
    """``llamactl ARGS`` in-process, with no LLAMACTL_* variable but those in ``env``."""
    return CliRunner().invoke(main, list(args), env=clean_env(**env), input=input)


def clean_env(**env: str) -> dict[str, str | None]:
    """Unset the caller's LLAMACTL_* variables (CliRunner removes those given as None)."""
    cleared: dict[str, str | None] = {
        key: None for key in os.environ if key.startswith("LLAMACTL_")
    }
    return {**cleared, **env}


def launch(home: Path) -> tuple[subprocess.Popen[str], Server]:
    """Start ``python -m llamactl`` with its data in ``home`` and wait until it answers."""
    port = free_port()
    env = environment(
        home,
        LLAMACTL_PORT=str(port),
        LLAMACTL_DATA_DIRECTORY=str(home / "data"),
        LLAMACTL_MANAGEMENT_KEYS=MANAGEMENT_KEY,
        LLAMACTL_INFERENCE_KEYS="sk-inf",
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
    )
    process = start(home, env)
    server = Server(f"http://127.0.0.1:{port}", MANAGEMENT_KEY, home / "data")
    try:
        wait_healthy(process, f"{server.url}/healthz")
    except BaseException:
        stop(process)
        raise
    return process, server


def api_get(server: Server, path: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.key}"}
    return httpx.get(f"{server.url}/api/v1{path}", headers=headers, timeout=10)


def create(server: Server, name: str, *args: str) -> None:
    result = server.run(
        "instances", "create", name, "--backend", "llama_cpp", "--model", "/m/x.gguf", *args
    )
    assert result.exit_code == 0, result.output

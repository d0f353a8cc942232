"""A real llamactl server on a free port, shared by the CLI tests of a module.

Its llama.cpp backend is ``tests/fake_llama_server.py`` run by this interpreter, so
instances really start, become ready, write logs and fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llamactl.cli import main
from tests.test_serve import environment, free_port, start, stop, wait_healthy

MANAGEMENT_KEY = "sk-cli"
FAKE_BACKEND = Path(__file__).parents[1] / "fake_llama_server.py"


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
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_BACKEND),
    )
    process = start(home, env)
    server = Server(f"http://127.0.0.1:{port}", MANAGEMENT_KEY, home / "data")
    try:
        wait_healthy(process, f"{server.url}/healthz")
    except BaseException:
        stop(process)
        raise
    return process, server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    process, server = launch(tmp_path_factory.mktemp("cli-home"))
    try:
        yield server
    finally:
        output = stop(process)
        assert process.returncode == 0, output

"""Configuration whose llama.cpp backend is the fake llama-server run by this interpreter."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from llamactl.config import AppConfig, load_config
from llamactl.manager.runtime import Timings

__all__ = [
    "FAKE_SERVER",
    "FAST",
    "PORT_RANGE",
    "SESSION_PORTS",
    "fake_config",
    "fake_options",
]

FAKE_SERVER = Path(__file__).parents[1] / "fake_llama_server.py"
FAST = Timings(
    health_poll=0.02,
    health_interval=0.1,
    unhealthy_after=2,
    stop_timeout=3.0,
    drain_timeout=2.0,
    idle_check=3600.0,  # tests call check_idle() themselves
    stable_after=60.0,
    reap_timeout=2.0,
)

# Each test session takes its own hundred ports (below the OS's ephemeral range), so that
# two sessions on one machine never hand out the same backend port.
SESSION_PORTS = 20000 + (os.getpid() % 100) * 100
PORT_RANGE = f"{SESSION_PORTS}-{SESSION_PORTS + 99}"


def fake_config(tmp_path: Path, **environ: str) -> AppConfig:
    """Configuration whose llama-cpp command runs the fake server with this interpreter."""
    return load_config(
        None,
        {
            "LLAMACTL_DATA_DIRECTORY": str(tmp_path / "data"),
            "LLAMACTL_LLAMACPP_COMMAND": sys.executable,
            "LLAMACTL_LLAMACPP_ARGS": str(FAKE_SERVER),
            "LLAMACTL_INSTANCE_PORT_RANGE": PORT_RANGE,
            **environ,
        },
        cwd=tmp_path,
        home=tmp_path,
    )


def fake_options(**overrides: object) -> dict[str, object]:
    """Options of a llama_cpp instance for the fake server; ``environment`` drives it."""
    body: dict[str, object] = {
        "backend_type": "llama_cpp",
        "backend_options": {"model": "/models/fake.gguf"},
        "auto_restart": False,
        "restart_delay": 0,
    }
    body.update(overrides)
    return body

"""Instance files as the Go llamactl wrote them (``instances/*.json``), for the import."""

from __future__ import annotations

import json
from pathlib import Path

from llamactl.backends import BackendType
from llamactl.instance import InstanceDefaults

__all__ = ["DEFAULTS", "NATIVE", "legacy", "write"]

NATIVE = InstanceDefaults(
    auto_restart=True,
    max_restarts=3,
    restart_delay=5,
    on_demand_start=True,
    idle_timeout=0,
    docker_enabled=False,
)


def DEFAULTS(_backend_type: BackendType) -> InstanceDefaults:  # noqa: N802 - used like a constant
    return NATIVE


def legacy(
    name: str, *, status: str = "running", created: int = 1_731_000_000, **options: object
) -> dict[str, object]:
    body: dict[str, object] = {
        "backend_type": "llama_cpp",
        "backend_options": {"gpu_layers": 99, "model": f"/m/{name}.gguf", "port": 8001},
        "auto_restart": True,
        "max_restarts": 3,
        "restart_delay": 5,
        "on_demand_start": True,
        "idle_timeout": 0,
    }
    body.update(options)
    return {"name": name, "status": status, "created": created, "options": body}


def write(folder: Path, name: str, content: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    text = content if isinstance(content, str) else json.dumps(content, indent=2)
    path.write_text(text)
    return path

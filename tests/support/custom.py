"""A configuration whose ``backends.custom.fake`` entry runs the fake server as a foreign
OpenAI-compatible program, told its port through ``{port}``."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.config import FAKE_SERVER

__all__ = ["CUSTOM_ENTRY_ARGS", "custom_config_file", "custom_options", "write_config"]

# The entry's arguments: the fake server's script, then the port and host it is given.
CUSTOM_ENTRY_ARGS = [str(FAKE_SERVER), "--port", "{port}", "--host", "{host}"]


def custom_config_file(tmp_path: Path, **entries: dict[str, object]) -> Path:
    """A config file with the ``fake`` entry (and ``entries``) under ``backends.custom``.

    JSON is YAML, so the file is written as JSON: no quoting of ``{port}`` to get wrong.
    """
    custom: dict[str, object] = {
        "fake": {"command": sys.executable, "args": CUSTOM_ENTRY_ARGS, "health_path": "/health"},
        **entries,
    }
    return write_config(tmp_path, custom)


def write_config(tmp_path: Path, entries: Mapping[str, object]) -> Path:
    """A config file whose ``backends.custom`` holds ``entries`` (and nothing else)."""
    path = tmp_path / "llamactl.yaml"
    path.write_text(json.dumps({"backends": {"custom": dict(entries)}}))
    return path


def custom_options(**overrides: object) -> dict[str, object]:
    """Options of a custom instance of the ``fake`` entry; its model is given by ``{model}``."""
    body: dict[str, object] = {
        "backend_type": "custom",
        "backend_options": {
            "name": "fake",
            "model": "/models/foreign.gguf",
            "args": ["-m", "{model}", "--alias", "foreign-{port}"],
        },
        "auto_restart": False,
        "restart_delay": 0,
    }
    body.update(overrides)
    return body

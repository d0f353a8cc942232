"""What a failed client command says: what happened and what to do.

``describe_failure`` adds the hint that fits the error to its message: where the server
should be when it cannot be reached, where keys come from when one is refused, the command
that changes or lists instances or keys. Its code is not decided here but in ``exits``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from llamactl.cli.connection import server_url
from llamactl.cli.context import config_path
from llamactl.errors import ApiError, LlamactlError, Unreachable

__all__ = ["describe_client_failure", "describe_failure"]


def describe_client_failure(exc: LlamactlError, params: Mapping[str, object]) -> str:
    """``describe_failure`` for a command with these parameters (its ``name``, ``url``)."""
    name = params.get("name")
    return describe_failure(exc, name if isinstance(name, str) else None, params.get("url"))


def describe_failure(exc: LlamactlError, name: str | None = None, url: object = None) -> str:
    """The message for ``exc``, raised by a command about instance ``name`` at ``url``."""
    if isinstance(exc, Unreachable):
        return (
            f"{exc.message} (is the server running? set --url or LLAMACTL_URL, or"
            " LLAMACTL_PORT for a local server on another port)"
        )
    if not isinstance(exc, ApiError):
        return exc.message
    if exc.status == 401:
        return _refused_key(exc, server_url(url))
    if exc.code == "instance_exists" and name:
        return f"{exc.message} (use `llamactl instances edit {name}` to change it)"
    if exc.code == "instance_not_found":
        return f"{exc.message} (`llamactl instances list` shows them all)"
    if exc.code == "key_not_found":
        return f"{exc.message} (`llamactl keys list` shows them all)"
    return exc.message


def _refused_key(exc: ApiError, url: str | None) -> str:
    server = f"llamactl at {url}" if url else "the server"
    return (
        f"{server} refused the key: {exc.message} (set --api-key or LLAMACTL_API_KEY;"
        f" a local server keeps its key in {_key_file_hint()})"
    )


def _key_file_hint() -> str:
    from llamactl.client import key_file_path

    path = key_file_path(os.environ, config_path())
    return str(path) if path is not None else "<data_dir>/management.key"

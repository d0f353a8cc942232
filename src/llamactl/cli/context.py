"""What the ``llamactl`` group keeps for its commands: the ``--config`` file.

The group stores the path given with ``--config`` as the ``obj`` of its click context
(``None`` without the flag); the commands read it here, whatever group they are in. Only
click is imported: the configuration is loaded by the commands that need it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from llamactl.config import AppConfig

__all__ = ["config_path", "load_config", "remember_config_path"]


def remember_config_path(ctx: click.Context, path: str | None) -> None:
    """Keep ``--config`` (``path``) for every command under ``ctx``."""
    ctx.obj = path


def config_path() -> str | None:
    """The ``--config`` file of the command running now, if one was given."""
    context = click.get_current_context(silent=True)
    path = context.find_root().obj if context is not None else None
    return path if isinstance(path, str) else None


def load_config() -> AppConfig:
    """The configuration of the command running now: its ``--config`` file, the environment."""
    from llamactl.config import load_config as load

    return load(config_path(), os.environ)

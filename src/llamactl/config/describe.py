"""Showing a loaded configuration: rows for ``llamactl config show``, the sanitised JSON of
``GET /api/v1/config``, and the settings table of ``docs/configuration.md``.

Everything is driven by the registry. Secrets never leave this module unmasked.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel, SecretStr

from llamactl.config import registry
from llamactl.config.durations import format_duration
from llamactl.config.models import AppConfig
from llamactl.config.registry import WILDCARD, Key, Setting, dotted

__all__ = ["ConfigRow", "describe_config", "public_config", "settings_markdown"]


class ConfigRow(NamedTuple):
    """One leaf setting as shown to a user."""

    key: str
    value: str
    source: str


def _concrete(setting: Setting, name: str) -> Key:
    position = setting.key.index(WILDCARD)
    return (*setting.key[:position], name, *setting.key[position + 1 :])


def _ordered_keys(config: AppConfig) -> list[tuple[Setting, Key]]:
    """Registry order, then the settings of each named entry (``nodes.<name>``, any
    ``<section>.*``) with that entry's kept together. A setting in an optional part that
    an entry leaves out (a ``docker`` part set to ``None``) is not listed."""
    result: list[tuple[Setting, Key]] = []
    pending: dict[Key, list[Setting]] = {}
    for setting in registry.SETTINGS:
        if WILDCARD in setting.key:
            pending.setdefault(setting.key[: setting.key.index(WILDCARD)], []).append(setting)
        else:
            result.append((setting, setting.key))
    for prefix, settings in pending.items():
        entries = _lookup(config, prefix)
        assert isinstance(entries, dict)
        for name in entries:
            keys = [(setting, _concrete(setting, name)) for setting in settings]
            result.extend((setting, key) for setting, key in keys if _present(config, key))
    return result


def _present(config: AppConfig, key: Key) -> bool:
    """Whether the part holding ``key`` is there (an optional part may be ``None``)."""
    return _lookup(config, key[:-1]) is not None


def _lookup(config: AppConfig, key: Key) -> object:
    value: object = config
    for part in key:
        if value is None:
            return None
        attribute = part.replace("-", "_")
        value = value[part] if isinstance(value, dict) else getattr(value, attribute)
    return value


def _leaves(config: AppConfig) -> list[tuple[Setting, Key, object]]:
    return [(setting, key, _lookup(config, key)) for setting, key in _ordered_keys(config)]


def describe_config(config: AppConfig) -> list[ConfigRow]:
    """Every leaf setting in registry order, with its value as text and its source.

    Secrets are shown as ``********`` (or ``""`` when unset).
    """
    return [
        ConfigRow(dotted(key), setting.kind.to_text(value), config.sources.get(dotted(key), ""))
        for setting, key, value in _leaves(config)
    ]


def _plain(value: object) -> object:
    """A JSON-able copy of a setting's value."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return format_duration(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(name): _plain(item) for name, item in value.items()}
    if isinstance(value, BaseModel):
        raise TypeError("settings are leaves, not models")
    return value


def public_config(config: AppConfig) -> dict[str, object]:
    """The configuration as JSON-able data with every secret removed.

    Key lists become ``[]`` and node ``api_key`` entries are dropped; durations are text.
    """
    root: dict[str, object] = {}
    for setting, key, value in _leaves(config):
        if isinstance(value, SecretStr) or (setting.secret and value is None):
            continue
        plain: object = [] if setting.secret else _plain(value)
        if isinstance(plain, str):
            plain = setting.kind.mask(plain)
        branch = root
        for part in key[:-1]:
            child = branch.setdefault(part, {})
            assert isinstance(child, dict)
            branch = child
        branch[key[-1]] = plain
    return root


def _default_text(setting: Setting) -> str:
    if setting.default_doc:
        return setting.default_doc
    value = setting.default
    if isinstance(value, datetime.timedelta):
        return f'`"{format_duration(value)}"`'
    if value is None:
        return "none"
    return f"`{json.dumps(_plain(value))}`"


def settings_markdown() -> str:
    """The settings table of ``docs/configuration.md``, generated from the registry."""
    lines = [
        "| Key | Type | Default | Environment variable | Description |",
        "|---|---|---|---|---|",
    ]
    for setting in registry.SETTINGS:
        env = ", ".join(f"`{name}`" for name in setting.env) or "-"
        if setting.env and setting.kind.env_syntax:
            env += f" ({setting.kind.env_syntax})"
        lines.append(
            f"| `{setting.name}` | {setting.kind.name} | {_default_text(setting)} | {env} "
            f"| {setting.doc} |"
        )
    return "\n".join(lines) + "\n"

"""``load_config``: defaults < ``.env`` < YAML file < ``LLAMACTL_*`` environment.

A pure function of its arguments: it reads files but never writes them, never creates
directories and never modifies ``os.environ``. Every value is parsed and range-checked
once, here; any bad value stops loading with a one-line ``ConfigError`` that names the
key, the value and its source.
"""

from __future__ import annotations

import difflib
import os
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pydantic
import yaml

from llamactl.config import registry
from llamactl.config.files import (
    DotEnv,
    EnvVar,
    compose_yaml,
    expand_variables,
    first_file,
    read_dotenv,
    read_text,
)
from llamactl.config.kinds import MASK, construct
from llamactl.config.models import AppConfig
from llamactl.config.platform import config_dirs, config_search_paths
from llamactl.config.problems import file_problem, invalid_value
from llamactl.config.registry import CONFIG_PATH_ENV, DefaultContext, Key, Setting, dotted

__all__ = ["load_config"]

DEFAULT = "default"
DERIVED = "derived from data_dir"
MEMORY = ":memory:"


@dataclass
class Entry:
    """A parsed value and where it came from."""

    value: object
    source: str


Values = dict[Key, Entry]


@dataclass(frozen=True)
class _YamlEntry:
    key: Key  # canonical key
    written: Key  # the key as written (differs for legacy aliases)
    node: yaml.Node
    source: str


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    home: Path | None = None,
    platform: str | None = None,
) -> AppConfig:
    """Load and validate the configuration; raise ``ConfigError`` on any bad input.

    ``environ`` defaults to ``os.environ``; ``cwd``, ``home`` and ``platform`` (a
    ``sys.platform`` value) default to the running process's.
    """
    env = dict(os.environ if environ is None else environ)
    cwd = cwd or Path.cwd()
    home = home or _home(env)
    platform = platform or sys.platform
    explicit = _explicit_path(path, env, cwd, home)
    dotenv = _find_dotenv(explicit, cwd, platform, env, home)
    explicit = explicit or _dotenv_config_path(dotenv, cwd, home)
    variables = {name: var.value for name, var in dotenv.variables.items()} | env
    context = DefaultContext(platform, variables, home)
    config_path = _config_file(explicit, config_search_paths(platform, env, home, cwd))
    values = _defaults(context)
    _apply_env(values, {k: v for k, v in dotenv.variables.items() if k not in env})
    if config_path is not None:
        _apply_yaml(values, config_path, variables)
    _apply_env(values, {name: EnvVar(value, f"env {name}") for name, value in env.items()})
    return _build(values, config_path, cwd, home)


def _home(env: Mapping[str, str]) -> Path:
    for variable in ("HOME", "USERPROFILE"):
        if env.get(variable):
            return Path(env[variable])
    return Path.home()


def _resolve(text: str, base: Path, home: Path) -> Path:
    """An absolute path: ``~`` is the home directory, a relative path is under ``base``."""
    if text == "~" or text.startswith(("~/", "~\\")):
        return home / text[2:]
    path = Path(text)
    return path if path.is_absolute() else base / path


# --- which files ---------------------------------------------------------------------


def _explicit_path(
    path: str | os.PathLike[str] | None, env: Mapping[str, str], cwd: Path, home: Path
) -> tuple[Path, str] | None:
    if path is not None:
        return _resolve(os.fspath(path), cwd, home), "--config"
    if env.get(CONFIG_PATH_ENV):
        return _resolve(env[CONFIG_PATH_ENV], cwd, home), f"env {CONFIG_PATH_ENV}"
    return None


def _dotenv_config_path(dotenv: DotEnv, cwd: Path, home: Path) -> tuple[Path, str] | None:
    var = dotenv.variables.get(CONFIG_PATH_ENV)
    if var is None or not var.value:
        return None
    return _resolve(var.value, cwd, home), var.source


def _find_dotenv(
    explicit: tuple[Path, str] | None,
    cwd: Path,
    platform: str,
    env: Mapping[str, str],
    home: Path,
) -> DotEnv:
    folders = [explicit[0].parent] if explicit else []
    folders += [cwd, *config_dirs(platform, env, home)]
    found = first_file(folder / ".env" for folder in folders)
    return DotEnv(None, {}) if found is None else read_dotenv(found)


def _config_file(explicit: tuple[Path, str] | None, search: list[Path]) -> Path | None:
    if explicit is None:
        return first_file(search)
    path, source = explicit
    if not path.is_file():
        reason = "does not exist" if not path.exists() else "is not a file"
        raise file_problem(
            f"config file {path} {reason} ({source})", key="config_path", value=str(path),
            source=source,
        )  # fmt: skip
    return path


# --- layers --------------------------------------------------------------------------


def _defaults(context: DefaultContext) -> Values:
    return {
        setting.key: Entry(setting.default_value(context), DEFAULT)
        for setting in registry.SETTINGS
        if registry.WILDCARD not in setting.key
    }


def _check_range(setting: Setting, value: object) -> None:
    if not isinstance(value, int):
        return
    if setting.minimum is not None and value < setting.minimum:
        raise ValueError(f"must be at least {setting.minimum}")
    if setting.maximum is not None and value > setting.maximum:
        raise ValueError(f"must be at most {setting.maximum}")


def _set(values: Values, setting: Setting, key: Key, value: object, source: str) -> None:
    old = values.get(key)
    if setting.kind.merges and old is not None and isinstance(old.value, dict) and old.value:
        assert isinstance(value, dict)
        merged_source = source if old.source == DEFAULT else f"{old.source} + {source}"
        values[key] = Entry({**old.value, **value}, merged_source)
    else:
        values[key] = Entry(value, source)


def _apply_env(values: Values, variables: Mapping[str, EnvVar]) -> None:
    """Apply every documented ``LLAMACTL_*`` variable; an empty value counts as unset."""
    for setting in registry.SETTINGS:
        for name in setting.env:
            var = variables.get(name)
            if var is None or not var.value.strip():
                continue
            try:
                value = setting.kind.from_env(var.value)
                _check_range(setting, value)
            except ValueError as exc:
                shown = MASK if setting.secret else setting.kind.mask(var.value)
                raise invalid_value(setting.name, shown, var.source, str(exc)) from None
            _set(values, setting, setting.key, value, var.source)


def _apply_yaml(values: Values, path: Path, variables: Mapping[str, str]) -> None:
    text = expand_variables(read_text(path, "config file"), variables)
    root = compose_yaml(text, path)
    if root is None or _is_null(root):
        return
    if not isinstance(root, yaml.MappingNode):
        raise invalid_value("(top level)", _shown(root), f"{path}:1", "expected a mapping")
    found: list[_YamlEntry] = []
    _walk(root, (), path, found, values)
    found.sort(key=lambda entry: entry.written == entry.key)  # legacy aliases first
    for entry in found:
        _apply_yaml_entry(values, entry)


def _apply_yaml_entry(values: Values, entry: _YamlEntry) -> None:
    setting = registry.find_setting(entry.key)
    assert setting is not None
    try:
        value = setting.kind.from_yaml(entry.node)
        _check_range(setting, value)
    except (ValueError, yaml.YAMLError) as exc:
        shown = _shown(entry.node)
        if setting.secret:
            shown = MASK
        elif isinstance(shown, str):
            shown = setting.kind.mask(shown)
        reason = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
        raise invalid_value(dotted(entry.written), shown, entry.source, str(reason)) from None
    _set(values, setting, entry.key, value, entry.source)


def _walk(
    node: yaml.MappingNode, prefix: Key, path: Path, found: list[_YamlEntry], values: Values
) -> None:
    seen: set[str] = set()
    for key_node, value_node in node.value:
        source = f"{path}:{key_node.start_mark.line + 1}"
        key = (*prefix, _key_name(key_node, prefix, source))
        if key[-1] in seen:
            raise invalid_value(dotted(key), _shown(value_node), source, "duplicate key")
        seen.add(key[-1])
        canonical = registry.ALIASES.get(key, key)
        if registry.find_setting(canonical) is not None:
            found.append(_YamlEntry(canonical, key, value_node, source))
        elif registry.is_section(canonical):
            _enter_section(canonical, value_node, source, values)
            if not _is_null(value_node):
                assert isinstance(value_node, yaml.MappingNode)
                _walk(value_node, canonical, path, found, values)
        else:
            shown = MASK if _looks_secret(key[-1]) else _shown(value_node)
            raise invalid_value(dotted(key), shown, source, _unknown(key))


def _enter_section(key: Key, node: yaml.Node, source: str, values: Values) -> None:
    if not _is_null(node) and not isinstance(node, yaml.MappingNode):
        raise invalid_value(dotted(key), _shown(node), source, "expected a mapping")
    for setting in registry.SETTINGS:
        pattern = setting.key[:-1]
        if registry.WILDCARD in pattern and registry.matches(pattern, key):
            concrete = (*key, setting.key[-1])
            values.setdefault(concrete, Entry(setting.default, source))


def _key_name(node: yaml.Node, prefix: Key, source: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise invalid_value(dotted(prefix) or "(top level)", _shown(node), source, "bad key")
    return str(node.value)


def _unknown(key: Key) -> str:
    allowed = registry.section_children(key[:-1])
    close = difflib.get_close_matches(key[-1], allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    where = f"under {dotted(key[:-1])}" if len(key) > 1 else "at the top level"
    return f"unknown key{hint} (allowed {where}: {', '.join(allowed)})"


def _looks_secret(name: str) -> bool:
    """Whether a misspelt key probably holds a secret that must not reach the logs."""
    return any(word in name.lower() for word in ("key", "token", "secret", "password"))


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _shown(node: yaml.Node) -> object:
    """The value of a node for an error message, even when it cannot be constructed."""
    try:
        return construct(node)
    except yaml.YAMLError:
        return node.value if isinstance(node, yaml.ScalarNode) else f"<{type(node).__name__}>"


# --- derived values and the final model ----------------------------------------------


def _build(values: Values, config_path: Path | None, cwd: Path, home: Path) -> AppConfig:
    data_dir = _resolve(str(values[("data_dir",)].value), cwd, home)
    values[("data_dir",)].value = data_dir
    for name in ("instances_dir", "logs_dir"):
        _derive_dir(values[("instances", name)], name, data_dir, cwd, home)
    cache = values[("backends", "llama-cpp", "cache_dir")]
    cache.value = _resolve(str(cache.value), cwd, home)
    _derive_database_path(values[("database", "path")], data_dir, home)
    _check_pool(values)
    _add_local_node(values)
    _check_node_addresses(values)
    sources = {dotted(key): entry.source for key, entry in values.items()}
    document = {**_nest(values), "config_path": config_path, "sources": sources}
    try:
        return AppConfig.model_validate(document)
    except pydantic.ValidationError as exc:  # a registry/model mismatch, not user input
        raise file_problem(f"configuration does not fit the model: {exc}") from exc


def _derive_dir(entry: Entry, name: str, data_dir: Path, cwd: Path, home: Path) -> None:
    if entry.value is None:
        entry.value = data_dir / name.removesuffix("_dir")
        entry.source = DERIVED
    else:
        entry.value = _resolve(str(entry.value), cwd, home)


def _derive_database_path(entry: Entry, data_dir: Path, home: Path) -> None:
    text = str(entry.value)
    if text == MEMORY or "://" in text:
        return
    entry.value = str(_resolve(text, data_dir, home))
    if entry.source == DEFAULT:
        entry.source = DERIVED


def _check_pool(values: Values) -> None:
    idle = values[("database", "max_idle_connections")]
    most = values[("database", "max_open_connections")]
    assert isinstance(idle.value, int) and isinstance(most.value, int)
    if idle.value > most.value:
        raise invalid_value(
            "database.max_idle_connections", idle.value, idle.source,
            f"must not exceed database.max_open_connections = {most.value} ({most.source})",
        )  # fmt: skip


def _add_local_node(values: Values) -> None:
    name = str(values[("local_node",)].value)
    if ("nodes", name, "address") not in values:
        values[("nodes", name, "address")] = Entry("", DEFAULT)
        values[("nodes", name, "api_key")] = Entry(None, DEFAULT)
        values[("nodes", name, "ca_file")] = Entry("", DEFAULT)


def _check_node_addresses(values: Values) -> None:
    """Every other node needs a base URL: ``http(s)://host[:port][/prefix]``, kept without
    its trailing slash."""
    local = str(values[("local_node",)].value)
    for key, entry in values.items():
        if len(key) != 3 or key[0] != "nodes" or key[2] != "address" or key[1] == local:
            continue
        text = str(entry.value).strip().rstrip("/")
        problem = _address_problem(text)
        if problem is not None:
            raise invalid_value(dotted(key), entry.value, entry.source, problem)
        entry.value = text
        _check_ca_file(values, key[1])


def _check_ca_file(values: Values, node: str) -> None:
    entry = values.get(("nodes", node, "ca_file"))
    if entry is None or not entry.value:
        return
    if not Path(str(entry.value)).expanduser().is_file():
        raise invalid_value(
            f"nodes.{node}.ca_file", entry.value, entry.source,
            "no such file: give a PEM file of the certificates to trust",
        )  # fmt: skip
    entry.value = str(Path(str(entry.value)).expanduser())


def _address_problem(text: str) -> str | None:
    if not text:
        return "another node needs the base URL of its llamactl, like http://gpu-box:8080"
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http:// or https:// URL with a host, like http://gpu-box:8080"
    if parts.query or parts.fragment or parts.username or parts.password:
        return "the URL takes no query, fragment or user: give the key in api_key"
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number in range
    except ValueError:
        return "the port is not a number from 1 to 65535"
    return None


def _nest(values: Values) -> dict[str, object]:
    """Turn flat key paths into the nested mapping the models validate."""
    root: dict[str, object] = {}
    for key, entry in values.items():
        branch = root
        for part in key[:-1]:
            child = branch.setdefault(part, {})
            assert isinstance(child, dict)
            branch = child
        branch[key[-1]] = entry.value
    return root

"""Value kinds: how one setting is read from an environment variable, from a YAML node,
and written back as text.

Every reader raises ``ValueError`` with a short reason ("expected an integer"); the loader
adds the key, the raw value and the source. Nothing here guesses: a value that does not
parse is an error, never a fallback.
"""

from __future__ import annotations

import datetime
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass

import yaml
from pydantic import SecretStr

from llamactl.config.durations import format_duration, parse_duration

__all__ = [
    "ARGS",
    "BOOL",
    "DATABASE_URL",
    "DURATION",
    "HEADERS",
    "INT",
    "LIST",
    "LOG_LEVEL",
    "LOG_LEVELS",
    "MAP",
    "PATH",
    "PORT_RANGE",
    "SECRET",
    "SECRET_LIST",
    "STR",
    "Kind",
    "construct",
    "mask_password",
]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_NULL_TAG = "tag:yaml.org,2002:null"
_INTEGER = re.compile(r"[+-]?[0-9]+")
MASK = "********"


@dataclass(frozen=True)
class Kind:
    """One value type: its readers, its text form and how it is described in the docs.

    ``env_syntax`` tells the docs how a variable spells a value when that is not obvious.
    """

    name: str
    env_syntax: str
    from_env: Callable[[str], object]
    from_yaml: Callable[[yaml.Node], object]
    to_text: Callable[[object], str]
    merges: bool = False
    # What of a raw value may be shown in an error or the public configuration.
    mask: Callable[[str], str] = str


def construct(node: yaml.Node) -> object:
    """Build the plain Python value of a YAML node with the safe constructors."""
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    finally:
        loader.dispose()


# --- strings -------------------------------------------------------------------------


def _yaml_str(node: yaml.Node) -> str:
    """The scalar's text as written, so ``no`` stays "no" and ``8080`` stays "8080"."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL_TAG:
        raise ValueError("expected a string")
    return str(node.value)


def _text(value: object) -> str:
    return str(value)


_PASSWORD = re.compile(r"(://[^/?#@:]*:)[^/?#@]*@")


def mask_password(text: str) -> str:
    """``text`` with the password of a URL in it (``scheme://user:password@``) masked."""
    return _PASSWORD.sub(lambda match: f"{match.group(1)}{MASK}@", text)


def _masked_text(value: object) -> str:
    return mask_password(str(value))


# SQLAlchemy URL schemes llamactl connects with; ``postgresql`` means psycopg 3.
_URL_SCHEMES = {
    "sqlite": "sqlite+pysqlite",
    "sqlite+pysqlite": "sqlite+pysqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def _env_database_url(text: str) -> str:
    url = text.strip()
    scheme, separator, rest = url.partition("://")
    if not separator:
        raise ValueError("expected a URL such as postgresql://user:password@host:5432/llamactl")
    driver = _URL_SCHEMES.get(scheme.lower())
    if driver is None:
        raise ValueError(
            f"unsupported database {scheme!r}: use postgresql://… (psycopg 3) or sqlite:///path"
        )
    if driver.startswith("postgresql") and not rest.split("?", 1)[0].split("/", 1)[0]:
        raise ValueError("a PostgreSQL URL needs a host: postgresql://user@host:5432/database")
    return f"{driver}://{rest}"


def _yaml_database_url(node: yaml.Node) -> str:
    return _env_database_url(_yaml_str(node))


def _env_path(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


def _yaml_path(node: yaml.Node) -> str:
    return _env_path(_yaml_str(node))


# --- integers and booleans -----------------------------------------------------------


def _env_int(text: str) -> int:
    if not _INTEGER.fullmatch(text.strip()):
        raise ValueError("expected an integer")
    return int(text.strip(), 10)


def _yaml_int(node: yaml.Node) -> int:
    value = construct(node)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("expected an integer")
    return value


def _env_bool(text: str) -> bool:
    if text.strip() in _TRUE:
        return True
    if text.strip() in _FALSE:
        return False
    raise ValueError("expected a boolean (true/false, 1/0, t/f)")


def _yaml_bool(node: yaml.Node) -> bool:
    value = construct(node)
    if not isinstance(value, bool):
        raise ValueError("expected a boolean (true or false)")
    return value


def _bool_text(value: object) -> str:
    return "true" if value else "false"


# --- lists ---------------------------------------------------------------------------


def _env_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _env_args(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot split into arguments: {exc}") from None


def _yaml_list(node: yaml.Node) -> list[str]:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        return []
    if not isinstance(node, yaml.SequenceNode):
        raise ValueError("expected a list of strings")
    try:
        return [_yaml_str(item) for item in node.value]
    except ValueError:
        raise ValueError("expected a list of strings") from None


def _list_text(value: object) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def _args_text(value: object) -> str:
    return shlex.join(value) if isinstance(value, list) else str(value)


# --- maps ----------------------------------------------------------------------------


def _pairs_reader(separator: str) -> Callable[[str], dict[str, str]]:
    def read(text: str) -> dict[str, str]:
        result: dict[str, str] = {}
        for pair in text.split(separator):
            if not pair.strip():
                continue
            name, equals, value = pair.partition("=")
            if not equals or not name.strip():
                raise ValueError(f"expected KEY=VALUE pairs separated by {separator!r}")
            result[name.strip()] = value.strip()
        return result

    return read


def _yaml_map(node: yaml.Node) -> dict[str, str]:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        return {}
    if not isinstance(node, yaml.MappingNode):
        raise ValueError("expected a mapping of strings")
    try:
        return {_yaml_str(key): _yaml_str(value) for key, value in node.value}
    except ValueError:
        raise ValueError("expected a mapping of strings") from None


def _pairs_text(separator: str) -> Callable[[object], str]:
    def text(value: object) -> str:
        if not isinstance(value, dict):
            return str(value)
        return separator.join(f"{name}={item}" for name, item in value.items())

    return text


# --- durations and port ranges -------------------------------------------------------


def _yaml_duration(node: yaml.Node) -> datetime.timedelta:
    return parse_duration(_yaml_str(node))


def _duration_text(value: object) -> str:
    return format_duration(value) if isinstance(value, datetime.timedelta) else str(value)


def _checked_range(start: int, end: int) -> tuple[int, int]:
    if not 0 < start < end <= 65535:
        raise ValueError("expected 0 < start < end <= 65535")
    return (start, end)


def _env_port_range(text: str) -> tuple[int, int]:
    separator = "-" if "-" in text.strip().lstrip("-") else ","
    parts = text.split(separator)
    if len(parts) != 2:
        raise ValueError('expected "START-END" or "START,END"')
    try:
        start, end = (int(part.strip(), 10) for part in parts)
    except ValueError:
        raise ValueError('expected "START-END" or "START,END" with integers') from None
    return _checked_range(start, end)


def _yaml_port_range(node: yaml.Node) -> tuple[int, int]:
    value = construct(node)
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("expected a list of two port numbers [START, END]")
    if any(isinstance(item, bool) or not isinstance(item, int) for item in value):
        raise ValueError("expected a list of two port numbers [START, END]")
    return _checked_range(value[0], value[1])


def _range_text(value: object) -> str:
    return f"{value[0]}-{value[1]}" if isinstance(value, tuple) else str(value)


# --- secrets -------------------------------------------------------------------------


def _env_secret_list(text: str) -> list[SecretStr]:
    return [SecretStr(item) for item in _env_list(text)]


def _yaml_secret_list(node: yaml.Node) -> list[SecretStr]:
    return [SecretStr(item) for item in _yaml_list(node)]


def _yaml_secret(node: yaml.Node) -> SecretStr | None:
    if isinstance(node, yaml.ScalarNode) and node.tag == _NULL_TAG:
        return None
    return SecretStr(_yaml_str(node))


def _masked(value: object) -> str:
    return MASK if value else ""


LOG_LEVELS = ("debug", "info", "warning", "error")


def _env_log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}")
    return level


def _yaml_log_level(node: yaml.Node) -> str:
    return _env_log_level(_yaml_str(node))


STR = Kind("string", "", str, _yaml_str, _text)
LOG_LEVEL = Kind(
    "log level", "debug, info, warning or error", _env_log_level, _yaml_log_level, _text
)
PATH = Kind("path", "", _env_path, _yaml_path, _masked_text, mask=mask_password)
DATABASE_URL = Kind(
    "URL", "", _env_database_url, _yaml_database_url, _masked_text, mask=mask_password
)
INT = Kind("integer", "", _env_int, _yaml_int, _text)
BOOL = Kind("boolean", "true/false, 1/0, t/f", _env_bool, _yaml_bool, _bool_text)
LIST = Kind("list of strings", "comma-separated", _env_list, _yaml_list, _list_text)
ARGS = Kind("list of arguments", "split like a shell", _env_args, _yaml_list, _args_text)
MAP = Kind("map", "`K1=v1,K2=v2`", _pairs_reader(","), _yaml_map, _pairs_text(","), merges=True)
HEADERS = Kind("map", "`K1=v1;K2=v2`", _pairs_reader(";"), _yaml_map, _pairs_text(";"), merges=True)
DURATION = Kind("duration", '`"5m"`, `"90s"`', parse_duration, _yaml_duration, _duration_text)
PORT_RANGE = Kind(
    "[int, int]", '`"8000-9000"` or `"8000,9000"`', _env_port_range, _yaml_port_range, _range_text
)
SECRET_LIST = Kind(
    "list of secrets", "comma-separated", _env_secret_list, _yaml_secret_list, _masked
)
SECRET = Kind("secret", "", SecretStr, _yaml_secret, _masked)

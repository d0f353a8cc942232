"""Finding and reading the configuration files: the YAML file and the ``.env`` file.

Reads files only; never writes, never creates directories and never touches
``os.environ``. The ``.env`` parser is our own, not python-dotenv's, so that every
variable keeps the ``file:line`` it came from for the messages that name it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from llamactl.config.problems import file_problem

__all__ = [
    "DotEnv",
    "EnvVar",
    "compose_yaml",
    "expand_variables",
    "first_file",
    "read_dotenv",
    "read_text",
]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DOTENV_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)")


@dataclass(frozen=True)
class EnvVar:
    """One variable and where it was set (``env NAME`` or ``.env <file>:<line>``)."""

    value: str
    source: str


@dataclass(frozen=True)
class DotEnv:
    """The variables of the ``.env`` file that was found, if any."""

    path: Path | None
    variables: dict[str, EnvVar]


def first_file(candidates: Iterable[Path]) -> Path | None:
    """The first candidate that is an existing file."""
    return next((path for path in candidates if path.is_file()), None)


def read_text(path: Path, what: str) -> str:
    """Read a UTF-8 file, turning failures into a ``ConfigError`` naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise file_problem(f"cannot read {what} {path}: {reason}", source=str(path)) from exc


def read_dotenv(path: Path) -> DotEnv:
    """Parse ``KEY=VALUE`` lines; ``export``, ``#`` comments and matching quotes allowed."""
    variables: dict[str, EnvVar] = {}
    for number, line in enumerate(read_text(path, ".env file").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(stripped)
        if match is None:
            raise file_problem(
                f"{path}:{number}: expected KEY=VALUE in .env file, got {stripped!r}",
                source=f".env {path}:{number}",
            )
        variables[match.group(1)] = EnvVar(_dotenv_value(match.group(2)), f".env {path}:{number}")
    return DotEnv(path, variables)


def _dotenv_value(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    comment = re.search(r"\s#", raw)
    return (raw[: comment.start()] if comment else raw).strip()


def expand_variables(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}``.

    An unset ``${VAR}`` without a default stays as written; the default applies when the
    variable is unset or empty.
    """

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = variables.get(name)
        if default is not None:
            return value if value else default
        return match.group(0) if value is None else value

    return _VARIABLE.sub(replace, text)


def compose_yaml(text: str, path: Path) -> yaml.Node | None:
    """The YAML node tree, which keeps every value's line; syntax errors name file:line."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise file_problem(
            f"YAML syntax error in {path}{line}: {problem}", source=f"{path}{line}"
        ) from exc
    except yaml.YAMLError as exc:
        raise file_problem(f"YAML error in {path}: {exc}", source=str(path)) from exc

"""The pure packages stay pure: no module imports anything that does I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import llamactl.backends
import llamactl.instance

IO_MODULES = {
    "asyncio",
    "http",
    "io",
    "os",
    "pathlib",
    "shutil",
    "signal",
    "socket",
    "sqlalchemy",
    "subprocess",
    "tempfile",
    "time",
    "urllib",
}
PURE_DIRS = [
    Path(llamactl.backends.__file__).parent,
    Path(llamactl.instance.__file__).parent,
]
MODULES = sorted(path for folder in PURE_DIRS for path in folder.glob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", MODULES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_module_does_no_io(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))

    assert not imported_roots(tree) & IO_MODULES
    calls = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    assert "open" not in calls
    assert "print" not in calls


def test_both_packages_are_covered() -> None:
    names = {f"{path.parent.name}/{path.name}" for path in MODULES}
    assert {"backends/base.py", "instance/options.py"} <= names

"""The local subcommands: config show and the db group."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llamactl import __version__, database
from llamactl.cli import main


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME and working directory, and no LLAMACTL_* variable from outside."""
    for key in list(os.environ):
        if key.startswith("LLAMACTL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str, input: str | None = None, **env: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input)


def data_dir(home: Path) -> Path:
    return home / ".local" / "share" / "llamactl"


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and result.output.strip() == f"llamactl version: {__version__}"


def test_config_show_names_values_and_sources(home: Path) -> None:
    (home / "llamactl.yaml").write_text("server:\n  host: 127.0.0.1\n")
    env = {"LLAMACTL_PORT": "9123", "LLAMACTL_MANAGEMENT_KEYS": "sk-very-secret"}
    result = run("config", "show", "--json", **env)
    assert result.exit_code == 0, result.output
    rows = {row["key"]: (row["value"], row["source"]) for row in json.loads(result.output)}
    assert rows["server.port"] == ("9123", "env LLAMACTL_PORT")
    assert rows["server.host"] == ("127.0.0.1", f"{home / 'llamactl.yaml'}:2")
    assert rows["database.max_open_connections"] == ("25", "default")
    assert rows["auth.management_keys"][0] == "********"
    assert "sk-very-secret" not in result.output
    table = run("config", "show", **env)
    assert table.exit_code == 0
    assert "server.port" in table.output and "LLAMACTL_PORT" in table.output
    assert "sk-very-secret" not in table.output


def test_config_show_reports_a_bad_value_in_one_line(home: Path) -> None:
    (home / "llamactl.yaml").write_text("database:\n  connection_max_lifetime: forever\n")
    result = run("config", "show")
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert "database.connection_max_lifetime" in line and "forever" in line
    assert "llamactl.yaml:2" in line


def test_explicit_missing_config_file(home: Path) -> None:
    result = run("--config", str(home / "absent.yaml"), "config", "show")
    assert result.exit_code == 1
    assert "absent.yaml" in result.output and "Traceback" not in result.output


def test_db_upgrade_current_downgrade(home: Path) -> None:
    upgraded = run("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    head = database.head_revision()
    assert f"database at revision {head}" in upgraded.output
    assert (data_dir(home) / "llamactl.db").is_file()
    current = run("db", "current")
    assert f"current: {head}" in current.output and f"newest:  {head}" in current.output
    refused = run("db", "downgrade", "base", input="n\n")
    assert refused.exit_code == 1 and "Aborted" in refused.output
    assert f"current: {head}" in run("db", "current").output
    downgraded = run("db", "downgrade", "base", "--yes")
    assert downgraded.exit_code == 0 and "at revision base" in downgraded.output
    assert "current: base" in run("db", "current").output


def test_db_upgrade_refuses_a_foreign_database(home: Path) -> None:
    path = home / "other.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER)")
    connection.close()
    before = path.read_bytes()
    result = run("db", "upgrade", LLAMACTL_DATABASE_PATH=str(path))
    assert result.exit_code == 1
    assert "not a llamactl database" in result.output and "invoices" in result.output
    assert path.read_bytes() == before
    # Refused before anything else: the data directory holds no instance or log folder.
    assert not (data_dir(home) / "instances").exists()
    assert not (data_dir(home) / "logs").exists()


def legacy_file(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(
        json.dumps(
            {
                "name": name,
                "status": "stopped",
                "created": 1_731_000_000,
                "options": {"backend_type": "mlx_lm", "backend_options": {"model": "m"}},
            }
        )
    )
    return path


def test_db_import_json_from_a_folder(home: Path) -> None:
    folder = home / "old-instances"
    legacy_file(folder, "one")
    legacy_file(folder, "two")
    result = run("db", "import-json", str(folder))
    assert result.exit_code == 0, result.output
    assert "imported 2 instances: one, two" in result.output
    again = run("db", "import-json", str(folder))
    assert again.exit_code == 0 and "nothing imported" in again.output


def test_db_import_json_with_a_corrupt_file(home: Path) -> None:
    folder = home / "old-instances"
    legacy_file(folder, "good")
    (folder / "bad.json").write_text('{"name": "bad"')
    result = run("db", "import-json", str(folder))
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert str(folder / "bad.json") in line
    assert (folder / "good.json").exists() and not (folder / "json_archive").exists()

"""A database that is not llamactl's is refused before anything touches it; legacy JSON
archives are never overwritten."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from llamactl import database
from llamactl.database import DatabaseSettings
from llamactl.database.json_import import ARCHIVE_DIR, import_json
from llamactl.errors import DatabaseError, NotALlamactlDatabase
from llamactl.server.lifecycle import start_services
from tests.support.config import fake_config
from tests.support.legacy_json import DEFAULTS, legacy, write


def foreign_file(path: Path) -> bytes:
    """Another program's SQLite database, in the default rollback-journal mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    with connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        connection.execute("INSERT INTO invoices (total) VALUES (9.5)")
    connection.close()
    return path.read_bytes()


def side_files(path: Path) -> list[Path]:
    return [p for p in path.parent.iterdir() if p.name != path.name]


def test_open_refuses_a_foreign_file_leaving_it_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    before = foreign_file(path)
    assert before[18:20] == b"\x01\x01"  # header: rollback journal, not WAL
    with pytest.raises(NotALlamactlDatabase, match="invoices"):
        database.open(DatabaseSettings(path=str(path)))
    assert path.read_bytes() == before
    assert side_files(path) == []  # no -wal, -shm or -journal either


def test_a_file_that_is_not_sqlite_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"just some text, not a database\n" * 10)
    with pytest.raises(DatabaseError, match="cannot open database"):
        database.open(DatabaseSettings(path=str(path)))
    assert path.read_bytes() == b"just some text, not a database\n" * 10


def test_start_refuses_a_foreign_file_without_creating_folders(tmp_path: Path) -> None:
    config = fake_config(tmp_path)
    data = tmp_path / "data"
    before = foreign_file(data / "llamactl.db")
    with pytest.raises(NotALlamactlDatabase):
        start_services(config)
    assert (data / "llamactl.db").read_bytes() == before
    assert not (data / "instances").exists()
    assert not (data / "logs").exists()
    assert sorted(p.name for p in data.iterdir()) == ["llamactl.db", "llamactl.lock"]
    assert (data / "llamactl.lock").read_text() == ""  # released: no pid left behind


def test_our_own_database_still_opens_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "llamactl.db"
    for _ in range(2):
        db = database.open(DatabaseSettings(path=str(path)))
        try:
            database.run_migrations(db)
            assert db.count() == 0
        finally:
            db.close()


def test_a_second_import_never_overwrites_the_first_archive(tmp_path: Path) -> None:
    folder = tmp_path / "instances"
    first = json.dumps(legacy("alpha", created=1), indent=2)
    second = json.dumps(legacy("alpha", created=2), indent=2)
    third = json.dumps(legacy("alpha", created=3), indent=2)
    archive = folder / ARCHIVE_DIR
    for number, text in enumerate((first, second, third)):
        write(folder, "alpha", text)
        db = database.open(DatabaseSettings(path=str(tmp_path / f"db{number}.db")))
        try:
            database.run_migrations(db)
            assert import_json(db, folder, DEFAULTS).imported == ("alpha",)
            assert db.get_by_name("alpha").created == number + 1
        finally:
            db.close()
    assert (archive / "alpha.json").read_text() == first
    assert (archive / "alpha.json.1").read_text() == second
    assert (archive / "alpha.json.2").read_text() == third
    assert sorted(p.name for p in archive.iterdir()) == [
        "alpha.json",
        "alpha.json.1",
        "alpha.json.2",
    ]


def test_a_crash_after_a_later_commit_still_finishes_archiving(tmp_path: Path) -> None:
    """The leftover original is recognised by its renamed archive copy."""
    folder = tmp_path / "instances"
    archive = folder / ARCHIVE_DIR
    write(folder, "alpha", legacy("alpha", created=1))
    first = database.open(DatabaseSettings(path=":memory:"))
    database.run_migrations(first)
    import_json(first, folder, DEFAULTS)
    first.close()
    original = write(folder, "alpha", legacy("alpha", created=2))
    db = database.open(DatabaseSettings(path=":memory:"))
    database.run_migrations(db)
    try:
        import_json(db, folder, DEFAULTS)
        original.write_bytes((archive / "alpha.json.1").read_bytes())  # as if not removed
        assert import_json(db, folder, DEFAULTS).count == 0
        assert not original.exists()
    finally:
        db.close()


def test_a_half_written_copy_from_a_crash_is_replaced_not_kept(tmp_path: Path) -> None:
    folder = tmp_path / "instances"
    archive = folder / ARCHIVE_DIR
    archive.mkdir(parents=True)
    (archive / ".alpha.json.partial").write_text('{"name": "al')  # killed while copying
    path = write(folder, "alpha", legacy("alpha"))
    content = path.read_bytes()
    db = database.open(DatabaseSettings(path=":memory:"))
    database.run_migrations(db)
    try:
        assert import_json(db, folder, DEFAULTS).imported == ("alpha",)
    finally:
        db.close()
    assert sorted(p.name for p in archive.iterdir()) == ["alpha.json"]
    assert (archive / "alpha.json").read_bytes() == content
    assert oct((archive / "alpha.json").stat().st_mode & 0o777) == oct(0o600)

"""The one-time import of legacy instances/*.json files: all or nothing, and crash-safe."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from llamactl import database
from llamactl.backends import BackendType
from llamactl.database.json_import import ARCHIVE_DIR, import_json
from llamactl.errors import JsonImportError
from llamactl.instance import Instance, InstanceDefaults, Options, Status
from tests.support.legacy_json import DEFAULTS, NATIVE, legacy, write


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "instances"


def test_valid_files_become_rows_and_are_archived(any_db: database.DB, folder: Path) -> None:
    write(folder, "alpha", legacy("alpha", status="running", created=111))
    write(
        folder,
        "beta",
        legacy(
            "beta",
            status="stopped",
            created=222,
            backend_type="vllm",
            backend_options={"model": "Q/q"},
        ),
    )
    write(
        folder,
        "gamma",
        legacy("gamma", status="failed", created=333, environment={"K": "V"}, nodes=["main"]),
    )
    (folder / "notes.txt").write_text("not an instance")

    result = import_json(any_db, folder, DEFAULTS)

    assert result.imported == ("alpha", "beta", "gamma")
    loaded = {inst.name: inst for inst in any_db.load_all()}
    assert {name: (inst.status, inst.created) for name, inst in loaded.items()} == {
        "alpha": (Status.RUNNING, 111),
        "beta": (Status.STOPPED, 222),
        "gamma": (Status.FAILED, 333),
    }
    assert loaded["alpha"].options.backend_options.to_json() == {
        "gpu_layers": 99,
        "model": "/m/alpha.gguf",
        "port": 8001,
    }
    assert loaded["beta"].options.backend_type.value == "vllm"
    assert dict(loaded["gamma"].options.environment) == {"K": "V"}
    assert loaded["gamma"].options.nodes == ("main",)
    assert sorted(path.name for path in folder.iterdir()) == [ARCHIVE_DIR, "notes.txt"]
    assert sorted(path.name for path in (folder / ARCHIVE_DIR).iterdir()) == [
        "alpha.json",
        "beta.json",
        "gamma.json",
    ]


def test_a_second_import_imports_nothing(any_db: database.DB, folder: Path) -> None:
    write(folder, "alpha", legacy("alpha"))
    assert import_json(any_db, folder, DEFAULTS).count == 1
    again = import_json(any_db, folder, DEFAULTS)
    assert again.count == 0 and "no *.json" in again.skipped_reason
    assert [inst.name for inst in any_db.load_all()] == ["alpha"]


def test_defaults_fill_options_missing_from_a_file(any_db: database.DB, folder: Path) -> None:
    write(
        folder,
        "bare",
        {
            "name": "bare",
            "status": "stopped",
            "created": 5,
            "options": {"backend_type": "llama_cpp", "backend_options": {"model": "/m"}},
        },
    )
    import_json(any_db, folder, DEFAULTS)
    options = any_db.get_by_name("bare").options
    assert (options.auto_restart, options.max_restarts, options.restart_delay) == (True, 3, 5)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "does not hold a JSON object"),
        (legacy("bad", backend_options={"model": "/m", "gpu_layers": "lots"}), "gpu_layers"),
        (legacy("bad", backend_type="tensorflow"), "backend_type"),
        (legacy("other-name"), "does not match its file name"),
        ({**legacy("bad"), "status": "sleeping"}, "status"),
    ],
)
def test_one_bad_file_blocks_everything(
    any_db: database.DB, folder: Path, content: object, reason: str
) -> None:
    good = [write(folder, name, legacy(name)) for name in ("aaa", "zzz")]
    bad = write(folder, "bad", content)
    before = {path: path.read_bytes() for path in [*good, bad]}

    with pytest.raises(JsonImportError, match=reason) as caught:
        import_json(any_db, folder, DEFAULTS)

    assert str(bad) in caught.value.message
    assert any_db.count() == 0
    assert {path: path.read_bytes() for path in before} == before
    assert not (folder / ARCHIVE_DIR).exists()


def test_non_empty_database_skips_the_import(any_db: database.DB, folder: Path) -> None:
    any_db.save(
        Instance(
            name="existing",
            created=1,
            status=Status.STOPPED,
            options=Options.from_json(
                {"backend_type": "mlx_lm", "backend_options": {"model": "m"}}
            ),
        )
    )
    path = write(folder, "alpha", legacy("alpha"))
    result = import_json(any_db, folder, DEFAULTS)
    assert result.count == 0 and "already holds" in result.skipped_reason
    assert [inst.name for inst in any_db.load_all()] == ["existing"]
    assert path.exists()


def test_crash_before_commit_leaves_originals_for_the_next_start(
    any_db: database.DB, folder: Path
) -> None:
    """Archive copies may exist, but with an empty database the next start imports again."""
    path = write(folder, "alpha", legacy("alpha"))
    (folder / ARCHIVE_DIR).mkdir()
    shutil.copy2(path, folder / ARCHIVE_DIR / path.name)
    assert import_json(any_db, folder, DEFAULTS).imported == ("alpha",)
    assert not path.exists()


def test_a_crash_between_linking_a_copy_and_removing_its_temporary_file_leaves_nothing(
    any_db: database.DB, folder: Path
) -> None:
    """The copy is archived under its name, its ``.partial`` still there: the next import
    keeps the copy and removes the temporary file."""
    path = write(folder, "alpha", legacy("alpha"))
    archive = folder / ARCHIVE_DIR
    archive.mkdir()
    shutil.copy2(path, archive / path.name)
    shutil.copy2(path, archive / f".{path.name}.partial")
    assert import_json(any_db, folder, DEFAULTS).imported == ("alpha",)
    assert sorted(entry.name for entry in archive.iterdir()) == ["alpha.json"]


def test_crash_after_commit_finishes_archiving(any_db: database.DB, folder: Path) -> None:
    """Originals whose identical copy is archived and whose row exists are removed."""
    paths = [write(folder, name, legacy(name)) for name in ("alpha", "beta")]
    import_json(any_db, folder, DEFAULTS)
    for path in paths:  # as if the process died before removing the originals
        shutil.copy2(folder / ARCHIVE_DIR / path.name, path)
    changed = write(folder, "gamma", legacy("gamma"))

    result = import_json(any_db, folder, DEFAULTS)

    assert result.count == 0
    assert not any(path.exists() for path in paths)
    assert changed.exists()  # never imported: kept, and a warning says so


def test_defaults_are_chosen_per_backend_type(any_db: database.DB, folder: Path) -> None:
    """Only vllm runs in docker by default here: the llama_cpp file must not inherit it."""
    for name, backend_type in (("llama", "llama_cpp"), ("vl", "vllm")):
        body = legacy(name, backend_type=backend_type, backend_options={"model": "m"})
        del body["options"]["auto_restart"]  # type: ignore[attr-defined]
        write(folder, name, body)

    def defaults(backend_type: BackendType) -> InstanceDefaults:
        return replace(NATIVE, docker_enabled=backend_type is BackendType.VLLM)

    import_json(any_db, folder, defaults)
    assert any_db.get_by_name("llama").options.docker_enabled is False
    assert any_db.get_by_name("vl").options.docker_enabled is True

"""The one-time import of legacy ``instances_dir/*.json`` files into the database.

All or nothing (DESIGN decision 6): every file is read and validated first; one bad file
stops the import with an error naming it, and nothing is written or moved. The steps are
ordered so that a crash at any point loses nothing:

1. copy every file into ``instances_dir/json_archive/`` (mode 0600), never over an
   earlier import's copy: a later ``alpha.json`` is archived as ``alpha.json.1``;
2. insert every instance in one transaction, only if the database is still empty;
3. remove the originals.

A crash before step 2 commits leaves the database empty and the originals in place, so
the next start imports again. A crash during step 3 leaves originals whose archived copy
is identical and whose instance is in the database; the next start removes them.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from llamactl.backends import BackendType
from llamactl.database.database import DB
from llamactl.errors import JsonImportError, LlamactlError
from llamactl.instance import Instance, InstanceDefaults

__all__ = ["ARCHIVE_DIR", "DefaultsFor", "ImportResult", "import_json"]

logger = logging.getLogger(__name__)

ARCHIVE_DIR = "json_archive"

# The configured defaults for a backend type (the docker default differs per backend).
DefaultsFor = Callable[[BackendType], InstanceDefaults]


@dataclass(frozen=True)
class ImportResult:
    """What ``import_json`` did."""

    imported: tuple[str, ...] = ()
    skipped_reason: str = ""

    @property
    def count(self) -> int:
        return len(self.imported)


def import_json(db: DB, instances_dir: Path, defaults: DefaultsFor) -> ImportResult:
    """Import the legacy files of ``instances_dir`` if the database has no instance yet."""
    files = _legacy_files(instances_dir)
    if not files:
        return ImportResult(skipped_reason=f"no *.json files in {instances_dir}")
    if db.count() > 0:
        _finish_archiving(db, files, instances_dir)
        return ImportResult(skipped_reason="the database already holds instances")
    instances = [_read_file(path, defaults) for path in files]
    archive = _copy_to_archive(files, instances_dir)
    if not db.create_all_if_empty(instances):
        return ImportResult(skipped_reason="the database already holds instances")
    _remove_originals(files)
    logger.info("imported %d legacy instance files; originals are in %s", len(files), archive)
    return ImportResult(imported=tuple(inst.name for inst in instances))


def _legacy_files(instances_dir: Path) -> list[Path]:
    if not instances_dir.is_dir():
        return []
    return sorted(path for path in instances_dir.glob("*.json") if path.is_file())


def _read_file(path: Path, defaults: DefaultsFor) -> Instance:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise JsonImportError(f"cannot read {path}: {exc}", path=str(path)) from exc
    except json.JSONDecodeError as exc:
        raise JsonImportError(f"{path} is not valid JSON: {exc}", path=str(path)) from exc
    if not isinstance(data, dict):
        raise JsonImportError(f"{path} does not hold a JSON object", path=str(path))
    try:
        inst = Instance.from_json(data)
    except LlamactlError as exc:
        raise JsonImportError(
            f"{path} is not a valid instance: {exc.message}", path=str(path)
        ) from exc
    if inst.name != path.stem:
        raise JsonImportError(
            f"{path} holds the instance {inst.name!r}, which does not match its file name",
            path=str(path),
        )
    options = inst.options
    return inst.with_options(options.with_defaults(defaults(options.backend_type)))


def _copy_to_archive(files: list[Path], instances_dir: Path) -> Path:
    archive = instances_dir / ARCHIVE_DIR
    try:
        archive.mkdir(exist_ok=True, mode=0o700)
        for path in files:
            _archive_one(path, archive)
    except OSError as exc:
        raise JsonImportError(f"cannot copy legacy files into {archive}: {exc}") from exc
    return archive


def _archive_one(path: Path, archive: Path) -> None:
    """Copy ``path`` into ``archive`` under a name no earlier import used.

    The first copy of ``alpha.json`` is ``alpha.json``; a later import of another
    ``alpha.json`` makes ``alpha.json.1``, then ``.2``. An identical copy already there
    (an import that stopped before its commit) is kept instead of copied again. The copy
    is written to a temporary file first and then linked under its name, which fails
    rather than replace a file: a crash leaves no half-written copy under an archive name.
    """
    partial = archive / f".{path.name}.partial"
    partial.unlink(missing_ok=True)  # left by a crash, even one after the copy was linked
    if _archived_copy(path, archive) is not None:
        return
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as sink:
        sink.write(path.read_bytes())
    info = path.stat()
    os.utime(partial, ns=(info.st_atime_ns, info.st_mtime_ns))
    try:
        for target in _archive_names(path, archive):
            try:
                os.link(partial, target)
            except FileExistsError:
                continue
            return
    finally:
        partial.unlink()


def _archive_names(path: Path, archive: Path) -> Iterator[Path]:
    yield archive / path.name
    for number in itertools.count(1):
        yield archive / f"{path.name}.{number}"


def _archived_copy(path: Path, archive: Path) -> Path | None:
    """The archived file holding exactly the bytes of ``path``, if there is one."""
    for candidate in _archive_names(path, archive):
        if not candidate.exists():
            return None
        if _same_bytes(path, candidate):
            return candidate
    return None  # pragma: no cover - the names never end


def _remove_originals(files: list[Path]) -> None:
    for path in files:
        try:
            path.unlink()
        except OSError as exc:
            logger.warning("imported %s but could not remove it: %s", path, exc)


def _finish_archiving(db: DB, files: list[Path], instances_dir: Path) -> None:
    """Remove originals left by an import that stopped after its commit."""
    archive = instances_dir / ARCHIVE_DIR
    names = {inst.name for inst in db.load_all()}
    leftover = [
        path for path in files if path.stem in names and _archived_copy(path, archive) is not None
    ]
    _remove_originals(leftover)
    if len(leftover) < len(files):
        logger.warning(
            "%d legacy instance files in %s were not imported: the database already "
            "holds instances (run `llamactl db import-json` on an empty database)",
            len(files) - len(leftover),
            instances_dir,
        )


def _same_bytes(path: Path, copy: Path) -> bool:
    try:
        return copy.is_file() and path.read_bytes() == copy.read_bytes()
    except OSError:
        return False

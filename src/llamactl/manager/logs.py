"""Per-instance log files: ``<logs_dir>/<name>.log``.

Backend output is appended as raw bytes (no line-length limit), between start and stop
markers. When the file grows past ``max_bytes`` it is renamed to
``<name>-<YYYYmmdd-HHMMSS>.log`` (gzipped in the background when asked) and a new file is
started. Reading works whether or not the instance ran since llamactl started. Files are
created with mode 0600 (backends print their arguments, which may hold API keys). A full disk
does not stop the copying: what cannot be written is dropped, counted and noted in the log
once writing works again.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from llamactl.manager.datadir import PRIVATE_DIR, PRIVATE_FILE

__all__ = ["InstanceLog", "read_log", "tail_lines"]

logger = logging.getLogger(__name__)

TAIL_KEEP = 64 * 1024  # bytes of recent output kept in memory for failure reasons
_BLOCK = 64 * 1024


class InstanceLog:
    """The writable log of one instance. Not thread-safe: one writer (the event loop).

    Writing never raises: output the file cannot take (a full disk, an I/O error) is
    dropped and counted, and once a write succeeds again a line says how much was lost,
    so the backend's pipe is always drained. ``error`` keeps the last failure.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int | None = None,
        compress: bool = False,
        clock: Callable[[], float] = time.time,
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        self.path = path
        self._on_write = on_write
        self._max_bytes = max_bytes
        self._compress = compress
        self._clock = clock
        self._fd: int | None = None
        self._open = False
        self._size = 0
        self._recent = bytearray()
        self.dropped = 0  # bytes not written since the last successful write
        self.error: OSError | None = None

    def open(self) -> None:
        """Open the file for appending, creating it (and its folder) private to the user.

        Raises ``OSError`` when the file cannot be opened.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        self._fd = _open_append(self.path)
        self._size = os.fstat(self._fd).st_size
        self._open = True

    def close(self) -> None:
        if self.dropped and self._fd is not None:
            self._write_notice()
        self._open = False
        self._close_file()

    def marker(self, name: str, event: str) -> None:
        """``=== Instance NAME started at 2026-01-02 03:04:05 ===`` (or stopped)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._clock()))
        lead = "\n" if event == "started" else ""
        tail = "\n\n" if event == "stopped" else "\n"
        self.write(f"{lead}=== Instance {name} {event} at {stamp} ==={tail}".encode())

    def write(self, data: bytes) -> None:
        """Append ``data``; what cannot be written is counted in ``dropped``.

        Output that arrives after ``close`` is dropped silently.
        """
        if not self._open:
            return
        self._remember(data)
        if self._on_write is not None:
            self._on_write(data)
        self._append(data)
        if self._max_bytes is not None and self._size >= self._max_bytes:
            self._rotate()

    def last_lines(self, count: int) -> list[str]:
        """The last ``count`` non-empty lines written since this object was created."""
        text = self._recent.decode("utf-8", errors="replace")
        return [line for line in text.splitlines() if line.strip()][-count:]

    def _remember(self, data: bytes) -> None:
        self._recent += data
        if len(self._recent) > TAIL_KEEP:
            del self._recent[: len(self._recent) - TAIL_KEEP]

    def _append(self, data: bytes) -> None:
        if self._fd is None and not self._reopen():
            self.dropped += len(data)
            return
        if self.dropped and not self._write_notice():
            self.dropped += len(data)
            return
        self.dropped += self._write_all(data)

    def _write_notice(self) -> bool:
        reason = _describe(self.error)
        notice = f"\n[llamactl] {self.dropped} bytes of output dropped: {reason}\n".encode()
        if self._write_all(notice):
            return False
        self.dropped = 0
        return True

    def _write_all(self, data: bytes) -> int:
        """Write all of ``data``; return how many bytes could not be written."""
        assert self._fd is not None
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except OSError as exc:
                self.error = exc
                return len(view)
            self._size += written
            view = view[written:]
        return 0

    def _reopen(self) -> bool:
        try:
            self.open()
        except OSError as exc:
            self.error = exc
            return False
        return True

    def _close_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _rotate(self) -> None:
        self._close_file()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self._clock()))
        target = self.path.with_name(f"{self.path.stem}-{stamp}.log")
        counter = 1
        while target.exists() or target.with_suffix(".log.gz").exists():
            target = self.path.with_name(f"{self.path.stem}-{stamp}-{counter}.log")
            counter += 1
        try:
            self.path.replace(target)
        except OSError as exc:
            self.error = exc  # keep appending to the current file
        else:
            if self._compress:
                threading.Thread(target=_gzip, args=(target,), daemon=True).start()
        self._reopen()  # on failure the next write tries again


def _open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)


def _describe(error: OSError | None) -> str:
    if error is None or error.errno is None:
        return str(error) if error is not None else "write failed"
    return os.strerror(error.errno).lower()


def _gzip(path: Path) -> None:
    """Compress a rotated file; on failure (a full disk) keep it uncompressed."""
    compressed = path.with_suffix(".log.gz")
    try:
        fd = os.open(compressed, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
        with (
            path.open("rb") as source,
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw) as sink,
        ):
            shutil.copyfileobj(source, sink)
    except OSError as exc:
        logger.warning("cannot compress %s: %s", path, exc.strerror)
        with contextlib.suppress(OSError):
            compressed.unlink()
        return
    path.unlink()


def read_log(path: Path) -> str:
    """The whole current log file ("" when there is none)."""
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def tail_lines(path: Path, count: int) -> str:
    """The last ``count`` lines of the file joined with newlines, reading from the end.

    Blocks are read backwards until they hold more than ``count`` newlines or the start
    of the file is reached, so the work is linear in what is returned (or in the file's
    size when ``count`` is beyond its length).
    """
    if count <= 0:
        return read_log(path)
    try:
        with path.open("rb") as handle:
            data = _read_tail(handle, count)
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-count:])


def _read_tail(handle: BinaryIO, count: int) -> bytes:
    """The shortest end of the file that holds its last ``count`` lines (or all of it)."""
    position = handle.seek(0, os.SEEK_END)
    blocks: list[bytes] = []
    newlines = 0
    while position > 0 and newlines <= count:
        step = min(_BLOCK, position)
        position -= step
        handle.seek(position)
        block = handle.read(step)
        newlines += block.count(b"\n")
        blocks.append(block)
    blocks.reverse()
    return b"".join(blocks)

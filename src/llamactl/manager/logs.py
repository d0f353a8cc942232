"""Per-instance log files: ``<logs_dir>/<name>.log``.

Backend output is appended as raw bytes (no line-length limit), between start and stop
markers. When the file grows past ``max_bytes`` it is renamed to
``<name>-<YYYYmmdd-HHMMSS>.log`` (gzipped in the background when asked) and a new file is
started. Reading works whether or not the instance ran since llamactl started.
"""

from __future__ import annotations

import gzip
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["InstanceLog", "read_log", "tail_lines"]

TAIL_KEEP = 64 * 1024  # bytes of recent output kept in memory for failure reasons
_BLOCK = 64 * 1024


class InstanceLog:
    """The writable log of one instance. Not thread-safe: one writer (the event loop)."""

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
        self._file: BinaryIO | None = None
        self._size = 0
        self._recent = bytearray()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self._size = self._file.tell()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def marker(self, name: str, event: str) -> None:
        """``=== Instance NAME started at 2026-01-02 03:04:05 ===`` (or stopped)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._clock()))
        lead = "\n" if event == "started" else ""
        tail = "\n\n" if event == "stopped" else "\n"
        self.write(f"{lead}=== Instance {name} {event} at {stamp} ==={tail}".encode())

    def write(self, data: bytes) -> None:
        """Append ``data``. Output that arrives after ``close`` is dropped."""
        if self._file is None:
            return
        self._file.write(data)
        self._file.flush()
        self._size += len(data)
        self._remember(data)
        if self._on_write is not None:
            self._on_write(data)
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

    def _rotate(self) -> None:
        self.close()
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self._clock()))
        target = self.path.with_name(f"{self.path.stem}-{stamp}.log")
        counter = 1
        while target.exists() or target.with_suffix(".log.gz").exists():
            target = self.path.with_name(f"{self.path.stem}-{stamp}-{counter}.log")
            counter += 1
        self.path.replace(target)
        if self._compress:
            threading.Thread(target=_gzip, args=(target,), daemon=True).start()
        self.open()


def _gzip(path: Path) -> None:
    compressed = path.with_suffix(".log.gz")
    with path.open("rb") as source, gzip.open(compressed, "wb") as sink:
        shutil.copyfileobj(source, sink)
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

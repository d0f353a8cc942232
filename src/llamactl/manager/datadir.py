"""The data directory: who owns it (a lock held for the process lifetime) and who may read it.

One llamactl at a time works on a data directory. ``DataDirLock`` takes an exclusive
``flock`` on ``<data_dir>/llamactl.lock`` and writes its PID into the file; a second
llamactl finds the lock taken and refuses, naming the PID it reads there. The kernel
releases the lock when the process ends, however it ends.

What llamactl writes holds secrets (instance environments, backend API keys), so it is
private to the user running it: folders 0700, files 0600, given at creation (never by
changing the umask). ``tighten`` narrows what an earlier version left wider.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from pathlib import Path

from llamactl.errors import ConfigError, DataDirInUse
from llamactl.manager.processinfo import open_file_targets

__all__ = [
    "LOCK_NAME",
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "DataDirLock",
    "holds_lock_file",
    "make_private_dir",
    "tighten",
]

logger = logging.getLogger("llamactl")

LOCK_NAME = "llamactl.lock"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with mode 0700 for the last part."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)


def tighten(path: Path, allowed: int, *, quiet: bool = False) -> bool:
    """Remove from ``path``'s mode every bit not in ``allowed``; log it unless ``quiet``.

    Returns whether the mode changed (False for a missing file too).

    Links are not followed: the mode of what a link points to is not ours to change.
    """
    try:
        info = path.lstat()
    except FileNotFoundError:
        return False
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return False  # a link, a device, a socket: not ours to change
    mode = stat.S_IMODE(info.st_mode)
    if not mode & ~allowed:
        return False
    path.chmod(mode & allowed)
    if quiet:
        return True
    logger.warning(
        "tightened the mode of %s from %04o to %04o (it was readable by other users)",
        path,
        mode,
        mode & allowed,
    )
    return True


class DataDirLock:
    """The exclusive lock of one data directory, held until ``release`` or process exit."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our PID, or raise ``DataDirInUse`` naming the holder."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
        except OSError as exc:
            raise ConfigError(
                f"cannot open the lock file {self.path}: {exc.strerror}",
                key="data_dir",
                value=str(self.path.parent),
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise self._locked(holder) from None
        except OSError as exc:
            os.close(fd)
            raise ConfigError(
                f"cannot lock {self.path}: {exc.strerror}",
                key="data_dir",
                value=str(self.path.parent),
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def _locked(self, holder: int | None) -> DataDirInUse:
        who = f"pid {holder}" if holder is not None else "a process whose pid is unknown"
        return DataDirInUse(
            f"another llamactl ({who}) is using the data directory {self.path.parent} "
            f"(it holds {self.path}); stop it first or set another data_dir",
            pid=holder,
            data_dir=str(self.path.parent),
        )


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def holds_lock_file(pid: int) -> bool:
    """Whether process ``pid`` has a llamactl lock file open (so it is a live llamactl).

    False when its open files cannot be read (another user's process, no ``/proc``).
    """
    return any(target.endswith(f"/{LOCK_NAME}") for target in open_file_targets(pid))

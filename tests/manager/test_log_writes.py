"""Writing an instance log never raises: what the file cannot take is dropped and counted."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from llamactl.manager.logs import InstanceLog

pytestmark = pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")


def test_writes_to_a_full_device_are_counted_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC
    seen: list[bytes] = []
    log = InstanceLog(path, on_write=seen.append)
    log.open()
    log.write(b"x" * 1000)
    log.write(b"y" * 24)
    assert log.dropped == 1024
    assert log.error is not None and log.error.errno == errno.ENOSPC
    assert seen == [b"x" * 1000, b"y" * 24]  # followers still get the output
    assert log.last_lines(1) == ["x" * 1000 + "y" * 24]
    log.close()  # the notice cannot be written either: no exception


def test_the_count_is_noted_once_writing_works_again(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.symlink_to("/dev/full")
    log = InstanceLog(path)
    log.open()
    log.write(b"lost\n")
    path.unlink()  # the next file the log opens is a real one
    log._close_file()  # as after a rotation that could not reopen: the next write reopens
    log.write(b"kept\n")
    log.write(b"more\n")
    log.close()
    assert path.read_bytes() == (
        b"\n[llamactl] 5 bytes of output dropped: no space left on device\nkept\nmore\n"
    )
    assert log.dropped == 0

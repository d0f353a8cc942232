"""The tail of a log file: ``tail_lines`` reads backwards and stops at N lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamactl.manager import logs
from llamactl.manager.logs import InstanceLog, tail_lines


def _numbered(count: int, *, width: int = 20) -> str:
    return "".join(f"{n:06d} {'x' * width}\n" for n in range(count))


def test_more_lines_asked_than_the_file_holds_gives_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text(_numbered(10_000))
    assert tail_lines(path, 50_000) == path.read_text().rstrip("\n")


def test_exactly_n_lines(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text(_numbered(10_000))
    tail = tail_lines(path, 1234).split("\n")
    assert len(tail) == 1234
    assert tail[0].startswith("008766 ")
    assert tail[-1].startswith("009999 ")


def test_as_many_lines_as_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text(_numbered(3))
    assert tail_lines(path, 3).split("\n") == [f"{n:06d} {'x' * 20}" for n in range(3)]


def test_a_last_line_without_newline_counts_as_a_line(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text("one\ntwo\nthree")
    assert tail_lines(path, 2) == "two\nthree"
    assert tail_lines(path, 5) == "one\ntwo\nthree"


@pytest.mark.parametrize("count", [1, 2, 3, 10])
def test_lines_that_cross_block_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    monkeypatch.setattr(logs, "_BLOCK", 7)  # every line spans several blocks
    path = tmp_path / "a.log"
    lines = [f"line {n} " + "y" * (n * 3) for n in range(12)]
    path.write_text("\n".join(lines) + "\n")
    assert tail_lines(path, count) == "\n".join(lines[-count:])


def test_a_long_line_bigger_than_a_block(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    long = "z" * (3 * 64 * 1024 + 5)
    path.write_text(f"first\n{long}\nlast\n")
    assert tail_lines(path, 2) == f"{long}\nlast"


def test_empty_and_missing_files(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"")
    assert tail_lines(path, 5) == ""
    assert tail_lines(tmp_path / "missing.log", 5) == ""


def test_after_a_rotation_the_tail_is_the_new_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = InstanceLog(path, max_bytes=100)
    log.open()
    log.write(b"old 1\nold 2\n" + b"o" * 100 + b"\n")  # past max_bytes: rotated
    log.write(b"new 1\nnew 2\n")
    log.close()
    assert tail_lines(path, 10) == "new 1\nnew 2"
    rotated = [p for p in tmp_path.glob("a-*.log")]
    assert len(rotated) == 1
    assert tail_lines(rotated[0], 2).startswith("old 2\n")

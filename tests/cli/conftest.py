"""A real llamactl server on a free port, shared by the CLI tests of a module
(``tests.support.cli.launch``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cli import Server, launch
from tests.support.server_process import stop


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    process, server = launch(tmp_path_factory.mktemp("cli-home"))
    try:
        yield server
    finally:
        output = stop(process)
        assert process.returncode == 0, output

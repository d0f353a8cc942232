"""The management app over real services (``tests.support.services.serving``), and real
llamactl servers on uvicorn (``tests.support.live``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.live import LiveServers, Running
from tests.support.services import Api, serving


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path) as built:
        yield built


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start llamactl with extra ``LLAMACTL_*`` settings; everything stops at the end."""
    servers = LiveServers(tmp_path)
    yield servers.start
    await servers.aclose()

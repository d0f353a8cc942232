"""A real llamactl server (uvicorn on a socket) whose backends are fake llama-servers
(``tests.support.live``), run on uvloop as in production."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.live import LiveServers, Running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    """The proxy runs on uvloop in production (uvicorn picks it): test it there."""
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start llamactl with extra ``LLAMACTL_*`` settings; everything stops at the end."""
    servers = LiveServers(tmp_path)
    yield servers.start
    await servers.aclose()

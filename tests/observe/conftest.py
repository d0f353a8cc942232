"""Real llamactl servers (uvicorn on a socket) over fake llama-servers, on uvloop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.support.live import LiveServers, Running


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, bool]]:
    return ("asyncio", {"use_uvloop": True})


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Running]]]:
    """Start llamactl with extra ``LLAMACTL_*`` settings; everything stops at the end."""
    servers = LiveServers(tmp_path)
    yield servers.start
    await servers.aclose()

"""Browser fixtures: a real llamactl server over the fake llama-server, and headless Chromium.

Chromium is Debian's ``chromium`` package (``scripts/install-browser``), driven by
Playwright; Playwright never downloads a browser of its own. Without /usr/bin/chromium the
browser tests are skipped. Screenshots go to a temporary folder, or to
``$LLAMACTL_SCREENSHOTS_DIR`` (``docs/images`` to refresh the README's pictures).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.layout import VIEWPORTS
from tests.support.net import free_port
from tests.support.server_process import start, stop, wait_healthy
from tests.support.web import (
    CHROMIUM,
    CHROMIUM_ARGS,
    KEY,
    SESSION_PORTS,
    SKIP_REASON,
    RestartableServer,
    Server,
    server_environment,
)

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[RestartableServer]:
    own = RestartableServer(tmp_path)
    own.start()
    try:
        yield own
    finally:
        if own.process is not None:
            own.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("web-home")
    port = free_port()
    process = start(home, server_environment(home, port, SESSION_PORTS))
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_healthy(process, f"{url}healthz")
        yield Server(url)
        for instance in httpx.get(
            f"{url}api/v1/instances", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        ).json():
            httpx.post(
                f"{url}api/v1/instances/{instance['name']}/stop",
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=30,
            )
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{SKIP_REASON}: {CHROMIUM} is missing (run scripts/install-browser)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason=f"{SKIP_REASON}: pip install -e '.[test]' installs it"
    )
    playwright = sync_api.sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        color_scheme="light",
        accept_downloads=True,
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(params=VIEWPORTS, ids=[f"{w}px" for w, _ in VIEWPORTS])
def sized_page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    """A page at each of the widths people use (tests/support/layout.py)."""
    width, height = request.param
    context = browser.new_context(
        viewport={"width": width, "height": height}, color_scheme="light", accept_downloads=True
    )
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("LLAMACTL_SCREENSHOTS_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder

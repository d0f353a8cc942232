"""Browser fixtures: a real llamactl server over the fake llama-server, and headless Chromium.

Chromium is Debian's ``chromium`` package (``scripts/install-browser``), driven by
Playwright; Playwright never downloads a browser of its own. Without /usr/bin/chromium the
browser tests are skipped. Screenshots go to a temporary folder, or to
``$LLAMACTL_SCREENSHOTS_DIR`` (``docs/images`` to refresh the README's pictures).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.test_serve import environment, free_port, start, stop, wait_healthy

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY = "sk-web"
SKIP_REASON = "browser tests need Debian's chromium and Playwright for Python"
REPO = Path(__file__).resolve().parents[2]
FAKE_SERVER = REPO / "tests" / "fake_llama_server.py"


@dataclass(frozen=True)
class Server:
    url: str  # with a trailing slash: the dashboard

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """A management API call with the key, outside the browser."""
        return httpx.request(
            method,
            f"{self.url}api/v1/{path}",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
            **kwargs,  # type: ignore[arg-type]
        )


# The backend ports of this session, below the OS's ephemeral range and apart from those
# of the manager tests (20000-29999), so that sessions running side by side do not take
# each other's ports: the shared server gets the first half, restartable ones the second.
SESSION_PORTS = 10000 + (os.getpid() % 100) * 100


def server_environment(home: Path, port: int, first_backend_port: int) -> dict[str, str]:
    last = first_backend_port + 49
    return environment(
        home,
        LLAMACTL_PORT=str(port),
        LLAMACTL_INSTANCE_PORT_RANGE=f"{first_backend_port}-{last}",
        LLAMACTL_MANAGEMENT_KEYS=KEY,
        LLAMACTL_DATA_DIRECTORY=str(home / "data"),
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
        FAKE_LLAMA_LOAD_SECONDS="1",
    )


class RestartableServer:
    """A llamactl of one test's own, which the test may stop and start again (same port,
    same data), as a user does with the dashboard still open."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.process: subprocess.Popen[str] | None = None

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return Server(self.url).api(method, path, **kwargs)

    def start(self) -> None:
        assert self.process is None, "already running"
        env = server_environment(self.home, self.port, SESSION_PORTS + 50)
        self.process = start(self.home, env)
        wait_healthy(self.process, f"{self.url}healthz")

    def stop(self) -> str:
        """SIGTERM (a graceful stop: backends are stopped, rows keep their status)."""
        assert self.process is not None, "not running"
        process, self.process = self.process, None
        return stop(process)


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


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("LLAMACTL_SCREENSHOTS_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder

"""``/docs`` in Chromium with every URL that is not on the loopback interface blocked.

Swagger UI must render the operations from files that llamactl serves itself; with
``server.enable_swagger`` off (the default, as the dashboard's server runs) ``/docs`` is
not there at all.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.support.config import FAKE_SERVER
from tests.support.net import free_port
from tests.support.server_process import environment, start, stop, wait_healthy
from tests.support.web import KEY, Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Route

LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("docs-home")
    port = free_port()
    env = environment(
        home,
        LLAMACTL_PORT=str(port),
        LLAMACTL_MANAGEMENT_KEYS=KEY,
        LLAMACTL_ENABLE_SWAGGER="true",
        LLAMACTL_DATA_DIRECTORY=str(home / "data"),
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
    )
    process = start(home, env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_healthy(process, f"{url}healthz")
        yield Server(url)
    finally:
        stop(process)


def test_docs_render_with_no_network(browser: Browser, docs_server: Server) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    blocked: list[str] = []

    def offline(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        response = page.goto(f"{docs_server.url}docs")
        assert response is not None and response.status == 200
        operations = page.locator(".opblock")
        expect(operations.first).to_be_visible()
        instances = page.locator(".opblock-summary-path", has_text="/api/v1/instances")
        expect(instances.first).to_be_visible()
        assert operations.count() >= 19
        expect(page.locator(".info .title")).to_contain_text("llamactl")
        # Try one operation with the key, as a user would.
        page.locator(".auth-wrapper button.authorize").click()
        page.locator(".modal-ux input").fill(KEY)
        page.locator(".modal-ux button.authorize").click()
        page.locator(".modal-ux button.btn-done").click()
        listing = page.locator(
            ".opblock-get", has=page.locator(".opblock-summary-path", has_text="/api/v1/instances")
        ).first
        listing.locator(".opblock-summary").click()
        listing.locator(".try-out__btn").click()
        listing.locator(".execute").click()
        status = listing.locator(".live-responses-table tbody .response-col_status")
        expect(status).to_have_text("200")
        assert blocked == []
        assert errors == []
    finally:
        context.close()


def test_docs_are_absent_without_enable_swagger(browser: Browser, server: Server) -> None:
    context = browser.new_context()
    page = context.new_page()
    try:
        for path in ("docs", "openapi.json"):
            response = page.goto(f"{server.url}{path}")
            assert response is not None and response.status == 404, path
    finally:
        context.close()

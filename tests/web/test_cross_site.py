"""Cross-site requests from a real browser to a llamactl whose management auth is off.

``http://localhost:PORT`` and ``http://127.0.0.1:PORT`` are different origins to a browser,
though both reach the same server: a page of the first plays the foreign site. A page of
llamactl's own origin (the dashboard) must still be able to create and start instances.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.config import FAKE_SERVER
from tests.support.net import free_port
from tests.support.server_process import environment, start, stop, wait_healthy

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

OPTIONS = '{"backend_type": "llama_cpp", "backend_options": {"model": "/m.gguf"}}'
# What a foreign page can send without a preflight: a text/plain body, or no body.
SEND = """async ([url, body]) => {
  try {
    await fetch(url, {method: "POST", mode: "no-cors", body: body ?? undefined});
    return "sent";
  } catch (err) {
    return "failed: " + err.message;
  }
}"""
# What the dashboard sends: JSON from its own origin.
SEND_JSON = """async ([url, body]) => {
  const init = {method: "POST"};
  if (body !== null) {
    init.headers = {"Content-Type": "application/json"};
    init.body = body;
  }
  return (await fetch(url, init)).status;
}"""


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A llamactl on 127.0.0.1 with management auth off; yields its port."""
    home = tmp_path_factory.mktemp("open-home")
    port = free_port()
    env = environment(
        home,
        LLAMACTL_PORT=str(port),
        LLAMACTL_REQUIRE_MANAGEMENT_AUTH="false",
        LLAMACTL_DATA_DIRECTORY=str(home / "data"),
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
    )
    process = start(home, env)
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}/healthz")
        yield port
        for name in instance_names(port):
            httpx.post(f"http://127.0.0.1:{port}/api/v1/instances/{name}/stop", timeout=30)
    finally:
        stop(process)


def instance_names(port: int) -> list[str]:
    response = httpx.get(f"http://127.0.0.1:{port}/api/v1/instances", timeout=10)
    return [instance["name"] for instance in response.json()]


def status_of(port: int, name: str) -> str:
    return str(httpx.get(f"http://127.0.0.1:{port}/api/v1/instances/{name}").json()["status"])


def page_at(browser: Browser, url: str) -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    response = page.goto(url)
    assert response is not None and response.status == 200
    return page


def test_a_foreign_page_can_neither_create_nor_start(browser: Browser, open_server: int) -> None:
    port = open_server
    api = f"http://127.0.0.1:{port}/api/v1/instances"
    httpx.post(f"{api}/target", content=OPTIONS, headers={"Content-Type": "application/json"})
    foreign = page_at(browser, f"http://localhost:{port}/")
    try:
        assert foreign.evaluate(SEND, [f"{api}/pwned", OPTIONS]) == "sent"
        assert foreign.evaluate(SEND, [f"{api}/target/start", None]) == "sent"
        # Even a JSON request, which needs a preflight that CORS ('*') allows, is refused.
        assert foreign.evaluate(SEND_JSON, [f"{api}/json-pwned", OPTIONS]) == 403
    finally:
        foreign.context.close()
    assert instance_names(port) == ["target"]
    assert status_of(port, "target") == "stopped"


def test_the_dashboard_origin_still_creates_and_starts(browser: Browser, open_server: int) -> None:
    port = open_server
    own = page_at(browser, f"http://127.0.0.1:{port}/")
    try:
        assert own.evaluate(SEND_JSON, ["api/v1/instances/mine", OPTIONS]) == 201
        assert own.evaluate(SEND_JSON, ["api/v1/instances/mine/start", None]) == 200
    finally:
        own.context.close()
    assert "mine" in instance_names(port)
    assert status_of(port, "mine") == "running"

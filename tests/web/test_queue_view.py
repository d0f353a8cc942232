"""The live queue of each instance in the list: what it answers, what waits for it, and
(where the server says so) that it is held to make room. A real llamactl over the fake
llama-server; the requests are real, streamed slowly by the fake. Waits are Playwright's
own, never sleeps."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.config import fake_options
from tests.support.dashboard import READY_TIMEOUT, log_in, row
from tests.support.layout import assert_inside_viewport, assert_no_horizontal_overflow
from tests.support.web import KEY, SKIP_REASON, Server

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)
expect = sync_api.expect

SLOW = {"FAKE_LLAMA_STREAM_CHUNKS": "40", "FAKE_LLAMA_STREAM_INTERVAL": "0.25"}  # 10 s


@pytest.fixture
def busy(server: Server) -> Iterator[str]:
    """A running instance answering two streamed requests (10 s each) while the test runs."""
    name = "queue-busy"
    created = server.api("POST", f"instances/{name}", json=fake_options(environment=SLOW))
    assert created.status_code == 201, created.text
    assert server.api("POST", f"instances/{name}/start").status_code == 200
    done = threading.Event()

    def ask() -> None:
        body = {"model": name, "stream": True, "messages": [{"role": "user", "content": "a b c"}]}
        with httpx.stream(
            "POST",
            f"{server.url}v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=60,
        ) as response:
            for _ in response.iter_bytes():
                if done.is_set():
                    return

    threads = [threading.Thread(target=ask, daemon=True) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        yield name
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=30)
        server.api("POST", f"instances/{name}/stop")
        server.api("DELETE", f"instances/{name}")


def test_requests_in_flight_show_under_the_status_and_go(
    page: Page, server: Server, busy: str
) -> None:
    log_in(page, server)
    inst = row(page, busy)
    expect(inst.locator(".col-status .queue")).to_have_text("2 in flight", timeout=READY_TIMEOUT)
    expect(inst.locator(".col-last")).to_have_text("now")
    expect(inst.locator(".col-status .held")).to_be_hidden()
    expect(inst.locator(".col-status .queue")).to_be_hidden(timeout=READY_TIMEOUT)


def with_held(route: Route) -> None:
    """The server's own list, each instance marked held (as a server that reports holds)."""
    answer = route.fetch()
    instances = answer.json()
    for inst in instances:
        inst["held"] = True
    route.fulfill(response=answer, body=json.dumps(instances))


@pytest.mark.parametrize("width", [1280, 1024, 768, 390])
def test_a_held_instance_says_so_and_fits_every_width(
    page: Page, server: Server, busy: str, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.route("**/api/v1/instances", with_held)
    log_in(page, server)
    inst = row(page, busy)
    held = inst.locator(".col-status .held")
    expect(held).to_have_text("held: finishing its requests to make room")
    expect(inst.locator(".col-status .queue")).to_have_text("2 in flight", timeout=READY_TIMEOUT)
    assert_inside_viewport(page, held)
    assert_inside_viewport(page, inst.locator(".col-status .queue"))
    assert_no_horizontal_overflow(page)

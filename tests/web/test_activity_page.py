"""The Activity page and an instance's charts in Chromium, against a real llamactl over
the fake llama-server: requests sent to ``/v1`` while the page is open show up as rows
without a reload, the filters narrow them, older rows page in, and the charts of an
instance with requests are drawn (one without says so).

The module has a llamactl of its own (the ``server`` fixture is per module), so its log
starts empty; the tests run in order. The server writes the log every 2 s and the page
polls every 2 s: waits are Playwright's own (``expect``), never sleeps.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.support.config import fake_options
from tests.support.dashboard import READY_TIMEOUT, log_in
from tests.support.layout import assert_inside_viewport, assert_no_horizontal_overflow
from tests.support.waiting import eventually
from tests.support.web import KEY, SKIP_REASON, Server

if TYPE_CHECKING:
    from pathlib import Path

    from playwright.sync_api import Locator, Page

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)
expect = sync_api.expect

LOGGED_TIMEOUT = 20_000  # ms: written every 2 s, read every 2 s
INSTANCES = ("act-a", "act-b", "act-idle")


@pytest.fixture(scope="module")
def instances(server: Server) -> Iterator[tuple[str, ...]]:
    for name in INSTANCES:
        created = server.api("POST", f"instances/{name}", json=fake_options(on_demand_start=True))
        assert created.status_code == 201, created.text
    try:
        yield INSTANCES
    finally:
        for name in INSTANCES:
            server.api("POST", f"instances/{name}/stop")
            server.api("DELETE", f"instances/{name}")


def chat(server: Server, model: str, key: str = KEY, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "one two three"}], **extra}
    return httpx.post(
        f"{server.url}v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def logged(server: Server, **query: object) -> list[dict[str, Any]]:
    answer = server.api("GET", "activity", params={"limit": 1000, **query})
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


def open_activity(page: Page, server: Server) -> None:
    log_in(page, server)
    page.locator('#nav a[data-view="activity"]').click()
    expect(page.locator("#view-activity")).to_be_visible()
    expect(page.locator("#activity-updated")).to_contain_text("Live")


def rows_of(page: Page, instance: str) -> Locator:
    return page.locator("#activity-body tr").filter(
        has=page.locator(".col-instance", has_text=re.compile(f"^{re.escape(instance)}$"))
    )


def test_with_no_requests_the_page_says_so(
    page: Page, server: Server, instances: tuple[str, ...]
) -> None:
    assert logged(server) == []
    open_activity(page, server)
    expect(page.locator("#activity-empty")).to_have_text(
        "No requests yet. Requests to /v1 show up here as they are made."
    )
    expect(page.locator("#activity-body tr")).to_have_count(0)
    expect(page.locator("#activity-older")).to_be_hidden()


def test_requests_show_up_live_and_the_filters_narrow_them(
    page: Page, server: Server, instances: tuple[str, ...], screenshots: Path
) -> None:
    made = server.api("POST", "auth/keys", json={"name": "ci"})
    assert made.status_code == 201, made.text
    open_activity(page, server)
    page.evaluate("window.notReloaded = true")

    assert chat(server, "act-a").status_code == 200  # starts it: a cold start
    assert chat(server, "act-a", stream=True).status_code == 200
    assert chat(server, "act-b", key=made.json()["key"]).status_code == 200
    assert chat(server, "no-such-model").status_code == 404

    a_rows = rows_of(page, "act-a")
    expect(a_rows).to_have_count(2, timeout=LOGGED_TIMEOUT)
    expect(rows_of(page, "act-b")).to_have_count(1, timeout=LOGGED_TIMEOUT)
    expect(rows_of(page, "none")).to_have_count(1, timeout=LOGGED_TIMEOUT)
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator("#activity-empty")).to_be_hidden()

    # newest first: the 404 on top, the cold start at the bottom
    expect(page.locator("#activity-body tr .col-code")).to_have_text(["404", "200", "200", "200"])
    ids = [
        int(i)
        for i in page.locator("#activity-body tr").evaluate_all(
            "rows => rows.map((row) => row.dataset.id)"
        )
    ]
    assert ids == sorted(ids, reverse=True)
    first = a_rows.last
    expect(first.locator(".col-cold .badge")).to_have_text("cold")
    expect(first.locator(".col-route")).to_have_text("/v1/chat/completions")
    expect(first.locator(".col-duration")).to_have_text(re.compile(r"^\d+(\.\d+)? m?s$"))
    expect(first.locator(".col-wait")).to_have_text(re.compile(r"^\d+(\.\d+)? m?s$"))
    expect(first.locator(".col-tokens")).to_have_text(re.compile(r"^\d+ / \d+$"))
    expect(first.locator(".col-key")).to_have_text("—")  # the management key has no name
    streamed = a_rows.first
    expect(streamed.locator(".col-route")).to_have_text("/v1/chat/completions stream")
    expect(streamed.locator(".col-cold .badge")).to_have_count(0)
    expect(rows_of(page, "act-b").locator(".col-key")).to_have_text("ci")
    expect(rows_of(page, "none").locator(".col-code .badge")).to_have_class(re.compile(r"\bs4xx\b"))
    page.screenshot(path=screenshots / "activity.png")

    page.select_option("#activity-status", "error")
    expect(page.locator("#activity-body tr")).to_have_count(1)
    expect(page.locator("#activity-body tr .col-code")).to_have_text(["404"])
    page.select_option("#activity-status", "")
    page.select_option("#activity-instance", "act-b")
    expect(page.locator("#activity-body tr")).to_have_count(1)
    expect(rows_of(page, "act-b")).to_have_count(1)

    # a request of the chosen instance arrives live; one of another does not show
    assert chat(server, "act-a").status_code == 200
    assert chat(server, "act-b").status_code == 200
    expect(rows_of(page, "act-b")).to_have_count(2, timeout=LOGGED_TIMEOUT)
    eventually(lambda: len(logged(server, instance="act-a")) == 3, "act-a's third request logged")
    page.select_option("#activity-instance", "")
    expect(rows_of(page, "act-a")).to_have_count(3)

    page.select_option("#activity-status", "5xx")
    expect(page.locator("#activity-empty")).to_have_text("No request matches these filters.")
    page.select_option("#activity-status", "")
    server.api("DELETE", f"auth/keys/{made.json()['id']}")


def test_older_requests_page_in(page: Page, server: Server, instances: tuple[str, ...]) -> None:
    with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
        for _ in range(110):
            body = {"model": "no-such-model", "messages": []}
            assert client.post(f"{server.url}v1/chat/completions", json=body).status_code == 404
    eventually(lambda: len(logged(server)) >= 116, "the 110 requests logged")
    total = len(logged(server))
    open_activity(page, server)
    expect(page.locator("#activity-body tr")).to_have_count(100)
    older = page.locator("#activity-older")
    expect(older).to_be_visible()
    older.click()
    expect(page.locator("#activity-body tr")).to_have_count(total)
    expect(older).to_be_hidden()
    ids = page.locator("#activity-body tr").evaluate_all("rows => rows.map((r) => r.dataset.id)")
    assert len(set(ids)) == total


def test_the_charts_of_an_instance_with_requests_are_drawn(
    page: Page, server: Server, instances: tuple[str, ...], screenshots: Path
) -> None:
    eventually(lambda: len(logged(server, instance="act-a")) >= 1, "act-a's requests logged")
    log_in(page, server)
    page.locator('#instances-body tr[data-name="act-a"] .act-charts').click()
    expect(page.locator("#view-charts")).to_be_visible()
    expect(page.locator("#charts-name")).to_have_text("act-a")
    requests = page.locator('#charts-body [data-chart="requests"]')
    expect(requests.locator("svg.chart rect.bar").first).to_be_visible()
    bars = requests.locator("svg.chart .s-requests rect.bar")
    titles = bars.evaluate_all("bars => bars.map((bar) => bar.textContent)")
    assert sum(int(title.rsplit(": ", 1)[1]) for title in titles) == len(
        logged(server, instance="act-a")
    )
    expect(
        page.locator('#charts-body [data-chart="ttfb"] svg.chart circle.point').first
    ).to_be_visible()
    expect(page.locator('#charts-body [data-chart="load"] svg.chart rect.bar')).to_have_count(1)
    expect(page.locator("#charts-empty")).to_be_hidden()
    page.screenshot(path=screenshots / "charts.png")

    page.locator("#charts-log").click()
    expect(page.locator("#view-activity")).to_be_visible()
    expect(page.locator("#activity-instance")).to_have_value("act-a")
    expect(rows_of(page, "act-a")).to_have_count(3)
    expect(page.locator("#activity-body tr")).to_have_count(3)


def test_the_charts_of_an_instance_without_requests_say_so(
    page: Page, server: Server, instances: tuple[str, ...]
) -> None:
    log_in(page, server)
    page.goto(f"{server.url}#/charts/act-idle")
    expect(page.locator("#charts-empty")).to_have_text("No requests to act-idle in the last hour.")
    expect(page.locator("#charts-body svg")).to_have_count(0)
    expect(page.locator("#charts-body .chart-empty")).to_have_count(4)
    expect(page.locator('[data-chart="requests"] .chart-empty')).to_have_text(
        "No requests in this period."
    )


def test_the_activity_page_and_the_charts_at_every_width(
    sized_page: Page, server: Server, instances: tuple[str, ...]
) -> None:
    page = sized_page
    open_activity(page, server)
    expect(page.locator("#activity-body tr").first).to_be_visible(timeout=READY_TIMEOUT)
    for selector in ("#activity-instance", "#activity-status", "#activity-since"):
        assert_inside_viewport(page, page.locator(selector))
    assert_inside_viewport(page, page.locator("#activity-body tr").first.locator(".col-key"))
    assert_no_horizontal_overflow(page)
    sideways = page.locator("#view-activity .table-wrap").evaluate(
        "node => node.scrollWidth - node.clientWidth"
    )
    assert sideways <= 1, f"the request table scrolls sideways by {sideways} px"

    page.goto(f"{server.url}#/charts/act-a")
    chart = page.locator('[data-chart="requests"] svg.chart')
    expect(chart).to_be_visible()
    assert_inside_viewport(page, page.locator("#charts-period"))
    assert_no_horizontal_overflow(page)
    box = chart.bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]

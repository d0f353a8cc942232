"""Steps in the dashboard that several browser tests take (Playwright; skipped without it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support.web import KEY, SKIP_REASON, Server

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)
expect = sync_api.expect

__all__ = ["READY_TIMEOUT", "log_in", "open_dashboard", "row"]

READY_TIMEOUT = 30_000  # ms: the fake backend "loads" for a second


def open_dashboard(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def log_in(page: Page, server: Server) -> None:
    open_dashboard(page, server.url)
    page.fill("#login-key", KEY)
    page.click("#login-submit")
    expect(page.locator("#view-instances")).to_be_visible()


def row(page: Page, name: str) -> Locator:
    return page.locator(f'#instances-body tr[data-name="{name}"]')

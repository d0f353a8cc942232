"""The dashboard at the widths people use: every action and the header reachable.

At 1280, 1024, 768 and 390 px wide, each action of an instance row is visible, inside the
viewport and takes a real click that does what it says (Playwright's click checks that
nothing covers it). Waits are Playwright's own, never sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.dashboard import READY_TIMEOUT, log_in, row
from tests.support.layout import action, assert_inside_viewport, assert_no_horizontal_overflow
from tests.support.web import Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect


def test_every_action_and_the_header_are_reachable(
    sized_page: Page, server: Server, screenshots: Path
) -> None:
    page = sized_page
    viewport = page.viewport_size
    assert viewport is not None
    width = viewport["width"]
    name = f"wide-model-name-q4-{width}"  # hyphens, where a browser likes to wrap
    created = server.api(
        "POST",
        f"instances/{name}",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/layout.gguf"}},
    )
    assert created.status_code == 201, created.text
    try:
        log_in(page, server)
        inst = row(page, name)
        expect(inst.locator(".col-status")).to_contain_text("stopped")
        assert_no_horizontal_overflow(page)
        for selector in (
            '#nav a[data-view="instances"]',
            '#nav a[data-view="form"]',
            '#nav a[data-view="activity"]',
            '#nav a[data-view="nodes"]',
            '#nav a[data-view="keys"]',
            '#nav a[data-view="system"]',
            "#theme-toggle",
            "#logout",
            "#new-instance",
            "#show-import",
        ):
            assert_inside_viewport(page, page.locator(selector))
        one_line = inst.locator(".col-name strong").evaluate(
            "node => node.getBoundingClientRect().height"
            " < parseFloat(getComputedStyle(node).lineHeight) * 1.5"
        )
        assert one_line, f"the name {name} wraps"
        if width >= 1280:
            expect(inst.locator(".act-menu")).to_be_hidden()  # room enough: inline
        if width < 900:
            expect(inst.locator(".act-menu")).to_be_visible()  # a card: always the menu

        action(page, inst, ".act-start").click()
        expect(page.locator("#toasts")).to_contain_text(f"Started {name}.")
        expect(inst.locator(".col-status")).to_have_text(re.compile("running"))
        if width == 390:
            page.screenshot(path=screenshots / "instances-phone.png")
        remove = action(page, inst, ".act-delete")
        expect(remove).to_be_disabled()
        expect(remove).to_have_attribute("title", f"Stop {name} before deleting it: it is running.")
        page.keyboard.press("Escape")

        before = server.api("GET", f"instances/{name}").json()["pid"]
        action(page, inst, ".act-restart").click()
        expect(page.locator("#toasts")).to_contain_text(f"Restarted {name}.")
        after = server.api("GET", f"instances/{name}").json()
        assert after["status"] == "running" and after["pid"] not in (None, before)

        action(page, inst, ".act-stop").click()
        expect(inst.locator(".col-status")).to_have_text(
            re.compile("stopped"), timeout=READY_TIMEOUT
        )

        action(page, inst, ".act-logs").click()
        expect(page.locator("#logs-name")).to_have_text(name)
        expect(page.locator("#log-output")).to_contain_text("main: loading model")
        assert_no_horizontal_overflow(page)
        back = page.locator("#view-logs .back")
        assert_inside_viewport(page, back)
        back.click()

        action(page, inst, ".act-edit").click()
        expect(page.locator("#form-title")).to_have_text(f"Edit {name}")
        expect(page.locator("#form-submit")).to_have_text("Save")
        assert_no_horizontal_overflow(page)
        page.locator("#view-form .back").click()

        with page.expect_download() as download:
            action(page, inst, ".act-export").click()
        assert download.value.suggested_filename == f"{name}.json"

        page.once("dialog", lambda dialog: dialog.accept())
        action(page, inst, ".act-delete").click()
        expect(inst).to_have_count(0)
        expect(page.locator("#toasts")).to_contain_text(f"Deleted {name}.")

        page.locator('#nav a[data-view="system"]').click()
        expect(page.locator("#sys-config")).to_contain_text('"default_max_restarts"')
        assert_no_horizontal_overflow(page)

        theme = page.evaluate("document.documentElement.dataset.theme")
        page.locator("#theme-toggle").click()
        assert page.evaluate("document.documentElement.dataset.theme") != theme
        page.locator("#logout").click()
        expect(page.locator("#view-login")).to_be_visible()
    finally:
        server.api("POST", f"instances/{name}/stop")
        server.api("DELETE", f"instances/{name}")


def test_the_menu_closes_on_escape_and_outside_clicks(browser: Browser, server: Server) -> None:
    created = server.api(
        "POST",
        "instances/menu-closes",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/menu.gguf"}},
    )
    assert created.status_code == 201, created.text
    context = browser.new_context(viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        log_in(page, server)
        inst = row(page, "menu-closes")
        menu = inst.locator(".act-menu")
        menu.click()
        expect(inst.locator(".act-edit")).to_be_visible()
        page.keyboard.press("Escape")
        expect(inst.locator(".act-edit")).to_be_hidden()
        expect(menu).to_be_focused()
        menu.click()
        expect(inst.locator(".act-edit")).to_be_visible()
        page.locator("#view-instances h1").click()
        expect(inst.locator(".act-edit")).to_be_hidden()
        expect(menu).to_have_attribute("aria-expanded", "false")
    finally:
        context.close()
        server.api("DELETE", "instances/menu-closes")


def test_the_menu_follows_a_scroll_and_closes_once_its_button_is_gone(
    browser: Browser, server: Server
) -> None:
    names = [f"scroll-{index:02d}" for index in range(8)]
    for name in names:
        created = server.api(
            "POST",
            f"instances/{name}",
            json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/s.gguf"}},
        )
        assert created.status_code == 201, created.text
    # A phone, where every row is a card with its menu: eight cards are taller than it.
    context = browser.new_context(viewport={"width": 390, "height": 500})
    try:
        page = context.new_page()
        log_in(page, server)
        inst = row(page, names[1])
        inst.locator(".act-menu").scroll_into_view_if_needed()
        inst.locator(".act-menu").click()
        edit = inst.locator(".act-edit")
        expect(edit).to_be_visible()
        page.evaluate("window.scrollBy(0, 20)")
        page.wait_for_function("window.scrollY > 0")
        expect(edit).to_be_visible()  # a small scroll keeps the menu open, beside its button
        menu_top = edit.bounding_box()
        toggle_box = inst.locator(".act-menu").bounding_box()
        assert menu_top is not None and toggle_box is not None
        assert menu_top["y"] >= toggle_box["y"] + toggle_box["height"] - 1 or (
            menu_top["y"] + menu_top["height"] <= toggle_box["y"] + 1
        )
        page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        expect(edit).to_be_hidden()  # its button scrolled out of sight: closed
        expect(inst.locator(".act-menu")).to_have_attribute("aria-expanded", "false")
    finally:
        context.close()
        for name in names:
            server.api("DELETE", f"instances/{name}")

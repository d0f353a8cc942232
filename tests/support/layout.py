"""Checks of the dashboard's layout at the widths people use.

Playwright is imported only by the checks, so that ``tests/web/conftest.py`` can take
``VIEWPORTS`` from here where Playwright is missing (the browser tests are skipped then).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

__all__ = ["VIEWPORTS", "action", "assert_inside_viewport", "assert_no_horizontal_overflow"]

# (width, height): a desktop, a small laptop or tablet across, a tablet upright, a phone.
VIEWPORTS = [(1280, 800), (1024, 768), (768, 1024), (390, 844)]


def assert_inside_viewport(page: Page, locator: Locator) -> None:
    """Visible, and its whole box within the viewport (after scrolling to it)."""
    from playwright.sync_api import expect

    expect(locator).to_be_visible()
    locator.scroll_into_view_if_needed()
    box = locator.bounding_box()
    viewport = page.viewport_size
    assert box is not None and viewport is not None
    assert box["x"] >= 0 and box["y"] >= 0, (box, viewport)
    assert box["x"] + box["width"] <= viewport["width"], (box, viewport)
    assert box["y"] + box["height"] <= viewport["height"], (box, viewport)


def action(page: Page, inst: Locator, css: str) -> Locator:
    """The action ``css`` of the row, opening its menu first when the actions are collapsed."""
    from playwright.sync_api import expect

    expect(inst).to_be_visible()  # the list is shown (after a view change, that takes a moment)
    menu = inst.locator(".act-menu")
    if menu.is_visible():
        assert_inside_viewport(page, menu)
        menu.click()
        expect(menu).to_have_attribute("aria-expanded", "true")
    button = inst.locator(css)
    assert_inside_viewport(page, button)
    return button


def assert_no_horizontal_overflow(page: Page) -> None:
    scroll_width, width = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll_width <= width, f"the page scrolls sideways: {scroll_width} > {width}"

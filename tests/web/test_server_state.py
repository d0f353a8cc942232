"""The dashboard while its server is down, and what it shows of a failure after a restart.

Each test has a llamactl of its own (``restartable``) that it stops with SIGTERM and
starts again on the same port and data, with the page left open, as a user would.
Waits are Playwright's own (``expect``), never sleeps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.dashboard import READY_TIMEOUT, log_in, row
from tests.support.web import RestartableServer

if TYPE_CHECKING:
    from playwright.sync_api import Page

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

OFFLINE_TIMEOUT = 15_000  # ms: the list is polled every 2 s


def test_a_stopped_server_greys_out_the_list_and_the_page_recovers(
    page: Page, restartable: RestartableServer, screenshots: Path
) -> None:
    created = restartable.api(
        "POST",
        "instances/survivor",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/s.gguf"}},
    )
    assert created.status_code == 201, created.text
    log_in(page, restartable)  # type: ignore[arg-type]
    banner = page.locator("#offline-banner")
    expect(row(page, "survivor").locator(".col-status")).to_have_text("stopped")
    expect(banner).to_be_hidden()

    restartable.stop()
    expect(banner).to_be_visible(timeout=OFFLINE_TIMEOUT)
    expect(banner).to_contain_text("The llamactl server cannot be reached.")
    expect(banner).to_contain_text("The list was last updated at")
    expect(page.locator("body")).to_have_class(re.compile(r"\boffline\b"))
    greyed = page.locator("#view-instances .table-wrap").evaluate(
        "node => getComputedStyle(node).filter + ' ' + getComputedStyle(node).pointerEvents"
    )
    assert greyed == "grayscale(1) none"
    expect(page.locator("#list-updated")).to_contain_text("Not updated since")
    expect(row(page, "survivor")).to_be_visible()  # the last known list stays, greyed
    page.screenshot(path=screenshots / "server-unreachable.png")

    restartable.start()
    expect(banner).to_be_hidden(timeout=OFFLINE_TIMEOUT)
    expect(page.locator("body")).not_to_have_class(re.compile(r"\boffline\b"))
    expect(page.locator("#list-updated")).to_contain_text("Updated")
    row(page, "survivor").locator(".act-start").click()
    expect(row(page, "survivor").locator(".col-status")).to_have_text("running")
    assert restartable.api("POST", "instances/survivor/stop").status_code == 200


def test_the_failure_and_its_last_output_are_shown_after_a_restart(
    page: Page, restartable: RestartableServer, screenshots: Path
) -> None:
    created = restartable.api(
        "POST",
        "instances/crashes",
        json={
            "backend_type": "llama_cpp",
            "backend_options": {"model": "/m/crash.gguf"},
            "auto_restart": False,
            "environment": {"FAKE_LLAMA_EXIT_AT_START": "3"},
        },
    )
    assert created.status_code == 201, created.text
    log_in(page, restartable)  # type: ignore[arg-type]
    crashes = row(page, "crashes")
    crashes.locator(".act-start").click()
    expect(crashes.locator(".col-status")).to_have_text("failed", timeout=READY_TIMEOUT)
    expect(crashes.locator(".col-failure .reason")).to_have_text("exited with code 3")
    error_line = "main: error: failed to load model '/m/crash.gguf' (FAKE_LLAMA_EXIT_AT_START=3)"

    restartable.stop()
    restartable.start()
    page.reload()  # a fresh page: everything it shows comes from the restarted server
    expect(crashes.locator(".col-status")).to_have_text("failed")
    expect(crashes.locator(".col-failure .reason")).to_have_text("exited with code 3")
    output = page.locator('tr[data-detail-for="crashes"] pre')
    expect(output).to_have_count(0)
    crashes.locator(".act-output").click()
    expect(output).to_contain_text(error_line)
    expect(crashes.locator(".act-output")).to_have_attribute("aria-expanded", "true")
    page.screenshot(path=screenshots / "failure-output.png")
    # the detail row stays open and in place across refreshes of the list
    expect(page.locator("#list-updated")).not_to_have_text(
        page.locator("#list-updated").inner_text(), timeout=OFFLINE_TIMEOUT
    )
    expect(output).to_contain_text(error_line)
    crashes.locator(".act-output").click()
    expect(output).to_have_count(0)

    # a start that gets the process up clears the failure
    update = restartable.api(
        "PUT",
        "instances/crashes",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/crash.gguf"}},
    )
    assert update.status_code == 200, update.text
    crashes.locator(".act-start").click()
    expect(crashes.locator(".col-status")).to_have_text("running")
    expect(crashes.locator(".col-failure .reason")).to_have_text("—")
    expect(crashes.locator(".act-output")).to_be_hidden()
    assert restartable.api("POST", "instances/crashes/stop").status_code == 200

"""The form takes ``auto`` and ``all`` for the GPU layer counts, and keeps them on edit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.support.dashboard import log_in, row
from tests.support.web import SKIP_REASON, Server

if TYPE_CHECKING:
    from playwright.sync_api import Page

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)
expect = sync_api.expect


def test_gpu_layers_auto_from_the_form_and_all_kept_on_edit(page: Page, server: Server) -> None:
    log_in(page, server)
    page.goto(f"{server.url}#/new")
    expect(page.locator("#view-form")).to_be_visible()
    page.fill("#f-name", "layers-auto")
    page.fill("#b-llama_cpp-model", "/models/x.gguf")
    page.fill("#b-llama_cpp-gpu_layers", "auto")
    page.click("#form-submit")
    expect(row(page, "layers-auto")).to_be_visible()
    stored = server.api("GET", "instances/layers-auto").json()["options"]["backend_options"]
    assert stored["gpu_layers"] == "auto"

    created = server.api(
        "POST",
        "instances/layers-all",
        json={
            "backend_type": "llama_cpp",
            "backend_options": {"model": "/m/x.gguf", "gpu_layers": "all", "ctx_size": 512},
        },
    )
    assert created.status_code == 201, created.text
    page.goto(server.url)
    row(page, "layers-all").locator(".act-edit").click()
    expect(page.locator("#b-llama_cpp-gpu_layers")).to_have_value("all")
    page.fill("#b-llama_cpp-ctx_size", "1024")
    page.click("#form-submit")
    expect(page.locator("#view-instances")).to_be_visible()
    stored = server.api("GET", "instances/layers-all").json()["options"]["backend_options"]
    assert (stored["gpu_layers"], stored["ctx_size"]) == ("all", 1024)
    for name in ("layers-auto", "layers-all"):
        assert server.api("DELETE", f"instances/{name}").status_code == 204

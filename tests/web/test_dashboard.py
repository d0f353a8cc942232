"""The dashboard in headless Chromium against a real llamactl and the fake llama-server.

Waits are Playwright's own (``expect`` and ``wait_for``), never sleeps.
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.dashboard import READY_TIMEOUT, log_in, open_dashboard, row
from tests.support.web import KEY, SKIP_REASON, Server

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)
expect = sync_api.expect

COMMAND = "llama-server -m /models/fake.gguf -c 2048 -ngl 0"


def follow_endpoint_exists(server: Server, name: str) -> bool:
    with httpx.stream(
        "GET",
        f"{server.url}api/v1/instances/{name}/logs/follow?lines=1",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    ) as response:
        return response.status_code != 404


def test_a_wrong_key_is_refused(page: Page, server: Server) -> None:
    open_dashboard(page, server.url)
    expect(page.locator("#view-login")).to_be_visible()
    page.fill("#login-key", "sk-not-the-key")
    page.click("#login-submit")
    expect(page.locator("#login-error")).to_have_text("That key was refused by the server.")
    expect(page.locator("#view-instances")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('llamactl-key')") is None


def test_create_from_a_command_line_start_watch_logs_stop_and_delete(
    page: Page, server: Server, screenshots: Path
) -> None:
    log_in(page, server)
    page.click("#new-instance")
    expect(page.locator("#view-form")).to_be_visible()
    # the common options come prefilled with the configured defaults
    expect(page.locator("#c-max_restarts")).to_have_value("3")
    expect(page.locator("#c-restart_delay")).to_have_value("5")
    expect(page.locator("#c-auto_restart")).to_be_checked()

    page.fill("#command-text", COMMAND)
    page.click("#command-parse")
    expect(page.locator("#b-llama_cpp-model")).to_have_value("/models/fake.gguf")
    expect(page.locator("#b-llama_cpp-ctx_size")).to_have_value("2048")
    expect(page.locator("#b-llama_cpp-gpu_layers")).to_have_value("0")
    page.fill("#f-name", "fake")
    page.click("#env-add")
    page.locator("#env-editor .kv-key").last.fill("FAKE_LLAMA_NOTE")
    page.locator("#env-editor .kv-value").last.fill("hello")
    page.locator("#form-submit").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=screenshots / "create-form.png")
    page.click("#form-submit")

    expect(page.locator("#view-instances")).to_be_visible()
    expect(page.locator("#toasts")).to_contain_text("Created fake.")
    fake = row(page, "fake")
    expect(fake.locator(".col-status")).to_have_text("stopped")
    expect(fake.locator(".col-backend")).to_have_text("llama.cpp")
    expect(fake.locator(".col-port")).to_have_text(re.compile(r"^\d+$"))
    stored = server.api("GET", "instances/fake").json()["options"]
    assert stored["backend_options"]["ctx_size"] == 2048
    assert stored["backend_options"]["gpu_layers"] == 0
    assert stored["environment"] == {"FAKE_LLAMA_NOTE": "hello"}

    fake.locator(".act-start").click()
    expect(fake.locator(".col-status")).to_have_text("running")
    expect(fake.locator(".col-readiness")).to_have_text("ready", timeout=READY_TIMEOUT)
    expect(fake.locator(".col-last")).to_have_text(re.compile(r"^\d+ s ago$"))
    page.screenshot(path=screenshots / "instances.png")

    # a running instance cannot be deleted: the button is disabled and says why
    expect(fake.locator(".act-delete")).to_be_disabled()
    expect(fake.locator(".act-delete")).to_have_attribute(
        "title", "Stop fake before deleting it: it is running."
    )

    fake.locator(".act-logs").click()
    expect(page.locator("#view-logs")).to_be_visible()
    expect(page.locator("#logs-name")).to_have_text("fake")
    output = page.locator("#log-output")
    expect(output).to_contain_text("main: server is listening")
    page.fill("#logs-lines", "2")
    page.click("#logs-load")
    expect(output).not_to_contain_text("main: loading model")
    page.fill("#logs-lines", "200")
    page.click("#logs-load")
    expect(output).to_contain_text("main: loading model '/models/fake.gguf'")
    if follow_endpoint_exists(server, "fake"):
        page.click("#logs-follow")
        expect(page.locator("#logs-state")).to_have_text("Following")
        expect(output).to_contain_text("main: server is listening")
        expect(page.locator("#logs-status")).to_contain_text("ready")
    page.screenshot(path=screenshots / "logs.png")

    with page.expect_download() as download_info:
        page.click("#logs-download")
    download = download_info.value
    assert download.suggested_filename == "fake-logs.txt"
    assert "main: server is listening" in Path(download.path()).read_text()

    page.click("#view-logs .back")
    fake.locator(".act-stop").click()
    expect(fake.locator(".col-status")).to_have_text("stopped", timeout=READY_TIMEOUT)
    expect(fake.locator(".act-delete")).to_be_enabled()
    expect(fake.locator(".act-delete")).not_to_have_attribute("title", re.compile("."))
    expect(fake.locator(".col-readiness")).to_have_text("—")
    expect(fake.locator(".col-last")).to_have_text("—")
    messages: list[str] = []

    def accept(dialog: sync_api.Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    fake.locator(".act-delete").click()
    expect(fake).to_have_count(0)
    assert messages and "fake" in messages[0]
    assert server.api("GET", "instances/fake").status_code == 404


def test_the_log_viewer_follows_new_lines(page: Page, server: Server) -> None:
    created = server.api(
        "POST",
        "instances/follow-me",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/follow.gguf"}},
    )
    assert created.status_code == 201, created.text
    if not follow_endpoint_exists(server, "follow-me"):
        pytest.skip("the server has no log-follow endpoint yet (GET .../logs/follow is a 404)")
    try:
        log_in(page, server)
        page.goto(f"{server.url}#/logs/follow-me")
        expect(page.locator("#view-logs")).to_be_visible()
        page.click("#logs-follow")
        expect(page.locator("#logs-state")).to_have_text("Following")
        started = server.api("POST", "instances/follow-me/start?wait=true")
        assert started.status_code == 200, started.text
        output = page.locator("#log-output")
        expect(output).to_contain_text("main: server is listening", timeout=READY_TIMEOUT)
        expect(page.locator("#logs-status")).to_contain_text("ready", timeout=READY_TIMEOUT)
        answer = httpx.post(
            f"{server.url}v1/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": "follow-me", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        expect(output).to_contain_text("POST /v1/chat/completions")
        page.click("#logs-follow")
        expect(page.locator("#logs-state")).to_have_text("Stopped following")
    finally:
        server.api("POST", "instances/follow-me/stop")
        server.api("DELETE", "instances/follow-me")


def test_a_validation_error_is_shown_next_to_its_field_and_the_form_is_kept(
    page: Page, server: Server
) -> None:
    log_in(page, server)
    page.goto(f"{server.url}#/new")
    expect(page.locator("#view-form")).to_be_visible()
    page.fill("#f-name", "invalid")
    page.fill("#b-llama_cpp-model", "/models/x.gguf")
    page.fill("#b-llama_cpp-gpu_layers", "lots")
    page.fill("#search-llama_cpp", "seed")
    page.fill("#b-llama_cpp-seed", "42")
    page.click("#extra-add")
    page.locator("#extra-editor .kv-key").last.fill("custom-flag")
    page.locator("#extra-editor .kv-value").last.fill("7")
    page.click("#form-submit")

    message = "backend_options.gpu_layers: expected an integer, 'auto' or 'all', got 'lots'"
    expect(page.locator('[data-field="backend_options.gpu_layers"] .field-error')).to_have_text(
        message
    )
    expect(page.locator("#form-error")).to_have_text(message)
    expect(page.locator("#view-form")).to_be_visible()
    expect(page.locator("#f-name")).to_have_value("invalid")
    expect(page.locator("#b-llama_cpp-model")).to_have_value("/models/x.gguf")
    expect(page.locator("#b-llama_cpp-gpu_layers")).to_have_value("lots")
    page.fill("#search-llama_cpp", "")
    expect(page.locator("#b-llama_cpp-seed")).to_have_value("42")  # set: still shown
    expect(page.locator("#extra-editor .kv-key")).to_have_value("custom-flag")

    # a bad common option and a bad name are shown next to theirs
    page.fill("#b-llama_cpp-gpu_layers", "99")
    page.fill("#c-max_restarts", "many")
    page.click("#form-submit")
    expect(page.locator('[data-field="max_restarts"] .field-error')).to_contain_text(
        "expected an integer"
    )
    expect(page.locator('[data-field="backend_options.gpu_layers"] .field-error')).to_be_hidden()
    page.fill("#c-max_restarts", "2")
    page.fill("#f-name", "not a name")
    page.click("#form-submit")
    expect(page.locator('#instance-form [data-field="name"] .field-error')).to_contain_text(
        "Invalid instance name"
    )
    expect(page.locator("#b-llama_cpp-model")).to_have_value("/models/x.gguf")

    page.fill("#f-name", "valid")
    page.click("#form-submit")
    expect(row(page, "valid")).to_be_visible()
    stored = server.api("GET", "instances/valid").json()["options"]
    assert stored["max_restarts"] == 2
    assert stored["backend_options"]["seed"] == 42
    assert stored["backend_options"]["extra_args"] == {"custom-flag": "7"}
    assert server.api("DELETE", "instances/valid").status_code == 204


def test_a_custom_instances_name_option_and_the_instance_name_keep_their_own_errors(
    page: Page, server: Server
) -> None:
    log_in(page, server)
    page.goto(f"{server.url}#/new")
    expect(page.locator("#view-form")).to_be_visible()
    page.select_option("#f-backend", "custom")
    custom = page.locator('.backend-block[data-backend="custom"]')
    expect(custom).to_be_visible()
    expect(custom.locator(".flag")).to_have_count(0)  # its options are not flags
    page.fill("#f-name", "foreign")
    page.fill("#b-custom-name", "sglang")
    page.click("#form-submit")

    option_error = custom.locator('[data-field="backend_options.name"] .field-error')
    name_error = page.locator('#instance-form [data-field="name"] .field-error')
    expect(option_error).to_contain_text("backend_options.name: no entry backends.custom.sglang")
    expect(page.locator("#form-error")).to_contain_text("no entry backends.custom.sglang")
    expect(name_error).to_be_hidden()

    page.fill("#f-name", "not a name")
    page.click("#form-submit")
    expect(name_error).to_contain_text("Invalid instance name")
    expect(option_error).to_be_hidden()
    expect(page.locator("#b-custom-name")).to_have_value("sglang")
    assert server.api("GET", "instances/foreign").status_code == 404


def test_the_form_is_shown_only_once_what_it_needs_has_arrived(page: Page, server: Server) -> None:
    held: list[Route] = []
    page.route(f"{server.url}api/v1/config", lambda route: held.append(route))
    log_in(page, server)
    with page.expect_request(f"{server.url}api/v1/config"):
        page.goto(f"{server.url}#/new")
    while not held:  # each round trip to the page lets the route handler run
        page.evaluate("1")
    expect(page.locator("#view-form")).to_be_hidden()  # nothing to type into yet
    held[0].continue_()
    expect(page.locator("#view-form")).to_be_visible()
    page.fill("#f-name", "typed")
    page.fill("#b-llama_cpp-model", "/models/typed.gguf")
    page.wait_for_load_state("networkidle")
    expect(page.locator("#f-name")).to_have_value("typed")
    expect(page.locator("#b-llama_cpp-model")).to_have_value("/models/typed.gguf")
    expect(page.locator("#c-max_restarts")).to_have_value("3")


def test_edit_export_and_import(page: Page, server: Server, tmp_path: Path) -> None:
    created = server.api(
        "POST",
        "instances/original",
        json={
            "backend_type": "vllm",
            "backend_options": {"model": "org/model", "max_model_len": 4096},
            "idle_timeout": 15,
        },
    )
    assert created.status_code == 201, created.text
    log_in(page, server)
    original = row(page, "original")
    expect(original.locator(".col-backend")).to_have_text("vLLM")

    original.locator(".act-edit").click()
    expect(page.locator("#form-title")).to_have_text("Edit original")
    expect(page.locator("#f-name")).to_be_disabled()
    expect(page.locator("#f-backend")).to_have_value("vllm")
    expect(page.locator("#b-vllm-max_model_len")).to_have_value("4096")
    expect(page.locator("#c-idle_timeout")).to_have_value("15")
    page.fill("#b-vllm-max_model_len", "8192")
    page.click("#form-submit")
    expect(page.locator("#view-instances")).to_be_visible()
    assert (
        server.api("GET", "instances/original").json()["options"]["backend_options"][
            "max_model_len"
        ]
        == 8192
    )

    with page.expect_download() as download_info:
        original.locator(".act-export").click()
    download = download_info.value
    assert download.suggested_filename == "original.json"
    exported = json.loads(Path(download.path()).read_text())
    assert exported["name"] == "original"
    assert exported["options"]["backend_options"]["max_model_len"] == 8192

    # import from a file, under another name
    file = tmp_path / "export.json"
    file.write_text(json.dumps(exported))
    page.click("#show-import")
    page.set_input_files("#import-file", str(file))
    expect(page.locator("#import-text")).to_have_value(re.compile('"original"'))
    page.fill("#import-name", "copy")
    page.click("#import-submit")
    expect(row(page, "copy")).to_be_visible()
    copy = server.api("GET", "instances/copy").json()["options"]
    assert copy["backend_options"]["max_model_len"] == 8192 and copy["idle_timeout"] == 15

    # importing a duplicate shows the server's message
    page.click("#show-import")
    page.fill("#import-text", json.dumps(exported))
    page.click("#import-submit")
    expect(page.locator("#message")).to_contain_text("Could not import original")
    for name in ("original", "copy"):
        assert server.api("DELETE", f"instances/{name}").status_code == 204


def test_an_explicit_false_survives_an_edit(page: Page, server: Server) -> None:
    created = server.api(
        "POST",
        "instances/falsy",
        json={
            "backend_type": "llama_cpp",
            "backend_options": {"model": "/m/x.gguf", "mlock": False, "no_mmap": True},
        },
    )
    assert created.status_code == 201, created.text
    log_in(page, server)
    row(page, "falsy").locator(".act-edit").click()
    expect(page.locator("#b-llama_cpp-mlock")).to_have_value("false")
    expect(page.locator("#b-llama_cpp-no_mmap")).to_have_value("true")
    page.select_option("#b-llama_cpp-no_mmap", "")  # unset one
    page.click("#form-submit")
    expect(page.locator("#view-instances")).to_be_visible()
    stored = server.api("GET", "instances/falsy").json()["options"]["backend_options"]
    assert stored["mlock"] is False and "no_mmap" not in stored
    assert server.api("DELETE", "instances/falsy").status_code == 204


def test_system_page_theme_and_logout(page: Page, server: Server) -> None:
    log_in(page, server)
    page.click('#nav a[data-view="system"]')
    expect(page.locator("#sys-version")).to_contain_text("Version: ")
    # the fake llama-server has no --version: the server's message is shown
    expect(page.locator("#sys-llama-version")).to_contain_text("--port is required")
    expect(page.locator("#sys-llama-devices")).to_contain_text("exited with status 2")
    expect(page.locator("#sys-config")).to_contain_text('"default_max_restarts": 3')
    assert KEY not in page.locator("#sys-config").inner_text()

    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.reload()
    expect(page.locator("#view-system")).to_be_visible()  # still logged in in this tab
    assert page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.click("#theme-toggle")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"

    page.click("#logout")
    expect(page.locator("#view-login")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('llamactl-key')") is None
    page.goto(f"{server.url}#/system")
    expect(page.locator("#view-login")).to_be_visible()


def test_it_works_under_a_sub_path(page: Page, server: Server) -> None:
    """As behind a reverse proxy that serves llamactl at /llamactl/."""
    prefix = f"{server.url}llamactl/"
    requested: list[str] = []

    def forward(route: Route) -> None:
        requested.append(route.request.url)
        target = server.url + route.request.url.removeprefix(prefix)
        route.fulfill(response=route.fetch(url=target))

    page.route(f"{server.url}**", lambda route: route.abort())
    page.route(f"{prefix}**", forward)
    server.api(
        "POST",
        "instances/behind-proxy",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/p.gguf"}},
    )
    try:
        open_dashboard(page, prefix)
        page.fill("#login-key", KEY)
        page.click("#login-submit")
        expect(row(page, "behind-proxy")).to_be_visible()
        page.click('#nav a[data-view="form"]')
        expect(page.locator("#c-max_restarts")).to_have_value("3")
    finally:
        server.api("DELETE", "instances/behind-proxy")
    assert f"{prefix}static/app.js" in requested
    assert f"{prefix}api/v1/instances" in requested


def test_requests_waiting_for_a_start_are_shown(page: Page, server: Server) -> None:
    slow = {"FAKE_LLAMA_LOAD_SECONDS": "8"}
    created = server.api(
        "POST",
        "instances/queue-shown",
        json={
            "backend_type": "llama_cpp",
            "backend_options": {"model": "/m/queue.gguf"},
            "on_demand_start": True,
            "environment": slow,
        },
    )
    assert created.status_code == 201, created.text
    try:
        log_in(page, server)
        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = [
                pool.submit(
                    httpx.post,
                    f"{server.url}v1/chat/completions",
                    headers={"Authorization": f"Bearer {KEY}"},
                    json={"model": "queue-shown", "messages": [{"role": "user", "content": "hi"}]},
                    timeout=60,
                )
                for _ in range(2)
            ]
            queue = row(page, "queue-shown").locator(".col-status .queue")
            expect(queue).to_have_text("starting, 2 waiting", timeout=READY_TIMEOUT)
            expect(row(page, "queue-shown").locator(".col-last")).to_have_text("now")
            assert [answer.result().status_code for answer in answers] == [200, 200]
        expect(queue).to_be_hidden(timeout=READY_TIMEOUT)
        expect(row(page, "queue-shown").locator(".col-last")).to_have_text(re.compile(r" ago$"))
    finally:
        server.api("POST", "instances/queue-shown/stop")
        server.api("DELETE", "instances/queue-shown")


def nav_item(page: Page, view: str) -> sync_api.Locator:
    return page.locator(f'#nav a[data-view="{view}"]')


def test_editing_a_running_instance_says_that_saving_restarts_it(
    page: Page, server: Server
) -> None:
    created = server.api(
        "POST",
        "instances/edited-live",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/live.gguf"}},
    )
    assert created.status_code == 201, created.text
    try:
        log_in(page, server)
        live = row(page, "edited-live")
        live.locator(".act-edit").click()
        expect(page.locator("#form-title")).to_have_text("Edit edited-live")
        # editing belongs to the instance list, not to "New instance"
        expect(nav_item(page, "instances")).to_have_class(re.compile(r"\bactive\b"))
        expect(nav_item(page, "instances")).to_have_attribute("aria-current", "page")
        expect(nav_item(page, "form")).not_to_have_class(re.compile(r"\bactive\b"))
        expect(page.locator("#form-submit")).to_have_text("Save")  # stopped: no restart
        expect(page.locator("#form-restart-note")).to_be_hidden()
        page.click("#view-form .back")

        live.locator(".act-start").click()
        expect(live.locator(".col-status")).to_have_text("running")
        first_pid = server.api("GET", "instances/edited-live").json()["pid"]
        live.locator(".act-edit").click()
        expect(page.locator("#form-submit")).to_have_text("Save and restart")
        expect(page.locator("#form-restart-note")).to_be_visible()

        # a negative context size is refused next to its field; correcting it clears that
        page.fill("#b-llama_cpp-ctx_size", "-5")
        page.click("#form-submit")
        message = "backend_options.ctx_size: expected an integer >= 0, got -5"
        field_error = page.locator('[data-field="backend_options.ctx_size"] .field-error')
        expect(field_error).to_have_text(message)
        expect(page.locator("#form-error")).to_have_text(message)
        assert server.api("GET", "instances/edited-live").json()["pid"] == first_pid
        page.fill("#b-llama_cpp-ctx_size", "4096")
        expect(field_error).to_be_hidden()
        expect(page.locator("#form-error")).to_be_hidden()
        expect(page.locator('[data-field="backend_options.ctx_size"]')).not_to_have_class(
            re.compile(r"\bhas-error\b")
        )

        page.click("#form-submit")
        expect(page.locator("#view-instances")).to_be_visible()
        expect(page.locator("#toasts")).to_contain_text("Saved edited-live and restarted it.")
        expect(nav_item(page, "instances")).to_have_class(re.compile(r"\bactive\b"))
        body = server.api("GET", "instances/edited-live").json()
        assert body["options"]["backend_options"]["ctx_size"] == 4096
        assert body["status"] == "running" and body["pid"] not in (None, first_pid)

        nav_item(page, "form").click()
        expect(nav_item(page, "form")).to_have_class(re.compile(r"\bactive\b"))
        expect(nav_item(page, "instances")).not_to_have_class(re.compile(r"\bactive\b"))
        expect(page.locator("#form-submit")).to_have_text("Create")
        expect(page.locator("#form-restart-note")).to_be_hidden()
    finally:
        server.api("POST", "instances/edited-live/stop")
        server.api("DELETE", "instances/edited-live")


def test_loading_progress_is_inherited_on_or_off(page: Page, server: Server) -> None:
    log_in(page, server)
    page.click("#new-instance")
    expect(page.locator("#c-loading_progress")).to_have_value("")  # as configured
    page.fill("#command-text", COMMAND)
    page.click("#command-parse")
    expect(page.locator("#b-llama_cpp-model")).to_have_value("/models/fake.gguf")
    page.fill("#f-name", "progress-off")
    page.select_option("#c-loading_progress", "false")
    page.click("#form-submit")
    expect(page.locator("#toasts")).to_contain_text("Created progress-off.")
    try:
        assert (
            server.api("GET", "instances/progress-off").json()["options"]["loading_progress"]
            is False
        )
        page.goto(f"{server.url}#/edit/progress-off")
        expect(page.locator("#c-loading_progress")).to_have_value("false")
        page.select_option("#c-loading_progress", "")
        page.click("#form-submit")
        expect(page.locator("#view-instances")).to_be_visible()
        options = server.api("GET", "instances/progress-off").json()["options"]
        assert options.get("loading_progress") is None  # back to the global setting
    finally:
        server.api("DELETE", "instances/progress-off")

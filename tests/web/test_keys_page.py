"""The Keys page: stored inference keys made, shown once, used, edited, disabled and
deleted from the dashboard, against a real llamactl over the fake llama-server.

The key the dialog shows is read from the page and used through the official ``openai``
client. The server writes a key's use every few seconds and the page polls, so the
tests wait on what the page shows (Playwright's ``expect``), never with sleeps. Every
test leaves no key behind (``no_keys_left``); the module's instances are deleted at its
end.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import openai
import pytest

from tests.support.dashboard import log_in
from tests.support.layout import action, assert_inside_viewport, assert_no_horizontal_overflow
from tests.support.web import SKIP_REASON, Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Dialog, Locator, Page, Request

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)
expect = sync_api.expect

INSTANCES = ("keys-alpha", "keys-beta")
USE_TIMEOUT = 20_000  # ms: the server writes use every 5 s, the page polls every 2 s
KEY_PATTERN = re.compile(r"llamactl-[0-9a-f]{64}")
# Whether any input or textarea holds the text (their values are not in page.content()).
TYPED_ANYWHERE = (
    "text => [...document.querySelectorAll('input, textarea')].some((i) => i.value.includes(text))"
)


@pytest.fixture(scope="module")
def instances(server: Server) -> Iterator[dict[str, int]]:
    """Two instances of the fake llama-server, by name with their ids."""
    for name in INSTANCES:
        create_instance(server, name)
    try:
        yield instance_ids(server)
    finally:
        for name in INSTANCES:
            server.api("POST", f"instances/{name}/stop")
            server.api("DELETE", f"instances/{name}")


@pytest.fixture(autouse=True)
def no_keys_left(server: Server) -> Iterator[None]:
    yield
    for stored in stored_keys(server):
        server.api("DELETE", f"auth/keys/{stored['id']}")


def create_instance(server: Server, name: str) -> None:
    created = server.api(
        "POST",
        f"instances/{name}",
        json={"backend_type": "llama_cpp", "backend_options": {"model": f"/m/{name}.gguf"}},
    )
    assert created.status_code == 201, created.text


def instance_ids(server: Server) -> dict[str, int]:
    return {body["name"]: body["id"] for body in server.api("GET", "instances").json()}


def stored_keys(server: Server) -> list[dict[str, Any]]:
    listed = server.api("GET", "auth/keys")
    assert listed.status_code == 200, listed.text
    keys: list[dict[str, Any]] = listed.json()
    return keys


def make_key(server: Server, **body: object) -> dict[str, Any]:
    created = server.api("POST", "auth/keys", json=body)
    assert created.status_code == 201, created.text
    made: dict[str, Any] = created.json()
    return made


def open_keys(page: Page, server: Server) -> None:
    log_in(page, server)
    page.locator('#nav a[data-view="keys"]').click()
    expect(page.locator("#view-keys")).to_be_visible()


def key_row(page: Page, key_id: int) -> Locator:
    return page.locator(f'#keys-body tr[data-key-id="{key_id}"]')


def perm_row(page: Page, instance: str) -> Locator:
    return page.locator(f'#k-instances .perm-row[data-instance="{instance}"]')


def field_error(page: Page, field: str) -> Locator:
    return page.locator(f'#key-form .field[data-field="{field}"] > .field-error')


def has_error() -> re.Pattern[str]:
    return re.compile(r"\bhas-error\b")


def ask(client: openai.OpenAI, model: str) -> str:
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}]
    )
    return answer.choices[0].message.content or ""


def is_key_request(method: str) -> Any:
    return lambda request: request.method == method and "/api/v1/auth/keys" in request.url


def accept_and_keep(messages: list[str]) -> Any:
    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    return accept


def test_a_key_made_on_the_page_is_shown_once_opens_its_instance_and_can_be_disabled_and_deleted(
    page: Page, server: Server, instances: dict[str, int], screenshots: Path
) -> None:
    # two keys of other kinds beside it, as a list usually has
    soon = int(time.time()) + 30 * 86400
    notebook = make_key(server, name="notebook", expires_at=soon, requests_per_minute=120)
    make_key(
        server,
        name="batch-jobs",
        permission_mode="per_instance",
        permissions=[{"instance": "keys-beta", "can_start": False, "can_evict": False}],
        disabled=True,
    )
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_keys(page, server)
    expect(key_row(page, notebook["id"]).locator(".col-access")).to_have_text("All instances")

    page.click("#new-key")
    expect(page.locator("#view-key-form")).to_be_visible()
    expect(page.locator('#nav a[data-view="keys"]')).to_have_attribute("aria-current", "page")
    expect(page.locator("#k-mode-all")).to_be_checked()
    expect(page.locator("#k-permissions")).to_be_hidden()
    page.fill("#k-name", "ci")
    page.check("#k-mode-some")
    expect(perm_row(page, "keys-alpha").locator(".perm-check")).not_to_be_checked()
    perm_row(page, "keys-alpha").locator(".perm-check").check()
    expect(perm_row(page, "keys-alpha").locator(".perm-level")).to_have_value("start")
    page.fill("#k-max_concurrent", "2")
    page.fill("#k-requests_per_minute", "60")
    with page.expect_response(lambda r: is_key_request("POST")(r.request)) as answered:
        page.click("#key-submit")
    assert json.loads(answered.value.request.post_data or "{}") == {
        "name": "ci",
        "permission_mode": "per_instance",
        "permissions": [
            {"instance_id": instances["keys-alpha"], "can_start": True, "can_evict": False}
        ],
        "max_concurrent": 2,
        "requests_per_minute": 60,
    }
    made = answered.value.json()

    # the key, once, in a dialog over the list
    dialog = page.locator("#key-created")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("It is shown only now.")
    expect(page.locator("#key-created-name")).to_have_text("ci")
    key = page.locator("#key-created-value").inner_text()
    assert KEY_PATTERN.fullmatch(key), key
    assert key == made["key"]
    assert key in page.content()  # the check below would see it
    expect(page.locator("#view-keys")).to_be_visible()
    page.screenshot(path=screenshots / "key-created.png")
    page.click("#key-created-copy")
    expect(page.locator("#key-created-state")).to_have_text("Copied to the clipboard.")
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.click("#key-created-close")
    expect(dialog).to_be_hidden()
    expect(page.locator("#key-created-value")).to_have_text("")
    assert key not in page.content()
    assert not page.evaluate(TYPED_ANYWHERE, key)

    row = key_row(page, made["id"])
    expect(row.locator(".col-name strong")).to_have_text("ci")
    expect(row.locator(".col-name .prefix")).to_have_text(key[:17] + "…")
    expect(row.locator(".col-access .perm")).to_have_text(["keys-alphastart on demand"])
    expect(row.locator(".col-limits .limit")).to_have_text(["2 at once", "60 / min"])
    expect(row.locator(".col-expires")).to_have_text("never")
    expect(row.locator(".col-state")).to_have_text("active")
    expect(row.locator(".col-use .requests")).to_have_text("0 requests")
    expect(row.locator(".col-use .used")).to_have_text("never used")

    client = openai.OpenAI(base_url=f"{server.url}v1", api_key=key, max_retries=0, timeout=60)
    try:
        assert ask(client, "keys-alpha")  # started on demand, and answers
        expect(row.locator(".col-use .requests")).to_have_text("1 request", timeout=USE_TIMEOUT)
        expect(row.locator(".col-use .used")).to_have_text(re.compile(r"^last \d+ s ago$"))
        with pytest.raises(openai.PermissionDeniedError) as denied:
            ask(client, "keys-beta")
        assert denied.value.code == "permission_denied"
        page.mouse.move(0, 0)
        page.screenshot(path=screenshots / "keys.png")

        row.locator(".act-toggle").click()
        expect(page.locator("#toasts")).to_contain_text("Disabled ci.")
        expect(row.locator(".col-state")).to_have_text("disabled")
        expect(row.locator(".act-toggle")).to_have_text("Enable")
        assert server.api("GET", f"auth/keys/{made['id']}").json()["disabled"] is True
        with pytest.raises(openai.AuthenticationError) as refused:
            ask(client, "keys-alpha")
        assert "disabled" in str(refused.value)

        messages: list[str] = []
        page.once("dialog", accept_and_keep(messages))
        row.locator(".act-delete").click()
        expect(row).to_have_count(0)
        expect(page.locator("#toasts")).to_contain_text("Deleted the key ci.")
        assert messages and "ci" in messages[0] and key[:17] in messages[0]
        assert made["id"] not in [stored["id"] for stored in stored_keys(server)]
        with pytest.raises(openai.AuthenticationError):
            ask(client, "keys-alpha")
    finally:
        client.close()
    assert key not in page.content()


def test_a_refused_form_shows_the_error_next_to_the_field_and_keeps_what_was_typed(
    page: Page, server: Server, instances: dict[str, int]
) -> None:
    create_instance(server, "keys-gone")
    try:
        open_keys(page, server)
        page.click("#new-key")
        expect(perm_row(page, "keys-gone")).to_have_count(1)
        page.fill("#k-max_concurrent", "3")
        page.fill("#k-expires_at", "2000-01-01T00:00")
        page.click("#key-submit")

        # no name: the name's error, and the field focused
        name = page.locator('#key-form .field[data-field="name"]')
        expect(field_error(page, "name")).to_have_text(
            re.compile(r"^name: expected a name of 1 to 100 characters")
        )
        expect(name).to_have_class(has_error())
        expect(page.locator("#key-form-error")).to_contain_text("name: ")
        expect(page.locator("#k-name")).to_be_focused()
        page.fill("#k-name", "late")
        expect(field_error(page, "name")).to_be_hidden()
        expect(page.locator("#key-form-error")).to_be_hidden()

        # an expiry in the past
        page.click("#key-submit")
        expires = page.locator('#key-form .field[data-field="expires_at"]')
        expect(field_error(page, "expires_at")).to_have_text(
            re.compile(r"^expires_at: \d+ is in the past")
        )
        expect(expires).to_have_class(has_error())
        expect(name).not_to_have_class(has_error())
        for field, value in (("#k-name", "late"), ("#k-max_concurrent", "3")):
            expect(page.locator(field)).to_have_value(value)
        expect(page.locator("#k-expires_at")).to_have_value("2000-01-01T00:00")

        # chosen instances, but none chosen
        page.click("#k-expires-never")
        expect(page.locator("#k-expires_at")).to_have_value("")
        expect(field_error(page, "expires_at")).to_be_hidden()
        page.check("#k-mode-some")
        page.click("#key-submit")
        expect(field_error(page, "permissions")).to_have_text(
            re.compile(r"^permissions: a per_instance key needs at least one instance")
        )

        # an instance deleted since the form was opened: the error is on its row
        gone_id = instance_ids(server)["keys-gone"]
        assert server.api("DELETE", "instances/keys-gone").status_code == 204
        gone = perm_row(page, "keys-gone")
        gone.locator(".perm-level").select_option("evict")
        expect(gone.locator(".perm-check")).to_be_checked()  # choosing a level chooses it
        expect(field_error(page, "permissions")).to_be_hidden()
        page.click("#key-submit")
        expect(gone.locator(".field-error")).to_have_text(
            f"permissions[0].instance_id: no instance has the id {gone_id}"
        )
        expect(gone).to_have_class(has_error())
        expect(gone.locator(".perm-level")).to_have_value("evict")
        expect(page.locator("#view-key-form")).to_be_visible()
        assert stored_keys(server) == []
    finally:
        server.api("DELETE", "instances/keys-gone")


def test_an_edit_sends_only_what_changed(
    page: Page, server: Server, instances: dict[str, int]
) -> None:
    expiry = int(time.time()) + 86400
    made = make_key(
        server,
        name="edited",
        permission_mode="per_instance",
        permissions=[{"instance": "keys-alpha", "can_start": False, "can_evict": False}],
        max_concurrent=2,
        expires_at=expiry,
    )
    sent: list[Request] = []
    is_put = is_key_request("PUT")
    page.on("request", lambda request: sent.append(request) if is_put(request) else None)
    open_keys(page, server)
    row = key_row(page, made["id"])
    expect(row.locator(".col-access .perm")).to_have_text(["keys-alphause running only"])
    expect(row.locator(".col-expires")).to_have_text(
        datetime.fromtimestamp(expiry).strftime("%Y-%m-%d %H:%M")
    )
    row.locator(".act-edit").click()
    expect(page.locator("#key-form-title")).to_have_text("Edit the key edited")
    expect(page.locator("#key-submit")).to_have_text("Save")
    expect(page.locator("#k-name")).to_have_value("edited")
    expect(page.locator("#k-mode-some")).to_be_checked()
    expect(perm_row(page, "keys-alpha").locator(".perm-check")).to_be_checked()
    expect(perm_row(page, "keys-alpha").locator(".perm-level")).to_have_value("running")
    expect(perm_row(page, "keys-beta").locator(".perm-check")).not_to_be_checked()
    expect(page.locator("#k-max_concurrent")).to_have_value("2")
    expect(page.locator("#k-requests_per_minute")).to_have_value("")
    expect(page.locator("#k-expires_at")).to_have_value(
        datetime.fromtimestamp(expiry).strftime("%Y-%m-%dT%H:%M")
    )

    # a refused value stays, with the server's message beside it
    perm_row(page, "keys-alpha").locator(".perm-level").select_option("evict")
    perm_row(page, "keys-beta").locator(".perm-check").check()
    perm_row(page, "keys-beta").locator(".perm-level").select_option("running")
    page.fill("#k-max_concurrent", "")
    page.fill("#k-requests_per_minute", "0")
    page.click("#key-submit")
    expect(field_error(page, "requests_per_minute")).to_have_text(
        "requests_per_minute: expected a whole number from 1, or null, got 0"
    )
    expect(page.locator("#k-requests_per_minute")).to_have_value("0")
    expect(perm_row(page, "keys-alpha").locator(".perm-level")).to_have_value("evict")
    expect(perm_row(page, "keys-beta").locator(".perm-check")).to_be_checked()
    assert server.api("GET", f"auth/keys/{made['id']}").json()["max_concurrent"] == 2

    page.fill("#k-requests_per_minute", "30")
    page.click("#key-submit")
    expect(page.locator("#toasts")).to_contain_text("Saved the key edited.")
    expect(page.locator("#view-keys")).to_be_visible()
    assert len(sent) == 2
    assert json.loads(sent[-1].post_data or "{}") == {
        "permissions": [
            {"instance_id": instances["keys-alpha"], "can_start": True, "can_evict": True},
            {"instance_id": instances["keys-beta"], "can_start": False, "can_evict": False},
        ],
        "max_concurrent": None,
        "requests_per_minute": 30,
    }
    expect(row.locator(".col-access .perm")).to_have_text(
        ["keys-alphastart and evict", "keys-betause running only"]
    )
    expect(row.locator(".col-limits .limit")).to_have_text(["30 / min"])

    # all instances and no expiry: the permissions go, and null clears the expiry
    row.locator(".act-edit").click()
    expect(page.locator("#k-name")).to_have_value("edited")
    page.check("#k-mode-all")
    page.click("#k-expires-never")
    page.click("#key-submit")
    expect(page.locator("#toasts")).to_contain_text("Saved the key edited.")
    assert json.loads(sent[-1].post_data or "{}") == {
        "permission_mode": "allow_all",
        "permissions": [],
        "expires_at": None,
    }
    expect(row.locator(".col-access")).to_have_text("All instances")
    expect(row.locator(".col-expires")).to_have_text("never")
    stored = server.api("GET", f"auth/keys/{made['id']}").json()
    assert (stored["permission_mode"], stored["permissions"], stored["expires_at"]) == (
        "allow_all", [], None,
    )  # fmt: skip

    # nothing changed: nothing sent
    row.locator(".act-edit").click()
    expect(page.locator("#k-name")).to_have_value("edited")
    page.click("#key-submit")
    expect(page.locator("#toasts")).to_contain_text("Nothing to save")
    expect(page.locator("#view-keys")).to_be_visible()
    assert len(sent) == 3


def test_the_keys_page_at_every_width(
    sized_page: Page, server: Server, instances: dict[str, int]
) -> None:
    page = sized_page
    viewport = page.viewport_size
    assert viewport is not None
    width = viewport["width"]
    made = make_key(
        server,
        name=f"wide-key-name-for-ci-{width}",
        permission_mode="per_instance",
        permissions=[
            {"instance": "keys-alpha", "can_start": True, "can_evict": True},
            {"instance": "keys-beta", "can_start": False, "can_evict": False},
        ],
        max_concurrent=4,
        requests_per_minute=600,
        expires_at=int(time.time()) + 7 * 86400,
    )
    open_keys(page, server)
    assert_inside_viewport(page, page.locator('#nav a[data-view="keys"]'))
    row = key_row(page, made["id"])
    expect(row.locator(".col-access .perm")).to_have_count(2)
    assert_no_horizontal_overflow(page)
    sideways = page.locator("#view-keys .table-wrap").evaluate(
        "node => node.scrollWidth - node.clientWidth"
    )
    assert sideways <= 1, f"the key table scrolls sideways by {sideways} px"
    for css in (".act-edit", ".act-toggle", ".act-delete"):
        assert_inside_viewport(page, action(page, row, css))
        page.keyboard.press("Escape")  # closes the menu, if the actions are one
    assert_inside_viewport(page, page.locator("#new-key"))

    action(page, row, ".act-edit").click()
    expect(page.locator("#key-form-title")).to_have_text(f"Edit the key {made['name']}")
    assert_no_horizontal_overflow(page)
    for selector in ("#k-name", "#k-expires_at", "#k-expires-never", "#k-max_concurrent"):
        assert_inside_viewport(page, page.locator(selector))
    assert_inside_viewport(page, perm_row(page, "keys-beta").locator(".perm-level"))
    assert_inside_viewport(page, page.locator("#key-submit"))
    page.locator("#view-key-form .back").click()

    action(page, row, ".act-toggle").click()
    expect(row.locator(".col-state")).to_have_text("disabled")
    page.once("dialog", lambda dialog: dialog.accept())
    action(page, row, ".act-delete").click()
    expect(row).to_have_count(0)

    # the new key's dialog fits too
    page.click("#new-key")
    page.fill("#k-name", f"dialog-{width}")
    page.click("#key-submit")
    expect(page.locator("#key-created")).to_be_visible()
    assert_no_horizontal_overflow(page)
    for selector in ("#key-created-value", "#key-created-copy", "#key-created-close"):
        assert_inside_viewport(page, page.locator(selector))
    page.keyboard.press("Escape")  # closing it any way forgets the key
    expect(page.locator("#key-created")).to_be_hidden()
    expect(page.locator("#key-created-value")).to_have_text("")


def test_without_the_clipboard_api_copy_selects_the_key(browser: Browser, server: Server) -> None:
    """As over plain http from another machine, where browsers offer no clipboard API."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    try:
        page = context.new_page()
        open_keys(page, server)
        page.click("#new-key")
        page.fill("#k-name", "no-clipboard")
        page.click("#key-submit")
        value = page.locator("#key-created-value")
        expect(value).to_have_text(KEY_PATTERN)
        page.click("#key-created-copy")
        expect(page.locator("#key-created-state")).to_have_text(
            re.compile(r"^(Copied to the clipboard\.|The key is selected: press Ctrl\+C)")
        )
        assert page.evaluate("String(window.getSelection())") == value.inner_text()
        page.click("#key-created-close")
        expect(page.locator("#key-created")).to_be_hidden()
        expect(value).to_have_text("")
        assert page.evaluate("String(window.getSelection())") == ""
        assert not KEY_PATTERN.search(page.content())
    finally:
        context.close()

"""The chat playground in Chromium against a real llamactl over the fake llama-server:
replies streamed from ``/v1/chat/completions`` into the view, a long one stopped (the
fake logs that the client went away), refusals shown in the view, model output kept as
text. The fake's stream settings come from each instance's environment. Waits are
Playwright's own or polling of the fake's request log, never sleeps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.config import fake_options
from tests.support.dashboard import READY_TIMEOUT, log_in, row
from tests.support.layout import assert_inside_viewport, assert_no_horizontal_overflow
from tests.support.waiting import eventually
from tests.support.web import SKIP_REASON, Server

if TYPE_CHECKING:
    from playwright.sync_api import Page

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)
expect = sync_api.expect

LONG = " ".join(f"w{index}" for index in range(200))


@pytest.fixture
def instance(server: Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """An instance started on demand; ``@pytest.mark.parametrize("instance", [env])``
    sets the fake's environment."""
    environment: dict[str, str] = getattr(request, "param", {})
    name = "qwen-chat"  # each test removes it at its end
    created = server.api(
        "POST",
        f"instances/{name}",
        json=fake_options(on_demand_start=True, environment=environment),
    )
    assert created.status_code == 201, created.text
    try:
        yield name
    finally:
        server.api("POST", f"instances/{name}/stop")
        server.api("DELETE", f"instances/{name}")


def open_chat(page: Page, server: Server, name: str) -> None:
    log_in(page, server)
    row(page, name).locator(".act-chat").click()
    expect(page.locator("#view-chat")).to_be_visible()
    expect(page.locator("#chat-name")).to_have_text(name)


def say(page: Page, text: str) -> None:
    page.fill("#chat-input", text)
    page.click("#chat-send")


def sent_bodies(requests: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(request.post_data or "{}") for request in requests]


def test_a_reply_streams_in_and_the_conversation_is_kept_until_cleared(
    page: Page, server: Server, instance: str, screenshots: Path
) -> None:
    sent: list[Any] = []
    page.on(
        "request",
        lambda request: (
            sent.append(request) if request.url.endswith("/v1/chat/completions") else None
        ),
    )
    open_chat(page, server, instance)
    expect(page.locator("#chat-empty")).to_be_visible()
    expect(page.locator("#chat-stop")).to_be_disabled()
    page.fill("#chat-system", "Answer briefly.")
    page.fill("#chat-temperature", "0.2")
    say(page, "hello there")
    replies = page.locator("#chat-log .msg.assistant .msg-text")
    # the first reply waits for the instance to start on demand
    expect(replies).to_have_text(["echo: hello there"], timeout=READY_TIMEOUT)
    expect(page.locator("#chat-state")).to_have_text(re.compile(r"^Done: \d+ tokens in "))
    expect(page.locator("#chat-stop")).to_be_disabled()
    expect(page.locator("#chat-input")).to_have_value("")

    # Enter sends too; the second request carries the whole conversation
    page.fill("#chat-input", "<b>second</b> & more")
    page.press("#chat-input", "Enter")
    expect(replies).to_have_text(["echo: hello there", "echo: <b>second</b> & more"])
    expect(page.locator("#chat-log .msg.assistant b")).to_have_count(0)  # text, not markup
    expect(page.locator("#chat-log .msg.user .msg-text")).to_have_text(
        ["hello there", "<b>second</b> & more"]
    )
    first, second = sent_bodies(sent)
    assert first["stream"] is True and first["model"] == instance
    assert first["temperature"] == 0.2
    assert first["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "hello there"},
    ]
    assert second["messages"][1:] == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "echo: hello there"},
        {"role": "user", "content": "<b>second</b> & more"},
    ]
    assert all(request.headers["authorization"] == "Bearer sk-web" for request in sent)
    page.screenshot(path=screenshots / "chat.png")

    # leaving the view and coming back keeps the conversation; Clear empties it
    page.click("#view-chat .back")
    row(page, instance).locator(".act-chat").click()
    expect(replies).to_have_count(2)
    page.click("#chat-clear")
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    expect(page.locator("#chat-empty")).to_be_visible()
    say(page, "again")
    expect(replies).to_have_text(["echo: again"])
    assert len(sent_bodies(sent)[-1]["messages"]) == 2  # the system prompt and the question


@pytest.fixture
def request_log(tmp_path: Path) -> Path:
    return tmp_path / "requests.jsonl"


@pytest.fixture
def slow_instance(server: Server, request_log: Path) -> Iterator[str]:
    """An instance whose streamed replies take 20 s (200 events, 0.1 s apart)."""
    environment = {
        "FAKE_LLAMA_STREAM_CHUNKS": "200",
        "FAKE_LLAMA_STREAM_INTERVAL": "0.1",
        "FAKE_LLAMA_REQUEST_LOG": str(request_log),
    }
    options = fake_options(on_demand_start=True, environment=environment)
    created = server.api("POST", "instances/chat-slow", json=options)
    assert created.status_code == 201, created.text
    try:
        yield "chat-slow"
    finally:
        server.api("POST", "instances/chat-slow/stop")
        server.api("DELETE", "instances/chat-slow")


def test_stop_aborts_a_long_reply_and_keeps_what_came(
    page: Page, server: Server, slow_instance: str, request_log: Path
) -> None:
    log = request_log
    open_chat(page, server, slow_instance)
    say(page, LONG)
    reply = page.locator("#chat-log .msg.assistant .msg-text")
    # token by token: part of the reply is shown while the stream goes on (20 s in all)
    expect(reply).to_contain_text("echo: w0 w1", timeout=READY_TIMEOUT)
    expect(page.locator("#chat-stop")).to_be_enabled()
    expect(page.locator("#chat-send")).to_be_disabled()
    page.click("#chat-stop")
    expect(page.locator("#chat-state")).to_have_text("Stopped.")
    expect(page.locator("#chat-stop")).to_be_disabled()
    expect(page.locator("#chat-send")).to_be_enabled()
    expect(page.locator("#chat-log .msg.assistant")).to_have_class(re.compile(r"\bstopped\b"))
    expect(page.locator("#chat-error")).to_be_hidden()

    def disconnected() -> list[dict[str, Any]]:
        lines = log.read_text().splitlines() if log.exists() else []
        events = [json.loads(line) for line in lines]
        return [event for event in events if event.get("event") == "client_disconnected"]

    eventually(lambda: len(disconnected()) == 1, "the fake to see the client go")
    assert disconnected()[0]["chunks_sent"] < 200
    kept = reply.text_content() or ""
    assert kept.startswith("echo: w0 w1") and not kept.endswith("w199")


def test_an_unknown_instance_is_refused_in_the_view_and_the_question_kept(
    page: Page, server: Server
) -> None:
    log_in(page, server)
    page.goto(f"{server.url}#/chat/no-such-model")
    expect(page.locator("#chat-name")).to_have_text("no-such-model")
    say(page, "anyone?")
    expect(page.locator("#chat-error")).to_contain_text("404")
    expect(page.locator("#chat-error")).to_contain_text("no-such-model")
    expect(page.locator("#chat-log .msg")).to_have_count(0)
    expect(page.locator("#chat-input")).to_have_value("anyone?")
    expect(page.locator("#chat-state")).to_have_text("Failed.")


def test_a_stopped_instance_without_on_demand_start_is_a_503_shown_in_the_view(
    page: Page, server: Server
) -> None:
    created = server.api("POST", "instances/chat-off", json=fake_options(on_demand_start=False))
    assert created.status_code == 201, created.text
    try:
        open_chat(page, server, "chat-off")
        say(page, "hi")
        error = page.locator("#chat-error")
        expect(error).to_contain_text(
            "503: instance chat-off is stopped and on_demand_start is off"
        )
    finally:
        server.api("DELETE", "instances/chat-off")


@pytest.mark.parametrize("instance", [{"FAKE_LLAMA_EXIT_AT_START": "1"}], indirect=True)
def test_a_start_that_failed_moments_ago_says_when_to_try_again(
    page: Page, server: Server, instance: str
) -> None:
    open_chat(page, server, instance)
    say(page, "first")
    error = page.locator("#chat-error")
    expect(error).to_be_visible(timeout=READY_TIMEOUT)
    say(page, "second")
    expect(error).to_contain_text(re.compile(r"Try again in \d+ s\.$"))


def test_the_playground_at_every_width(sized_page: Page, server: Server) -> None:
    page = sized_page
    created = server.api("POST", "instances/chat-sized", json=fake_options(on_demand_start=True))
    assert created.status_code == 201, created.text
    try:
        log_in(page, server)
        page.goto(f"{server.url}#/chat/chat-sized")
        say(page, "a-very-long-word-" * 12)
        expect(page.locator("#chat-log .msg.assistant .msg-text")).to_contain_text(
            "echo: a-very-long-word-", timeout=READY_TIMEOUT
        )
        for selector in (
            "#chat-send",
            "#chat-stop",
            "#chat-clear",
            "#chat-input",
            "#view-chat .back",
        ):
            assert_inside_viewport(page, page.locator(selector))
        assert_no_horizontal_overflow(page)
    finally:
        server.api("POST", "instances/chat-sized/stop")
        server.api("DELETE", "instances/chat-sized")


def test_comment_lines_are_skipped_and_an_error_event_is_shown(page: Page, server: Server) -> None:
    """A stream cut by an ``event: error`` (as a proxy sends when the backend fails
    midway), with keep-alive comments between the chunks: the fake sends neither, so
    this one stream is the page's own."""

    def chunk(text: str) -> str:
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]})

    body = "\n\n".join(
        [
            ": keep-alive",
            chunk("half "),
            ": still here",
            chunk("an answer"),
            'event: error\ndata: {"error": {"message": "the backend went away", "code": 502}}',
            chunk(" never shown"),
            "",
        ]
    )
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=body
        ),
    )
    log_in(page, server)
    page.goto(f"{server.url}#/chat/scripted")
    say(page, "go")
    expect(page.locator("#chat-error")).to_have_text("the backend went away")
    expect(page.locator("#chat-log .msg.assistant .msg-text")).to_have_text("half an answer")
    expect(page.locator("#chat-state")).to_have_text("Failed.")

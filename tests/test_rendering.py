"""The one error renderer: both shapes, the headers each class adds, and the ASGI send."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest

from llamactl.errors import (
    InstanceNotFound,
    QueueFull,
    StartFailedRecently,
    Unauthorized,
    Unavailable,
)
from llamactl.rendering import Shape, render, render_status, send_rendered, shape_for


def test_the_management_shape_is_compact_ascii_json() -> None:
    rendered = render(InstanceNotFound("caf\u00e9"), Shape.MANAGEMENT)
    assert rendered.status == 404
    assert rendered.body == (
        b'{"error":{"code":"instance_not_found","message":"instance not found: caf\\u00e9"}}'
    )
    assert rendered.headers == ()


def test_the_openai_shape_carries_type_param_and_code() -> None:
    rendered = render(InstanceNotFound("x"), Shape.OPENAI)
    assert json.loads(rendered.body) == {
        "error": {
            "message": "instance not found: x",
            "type": "not_found_error",
            "param": None,
            "code": "instance_not_found",
        }
    }


@pytest.mark.parametrize("shape", [Shape.MANAGEMENT, Shape.OPENAI])
def test_unauthorized_is_the_openai_401_on_every_route_but_anthropics(shape: Shape) -> None:
    rendered = render(Unauthorized("Missing API key"), shape)
    assert rendered.status == 401
    assert rendered.headers == ((b"www-authenticate", b"Bearer"),)
    assert rendered.body == (
        b'{"error": {"message": "Missing API key", "type": "authentication_error",'
        b' "param": null, "code": "invalid_api_key"}}'
    )


def test_unauthorized_on_anthropics_routes_is_anthropics_401() -> None:
    rendered = render(Unauthorized("Missing API key"), Shape.ANTHROPIC)
    assert rendered.status == 401
    assert rendered.headers == ((b"www-authenticate", b"Bearer"),)
    assert json.loads(rendered.body) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Missing API key"},
    }


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (501, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "api_error"),
        (529, "overloaded_error"),
    ],
)
def test_the_anthropic_shape_has_a_type_per_status(status: int, kind: str) -> None:
    rendered = render_status(status, "some_code", "what went wrong", Shape.ANTHROPIC)
    assert rendered.status == status
    assert json.loads(rendered.body) == {
        "type": "error",
        "error": {"type": kind, "message": "what went wrong"},
    }


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/v1/messages", Shape.ANTHROPIC),
        ("/v1/messages/count_tokens", Shape.ANTHROPIC),
        ("/v1/messagesx", Shape.OPENAI),
        ("/v1/chat/completions", Shape.OPENAI),
        ("/llama-cpp/a/v1/messages", Shape.OPENAI),
        ("/api/v1/instances/a/proxy/v1/messages", Shape.MANAGEMENT),
    ],
)
def test_the_shape_of_a_path(path: str, shape: Shape) -> None:
    assert shape_for(path) is shape


@pytest.mark.parametrize("shape", list(Shape))
def test_retry_hints(shape: Shape) -> None:
    assert render(QueueFull("full", retry_after=2), shape).headers == ((b"retry-after", b"2"),)
    assert render(Unavailable("later"), shape).headers == ()
    assert render(StartFailedRecently("failed", retry_after=5), shape).headers == (
        (b"retry-after", b"5"),
        (b"x-should-retry", b"false"),
    )


def test_raw_headers_describe_the_body() -> None:
    rendered = render_status(405, "method_not_allowed", "no", Shape.OPENAI, ((b"allow", b"POST"),))
    assert rendered.raw_headers() == [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(rendered.body)).encode()),
        (b"allow", b"POST"),
    ]


@pytest.mark.anyio
async def test_send_rendered_sends_one_whole_response() -> None:
    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    rendered = render(QueueFull("full", retry_after=1), Shape.OPENAI)
    await send_rendered(send, rendered)
    assert sent == [
        {"type": "http.response.start", "status": 503, "headers": rendered.raw_headers()},
        {"type": "http.response.body", "body": rendered.body},
    ]

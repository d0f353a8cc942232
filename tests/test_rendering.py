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
from llamactl.rendering import Shape, render, render_status, send_rendered


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


@pytest.mark.parametrize("shape", list(Shape))
def test_unauthorized_is_the_openai_401_on_every_route(shape: Shape) -> None:
    rendered = render(Unauthorized("Missing API key"), shape)
    assert rendered.status == 401
    assert rendered.headers == ((b"www-authenticate", b"Bearer"),)
    assert rendered.body == (
        b'{"error": {"message": "Missing API key", "type": "authentication_error",'
        b' "param": null, "code": "invalid_api_key"}}'
    )


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

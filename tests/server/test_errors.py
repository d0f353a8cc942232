"""The error shapes: one management shape for every error, and OpenAI's for ``/v1``."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi import Depends, HTTPException, Request

from llamactl.errors import DatabaseError
from llamactl.rendering import openai_error_body
from llamactl.server.errors import error_response, validation_message
from tests.support.config import fake_options
from tests.support.services import Api, serving

pytestmark = pytest.mark.anyio

# (method, path, body, status, code): one request per kind of management error.
ERRORS: list[tuple[str, str, object, int, str]] = [
    ("GET", "/api/v1/instances/ghost", None, 404, "instance_not_found"),
    ("GET", "/api/v1/instances/.hidden", None, 400, "invalid_instance_name"),
    ("POST", "/api/v1/instances/taken", fake_options(), 409, "instance_exists"),
    ("DELETE", "/api/v1/instances/running", None, 409, "conflict"),
    ("POST", "/api/v1/instances/new", b"{oops", 400, "invalid_json"),
    ("POST", "/api/v1/instances/new", [], 400, "invalid_request"),
    ("POST", "/api/v1/instances/new", {"backend_type": "gpt"}, 400, "invalid_options"),
    ("POST", "/api/v1/instances/taken/start?wait=1&timeout=x", None, 400, "invalid_request"),
    ("GET", "/api/v1/instances/taken/logs?lines=abc", None, 400, "invalid_request"),
    ("POST", "/api/v1/backends/mlx/parse-command", {"command": "'"}, 400, "parse_error"),
    ("POST", "/api/v1/backends/nope/parse-command", {"command": "x"}, 404, "not_found"),
    ("GET", "/api/v1/nodes/nowhere", None, 404, "not_found"),
    ("GET", "/api/v1/no/such/route", None, 404, "not_found"),
    ("GET", "/nothing", None, 404, "not_found"),
    ("PATCH", "/api/v1/instances/taken", None, 405, "method_not_allowed"),
    ("POST", "/healthz", None, 405, "method_not_allowed"),
]


async def test_every_management_error_has_the_same_shape(api: Api) -> None:
    for name in ("taken", "running"):
        created = await api.client.post(f"/api/v1/instances/{name}", json=fake_options())
        assert created.status_code == 201
    assert (await api.client.post("/api/v1/instances/running/start")).status_code == 200
    for method, path, body, status, code in ERRORS:
        content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        response = await api.client.request(method, path, content=content)
        assert response.status_code == status, (method, path, response.text)
        assert response.headers["content-type"] == "application/json", (method, path)
        parsed = response.json()
        assert list(parsed) == ["error"], (method, path)
        assert list(parsed["error"]) == ["code", "message"], (method, path)
        assert parsed["error"]["code"] == code, (method, path, parsed)
        message = parsed["error"]["message"]
        assert isinstance(message, str), (method, path)
        assert message.strip(), (method, path)
    assert (await api.client.post("/api/v1/instances/running/stop")).status_code == 200


async def test_an_unexpected_exception_is_500_without_details(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("secret detail")

    async with serving(tmp_path, dependencies=[Depends(explode)]) as api:
        with caplog.at_level(logging.ERROR, logger="llamactl.server.errors"):
            response = await api.client.get("/api/v1/version")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert "secret detail" not in response.text
    [record] = [r for r in caplog.records if r.name == "llamactl.server.errors"]
    assert record.getMessage() == "GET /api/v1/version failed"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


async def test_a_llamactl_error_with_a_5xx_status_is_rendered_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def fail() -> None:
        raise DatabaseError("the database file is read-only")

    async with serving(tmp_path, dependencies=[Depends(fail)]) as api:
        with caplog.at_level(logging.ERROR, logger="llamactl.server.errors"):
            response = await api.client.get("/api/v1/instances")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "database_error", "message": "the database file is read-only"}
    }
    assert any("read-only" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("status", "detail", "code", "message"),
    [
        (
            403,
            "this key may not manage instances",
            "forbidden",
            "this key may not manage instances",
        ),
        (413, None, "payload_too_large", "Request Entity Too Large (GET /api/v1/version)"),
        (418, None, "http_error", "I'm a Teapot (GET /api/v1/version)"),
    ],
)
async def test_http_exceptions_from_dependencies_keep_their_status(
    tmp_path: Path, status: int, detail: str | None, code: str, message: str
) -> None:
    def refuse(request: Request) -> None:
        raise HTTPException(status, detail)

    async with serving(tmp_path, dependencies=[Depends(refuse)]) as api:
        response = await api.client.get("/api/v1/version")
    assert response.status_code == status
    assert response.json() == {"error": {"code": code, "message": message}}


def test_error_response_shape() -> None:
    response = error_response(409, "conflict", "instance a is running", headers={"X-A": "1"})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-a"] == "1"
    assert json.loads(bytes(response.body)) == {
        "error": {"code": "conflict", "message": "instance a is running"}
    }


def test_openai_error_shape() -> None:
    body = json.loads(openai_error_body(404, "model 'x' not found", None))
    assert body == {
        "error": {
            "message": "model 'x' not found",
            "type": "not_found_error",
            "param": None,
            "code": None,
        }
    }
    assert list(body["error"]) == ["message", "type", "param", "code"]
    coded = json.loads(openai_error_body(503, "loading", "instance_starting"))
    assert coded["error"]["code"] == "instance_starting"
    assert coded["error"]["type"] == "api_error"
    assert json.loads(openai_error_body(400, "bad", None))["error"]["type"] == (
        "invalid_request_error"
    )


def test_validation_message_names_each_parameter() -> None:
    errors = [
        {"loc": ("query", "timeout"), "msg": "Input should be a valid number", "input": "x"},
        {"loc": ("path", "name"), "msg": "Field required", "input": None},
        "not a mapping",
    ]
    assert validation_message(errors) == (
        "query parameter timeout: Input should be a valid number (got 'x'); "
        "path parameter name: Field required"
    )
    assert validation_message([]) == "invalid request"

"""The proxy as an HTTP intermediary, against a backend that misbehaves on a raw socket.

llamactl runs for real (uvicorn on a socket); its llama-cpp instance ``raw`` is
``raw_backend.py``, which records every byte it receives and answers each request with the
scenario its path (or ``X-Scenario``) names. Clients are raw sockets where the bytes on the
wire matter, the official ``openai`` client where a client library's view matters.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.support.live import INFERENCE_KEY, Running, chat, headers
from tests.support.rawhttp import (
    RAW_BACKEND,
    BackendRecord,
    RawClient,
    get,
    post,
    record,
    start_raw,
)

__all__ = ["record", "start_raw"]  # fixtures

pytestmark = pytest.mark.anyio


# -- 1. the request target ----------------------------------------------------------------


async def test_encoded_crlf_in_a_path_reaches_the_backend_encoded_not_as_headers(
    start_raw: Callable[..., Any], record: BackendRecord
) -> None:
    _, port = await start_raw()
    smuggling = "/llama-cpp/raw/ok%0D%0AX-Injected:%20yes%0D%0A%0D%0AGET%20/smuggled%20HTTP/1.1"
    body = json.dumps(chat("raw")).encode()
    chat_target = "/v1/chat/completions%0D%0AX-Injected:%201"
    client = await RawClient.connect(port)
    try:
        first = await client.request(get(smuggling, INFERENCE_KEY))
        second = await client.request(
            post(chat_target, body, INFERENCE_KEY, "Content-Type: application/json"), b"POST"
        )
    finally:
        client.close()
    assert (first.status, second.status) == (200, 200)
    lines = record.request_lines()[1:]  # after the warm-up request
    assert lines == [
        "GET /ok%0D%0AX-Injected:%20yes%0D%0A%0D%0AGET%20/smuggled%20HTTP/1.1 HTTP/1.1",
        f"POST {chat_target} HTTP/1.1",
    ]
    assert all("x-injected" not in str(entry["head"]).lower().split("\r\n", 1)[1]
               for entry in record.requests())  # fmt: skip


async def test_bad_names_and_non_latin1_paths_are_400_or_forwarded_never_500(
    start_raw: Callable[..., Any], record: BackendRecord
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        newline_name = await client.request(get("/llama-cpp/ra%0Aw/ok", INFERENCE_KEY))
        euro_name = await client.request(get("/llama-cpp/%E2%82%AC/ok", INFERENCE_KEY))
        slash_name = await client.request(get("/llama-cpp/raw%2Fx/ok", INFERENCE_KEY))
        euro_rest = await client.request(get("/llama-cpp/raw/%E2%82%AC", INFERENCE_KEY))
    finally:
        client.close()
    for reply in (newline_name, slash_name):
        assert reply.status == 400, reply.body
        error: Any = reply.json()
        assert error["error"]["type"] == "invalid_request_error"
    assert euro_name.status in (400, 404), euro_name.body
    assert euro_rest.status == 200
    assert record.request_lines()[-1] == "GET /%E2%82%AC HTTP/1.1"


# -- 8. api_key in the query string ---------------------------------------------------------


async def test_the_api_key_query_parameter_is_not_forwarded(
    start_raw: Callable[..., Any], record: BackendRecord
) -> None:
    server, _ = await start_raw()
    async with httpx.AsyncClient(base_url=server.url) as client:
        query = f"b=2&api_key={INFERENCE_KEY}&a=%20x+y&api%5Fkey=again&z"
        reply = await client.get(f"/llama-cpp/raw/ok?{query}")
        alone = await client.get(f"/llama-cpp/raw/ok?api_key={INFERENCE_KEY}")
    assert (reply.status_code, alone.status_code) == (200, 200)
    assert record.request_lines()[-2:] == [
        "GET /ok?b=2&a=%20x+y&z HTTP/1.1",
        "GET /ok HTTP/1.1",
    ]


# -- 2. framing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "status", "body"),
    [("interim", 200, b"final"), ("extra", 200, b"ok"), ("nocontent", 204, b"")],
)
async def test_each_request_on_a_connection_gets_its_own_answer(
    start_raw: Callable[..., Any], scenario: str, status: int, body: bytes
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        odd = await client.request(get(f"/llama-cpp/raw/{scenario}", INFERENCE_KEY))
        after = [await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY)) for _ in "12"]
    finally:
        client.close()
    assert (odd.status, odd.body, odd.complete) == (status, body, True)
    for reply in after:
        assert reply.status == 200
        assert reply.body.startswith(b"ok "), reply.body  # its own answer, not "smuggled"


async def test_a_close_delimited_body_is_complete_and_its_connection_not_reused(
    start_raw: Callable[..., Any],
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        reply = await client.request(get("/llama-cpp/raw/close-delimited", INFERENCE_KEY))
        after = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
    finally:
        client.close()
    assert (reply.status, reply.body, reply.complete) == (200, b"all of it", True)
    assert after.status == 200 and after.body.startswith(b"ok ")


# -- 3. a body cut off midway -----------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["cut-length", "cut-chunked"])
async def test_a_cut_off_body_is_not_relayed_as_complete(
    start_raw: Callable[..., Any], scenario: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    with caplog.at_level(logging.WARNING, logger="llamactl.proxy"):
        try:
            reply = await client.request(get(f"/llama-cpp/raw/{scenario}", INFERENCE_KEY))
            closed = await client.reader.read()  # the proxy closes the client's connection
        finally:
            client.close()
    assert (reply.status, reply.complete, closed) == (200, False, b"")
    assert any(
        "raw" in r.getMessage() and "cut its response off" in r.getMessage() for r in caplog.records
    )


async def test_the_openai_client_raises_on_a_cut_off_stream(
    start_raw: Callable[..., Any],
) -> None:
    server, _ = await start_raw()
    client = openai.AsyncOpenAI(
        base_url=f"{server.url}/v1",
        api_key=INFERENCE_KEY,
        max_retries=0,
        default_headers={"X-Scenario": "cut-chunked"},
    )
    received: list[str] = []
    try:
        with pytest.raises((openai.APIError, httpx.HTTPError)):
            stream = await client.chat.completions.create(
                model="raw", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            async for event in stream:
                received.append(event.choices[0].delta.content or "")
    finally:
        await client.close()
    assert received == ["half an "]  # what came through, then an error, not success


# -- 4. a client that leaves before the response head ------------------------------------------


async def test_a_client_leaving_before_the_head_closes_the_backend_connection(
    start_raw: Callable[..., Any], record: BackendRecord
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    await client.send(get("/llama-cpp/raw/silent", INFERENCE_KEY))
    entries = await record.wait_for(
        lambda entries: any("/silent" in str(e.get("head", "")) for e in entries)
    )
    conn = next(e["conn"] for e in entries if "/silent" in str(e.get("head", "")))
    client.close()
    await record.wait_for(lambda entries: {"conn": conn, "event": "closed"} in entries)


# -- 5. bounds -----------------------------------------------------------------------------------


async def test_endless_headers_are_502(start_raw: Callable[..., Any]) -> None:
    server, _ = await start_raw()
    async with httpx.AsyncClient(base_url=server.url, headers=headers()) as client:
        reply = await client.get("/llama-cpp/raw/huge-head", timeout=30)
    assert reply.status_code == 502
    assert "65536 bytes" in reply.json()["error"]["message"]


async def test_an_invalid_status_is_502_with_a_clear_message(
    start_raw: Callable[..., Any],
) -> None:
    server, _ = await start_raw()
    async with httpx.AsyncClient(base_url=server.url, headers=headers()) as client:
        reply = await client.get("/llama-cpp/raw/bad-status", timeout=30)
        after = await client.get("/llama-cpp/raw/ok", timeout=30)
    assert reply.status_code == 502
    assert "invalid status code 999" in reply.json()["error"]["message"]
    assert after.status_code == 200


async def test_no_response_head_in_time_is_504_in_the_openai_shape(
    start_raw: Callable[..., Any],
) -> None:
    server, _ = await start_raw(LLAMACTL_RESPONSE_HEADER_TIMEOUT="1")
    async with httpx.AsyncClient(base_url=server.url, headers=headers()) as client:
        reply = await client.post(
            "/v1/chat/completions", json=chat("raw"), headers={"X-Scenario": "silent"},
            timeout=30,
        )  # fmt: skip
        after = await client.get("/llama-cpp/raw/ok", timeout=30)
    assert reply.status_code == 504
    error = reply.json()["error"]
    assert error["code"] == "gateway_timeout"
    assert error["type"] == "api_error"
    assert "no response headers within 1 s" in error["message"]
    assert after.status_code == 200


# -- 7. trailers; 9. Server and Date -----------------------------------------------------------


async def test_trailer_fields_never_become_headers(start_raw: Callable[..., Any]) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        reply = await client.request(get("/llama-cpp/raw/trailer", INFERENCE_KEY))
    finally:
        client.close()
    assert (reply.status, reply.body, reply.complete) == (200, b"body", True)
    assert reply.values(b"set-cookie") == []


async def test_one_server_and_one_date_header_reach_the_client(
    start_raw: Callable[..., Any],
) -> None:
    _, port = await start_raw()
    client = await RawClient.connect(port)
    try:
        reply = await client.request(get("/llama-cpp/raw/server-date", INFERENCE_KEY))
    finally:
        client.close()
    assert reply.status == 200
    assert len(reply.values(b"server")) == 1
    assert reply.values(b"server") != [b"raw-backend/1.0"]
    assert len(reply.values(b"date")) == 1
    assert reply.values(b"date") != [b"Thu, 01 Jan 1970 00:00:00 GMT"]


# -- 6. the body's model ---------------------------------------------------------------------------


async def test_deeply_nested_and_non_object_bodies_are_400_in_the_openai_shape(
    start_raw: Callable[..., Any],
) -> None:
    server, _ = await start_raw()
    bodies = [
        b"[" * 100_000,
        b'{"model": "raw", "messages": ' + b"[" * 100_000,
        b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b"not json",
        b'{"model": 3}',
    ]
    async with httpx.AsyncClient(base_url=server.url, headers=headers()) as client:
        replies = [await client.post("/v1/chat/completions", content=b) for b in bodies]
    for reply in replies:
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_vllm_gets_its_model_name_with_the_body_otherwise_byte_identical(
    serve: Callable[..., Any], record: BackendRecord
) -> None:
    server: Running = await serve(
        LLAMACTL_VLLM_COMMAND=sys.executable, LLAMACTL_VLLM_ARGS=str(RAW_BACKEND)
    )
    await server.manager.create(
        "vl",
        {
            "backend_type": "vllm",
            "backend_options": {"model": "org/model", "served_model_name": ["served"]},
            "environment": {"RAW_BACKEND_LOG": str(record.path)},
            "on_demand_start": True,
            "auto_restart": False,
        },
    )
    body = b'{ "model" :"vl",\n "messages":[{"content":"caf\\u00e9 \xc3\xa9"}], "x":1.50 }'
    form = (
        b'{ preamble\r\n--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nvl\r\n--b--\r\n'
    )
    async with httpx.AsyncClient(base_url=server.url, headers=headers()) as client:
        reply = await client.post("/v1/chat/completions", content=body, timeout=30)
        multipart = await client.post(
            "/v1/audio/transcriptions", content=form, timeout=30,
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )  # fmt: skip
    assert (reply.status_code, multipart.status_code) == (200, 200), multipart.text
    received = [entry["body"].encode("latin-1") for entry in record.requests()]  # type: ignore[union-attr]
    assert received[-2:] == [body.replace(b'"vl"', b'"served"'), form]

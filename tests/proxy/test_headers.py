"""What crosses the proxy in headers, both ways."""

from __future__ import annotations

from llamactl.proxy.upstream import request_headers, response_headers


def test_request_headers_drop_hop_by_hop_and_llamactl_keys() -> None:
    raw = [
        (b"host", b"llamactl:8080"),
        (b"content-type", b"application/json"),
        (b"content-length", b"12"),
        (b"connection", b"keep-alive"),
        (b"authorization", b"Bearer sk-llamactl"),
        (b"x-api-key", b"sk-llamactl"),
        (b"accept", b"text/event-stream"),
    ]
    assert request_headers(raw) == [
        (b"content-type", b"application/json"),
        (b"accept", b"text/event-stream"),
    ]
    assert request_headers(raw, "backend-key")[-1] == (b"authorization", b"Bearer backend-key")


def test_response_headers_drop_backend_cors_and_add_configured_ones() -> None:
    raw = [
        (b"content-type", b"text/event-stream"),
        (b"transfer-encoding", b"chunked"),
        (b"access-control-allow-origin", b"*"),
        (b"access-control-allow-headers", b"*"),
        (b"access-control-allow-methods", b"GET"),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-max-age", b"600"),
        (b"access-control-expose-headers", b"x"),
        (b"x-backend", b"1"),
    ]
    extra = [(b"x-accel-buffering", b"no")]
    assert response_headers(raw, extra) == [
        (b"content-type", b"text/event-stream"),
        (b"x-backend", b"1"),
        (b"x-accel-buffering", b"no"),
    ]

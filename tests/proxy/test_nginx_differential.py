"""The same misbehaving backend behind nginx and behind llamactl: the client must see the
same outcome class (complete / incomplete / 502 / 504) for each behaviour.

nginx is Debian's package (``/usr/sbin/nginx``), configured as a keep-alive reverse proxy
with buffering off and a 1 s wait for response headers, like llamactl here
(``LLAMACTL_RESPONSE_HEADER_TIMEOUT=1``). Both strip ``/llama-cpp/raw`` from the path, so
the same request reaches the same scenario of ``raw_backend.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.live import INFERENCE_KEY
from tests.support.net import free_port
from tests.support.rawhttp import (
    BackendRecord,
    RawClient,
    get,
    record,
    start_raw,
    start_raw_backend,
    wait_listening,
)

__all__ = ["record", "start_raw"]  # fixtures

pytestmark = pytest.mark.anyio

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
HAVE_NGINX = os.access(NGINX, os.X_OK)

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port};
        location /llama-cpp/raw/ {{
            proxy_pass http://backend/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 1s;
        }}
    }}
}}
"""

# What one request's outcome is compared on, per behaviour of the task's list.
SCENARIOS = {
    "1. CRLF encoded in the path": "ok%0D%0AX-Injected:%20yes",
    "2. 100 and 103 before the answer": "interim",
    "2. bytes beyond Content-Length": "extra",
    "2. a body on a 204": "nocontent",
    "3. cut short of Content-Length": "cut-length",
    "3. chunked without its terminator": "cut-chunked",
    "5. endless headers": "huge-head",
    "5. no response head in time": "silent",
    # Not compared: a status of 999, which nginx relays as it is; llamactl answers 502
    # (a status outside 100-599 is not HTTP; see test_misbehaving_backends).
    "7. a trailer in the head's read": "trailer",
}
# After a complete answer the next request on the same client connection must get its own
# answer too; not compared after interim responses, which nginx before 1.29 relays as the
# answer and then waits on until its read timeout (llamactl's own test covers that case).
NO_FOLLOW_UP = frozenset({"interim"})


@pytest.fixture
async def nginx(tmp_path: Path) -> AsyncIterator[tuple[int, BackendRecord]]:
    """nginx in front of its own raw backend: (nginx's port, that backend's record)."""
    if not HAVE_NGINX:
        pytest.skip(f"nginx is not installed ({NGINX}): apt-get install nginx-light")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    backend_port, port = free_port(), free_port()
    log = BackendRecord(tmp_path / "nginx-backend.jsonl")
    backend = await start_raw_backend(backend_port, log.path)
    config = prefix / "nginx.conf"
    config.write_text(CONFIG.format(prefix=prefix, backend_port=backend_port, port=port))
    user = ["-g", "user root;"] if os.geteuid() == 0 else []
    command = [NGINX, "-e", str(prefix / "error.log"), "-p", f"{prefix}/", "-c", str(config)]
    test = subprocess.run([*command, *user, "-t", "-q"], capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    server = await asyncio.create_subprocess_exec(*command, *user)
    try:
        await wait_listening(port)
        yield port, log
    finally:
        for process in (server, backend):
            process.terminate()
            await process.wait()


async def outcomes(port: int, record: BackendRecord) -> dict[str, object]:
    """Each behaviour's outcome class through the proxy on ``port``."""
    seen: dict[str, object] = {}
    for label, scenario in SCENARIOS.items():
        client = await RawClient.connect(port)
        try:
            await client.send(get(f"/llama-cpp/raw/{scenario}", INFERENCE_KEY))
            try:
                reply = await client.reply(timeout=10)  # the proxies give up after 1 s
            except ConnectionError:
                seen[label] = ["no response"]
                continue
            except TimeoutError:
                seen[label] = ["no response within 10 s"]
                continue
            outcome: list[object] = [reply.outcome]
            if scenario == "trailer":
                outcome.append(("set-cookie", reply.values(b"set-cookie")))
            if reply.complete and scenario not in NO_FOLLOW_UP:
                outcome.append(("next", await _next_answer(client)))
        finally:
            client.close()
        seen[label] = outcome
    seen["1. no header injected"] = all(
        "x-injected" not in str(entry["head"]).lower().split("\r\n", 1)[1]
        for entry in record.requests()
    )
    seen["4. a client leaving closes the backend connection"] = await _client_leaves(port, record)
    return seen


async def _next_answer(client: RawClient) -> object:
    """The outcome of a plain request after the first on the same client connection."""
    if not client.reusable:
        return "connection closed"  # allowed: the client then opens another one
    try:
        after = await client.request(get("/llama-cpp/raw/ok", INFERENCE_KEY))
    except ConnectionError:
        return "connection closed"
    return after.outcome, after.body.startswith(b"ok ")


async def _client_leaves(port: int, record: BackendRecord) -> bool:
    client = await RawClient.connect(port)
    await client.send(get("/llama-cpp/raw/silent?leave", INFERENCE_KEY))
    entries = await record.wait_for(lambda e: any("?leave" in str(x.get("head")) for x in e))
    conn = next(x["conn"] for x in entries if "?leave" in str(x.get("head")))
    client.close()
    await record.wait_for(lambda e: {"conn": conn, "event": "closed"} in e)
    return True


async def test_llamactl_and_nginx_give_clients_the_same_outcomes(
    nginx: tuple[int, BackendRecord],
    start_raw: Callable[..., Any],
    record: BackendRecord,
) -> None:
    nginx_port, nginx_record = nginx
    _, llamactl_port = await start_raw(LLAMACTL_RESPONSE_HEADER_TIMEOUT="1")
    through_nginx = await outcomes(nginx_port, nginx_record)
    through_llamactl = await outcomes(llamactl_port, record)
    assert through_llamactl == through_nginx
    expected = {
        "2. 100 and 103 before the answer": "complete",
        "3. cut short of Content-Length": "incomplete",
        "3. chunked without its terminator": "incomplete",
        "5. endless headers": "502",
        "5. no response head in time": "504",
    }
    assert {label: through_nginx[label][0] for label in expected} == expected  # type: ignore[index]

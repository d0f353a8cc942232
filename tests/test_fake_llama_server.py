"""The fake llama-server used by the process tests: a real child process on a real socket."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from llamactl.manager.reaper import is_alive
from tests.support.config import FAKE_SERVER as FAKE
from tests.support.net import free_port

START_DEADLINE = 5.0
LOADING_BODY = {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}

# Every fake any test of this module started, for the leftover check.
_LAUNCHED: list[Fake] = []


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Fake:
    """One fake server process; its stdout, stderr and request log go to files."""

    def __init__(self, folder: Path, args: list[str], env: dict[str, str], port: int) -> None:
        folder.mkdir(parents=True)
        self.port = port
        self.host = "127.0.0.1"
        for i, arg in enumerate(args[:-1]):
            if arg == "--host":
                self.host = args[i + 1]
        self.stdout_path = folder / "stdout"
        self.stderr_path = folder / "stderr"
        self.log_path = folder / "requests.jsonl"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_LLAMA_")}
        full_env.update({"FAKE_LLAMA_REQUEST_LOG": str(self.log_path), **env})
        self.started_at = time.monotonic()
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAKE), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=full_env,
                cwd=folder,
                start_new_session=True,  # its own process group, killable as a whole
            )
        _LAUNCHED.append(self)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stdout_lines(self) -> list[str]:
        return self.stdout_path.read_text().splitlines()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def log(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def child_pids(self) -> list[int]:
        pids = []
        for line in self.stdout_lines():
            if line.startswith('{"child_pid"'):
                pids.append(int(json.loads(line)["child_pid"]))
        return pids

    def wait_listening(self, timeout: float = START_DEADLINE) -> float:
        """Poll the port until it accepts; the seconds since start. Fails if the fake died."""

        def accepts() -> bool:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"fake exited with {code}: {self.stderr()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                return False
            return True

        wait_until(accepts, timeout, f"the fake to listen on {self.port}")
        return time.monotonic() - self.started_at

    def wait_healthy(self, client: httpx.Client, timeout: float = START_DEADLINE) -> float:
        self.wait_listening(timeout)

        def healthy() -> bool:
            return client.get(f"{self.url}/health").status_code == 200

        wait_until(healthy, timeout, "/health to answer 200")
        return time.monotonic() - self.started_at

    def stop(self) -> None:
        """Kill the fake and anything left in its process group."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        # The group outlives its leader while a grandchild is in it.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fail the test if a fake (or a grandchild of one) it started is still alive at the end."""
    first = len(_LAUNCHED)
    yield
    leftovers = []
    for fake in _LAUNCHED[first:]:
        if fake.proc.poll() is None:
            leftovers.append(f"fake pid {fake.proc.pid}")
            fake.stop()
        for child in fake.child_pids():
            # Killed children are reaped by init; give it a moment.
            deadline = time.monotonic() + 2
            while is_alive(child) and time.monotonic() < deadline:
                time.sleep(0.02)
            if is_alive(child):
                leftovers.append(f"grandchild pid {child}")
                with suppress(ProcessLookupError):
                    os.kill(child, signal.SIGKILL)
    del _LAUNCHED[first:]
    assert not leftovers, f"processes left behind: {leftovers}"


@pytest.fixture
def start_fake(tmp_path: Path) -> Iterator[Callable[..., Fake]]:
    """``start_fake(*flags, env={...})``: a started fake, not yet waited for.

    ``--port`` on a free port is added unless the flags have one or ``port`` is given.
    """
    started: list[Fake] = []

    def start(*flags: str, env: dict[str, str] | None = None, port: int | None = None) -> Fake:
        args = list(flags)
        for i, arg in enumerate(args):
            if arg == "--port" and i + 1 < len(args):
                port = int(args[i + 1])
            elif arg.startswith("--port="):
                port = int(arg.removeprefix("--port="))
        if port is None:
            port = free_port()
            args = ["--port", str(port), *args]
        fake = Fake(tmp_path / f"fake{len(started)}", args, env or {}, port)
        started.append(fake)
        return fake

    try:
        yield start
    finally:
        for fake in started:
            fake.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, trust_env=False) as http:
        yield http


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "whatever",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ],
        **extra,
    }


def sse_events(response: httpx.Response) -> Iterator[tuple[float, str]]:
    """(arrival time, data) for every ``data:`` line of an event stream."""
    for line in response.iter_lines():
        if line.startswith("data: "):
            yield time.monotonic(), line[len("data: ") :]


# --------------------------------------------------------------------------- start-up


def test_starts_fast_echoes_argv_prints_banner_and_lists_alias(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    port = free_port()
    flags = [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-m",
        "/models/tiny-q4.gguf",
        "--ctx-size",
        "4096",
        "--flash-attn",
        "-ngl",
        "99",
        "--seed",
        "-1",
        "--jinja",
        "--alias",
        "tiny",
    ]
    fake = start_fake(*flags)
    startup = fake.wait_listening()
    print(f"fake listening {startup * 1000:.0f} ms after Popen")
    assert startup < 1.5

    assert json.loads(fake.stdout_lines()[0]) == {"argv": flags, "pid": fake.proc.pid}
    response = client.get(f"{fake.url}/v1/models")
    assert response.status_code == 200
    models = response.json()
    assert models["object"] == "list"
    [entry] = models["data"]
    assert entry["id"] == "tiny"
    assert entry["object"] == "model"
    assert entry["owned_by"] == "llamacpp"
    assert isinstance(entry["created"], int)
    assert response.headers["x-fake-llama-pid"] == str(fake.proc.pid)

    stderr = wait_until(
        lambda: (text := fake.stderr()) and "server is listening" in text and text,
        2,
        "the banner",
    )
    assert "main: loading model '/models/tiny-q4.gguf'" in stderr
    assert f"main: server is listening on http://127.0.0.1:{port}" in stderr


def test_model_id_is_the_basename_and_unknown_flags_are_skipped(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    port = free_port()
    fake = start_fake(
        "--threads", "8", "--port=" + str(port), "--no-mmap", "--model", "/a/b/m.gguf", "stray"
    )
    fake.wait_listening()
    assert client.get(f"{fake.url}/v1/models").json()["data"][0]["id"] == "m.gguf"


def test_missing_port_is_a_usage_error(start_fake: Callable[..., Fake]) -> None:
    fake = start_fake("-m", "x.gguf", port=0)
    assert fake.proc.wait(timeout=5) == 2
    assert "--port is required" in fake.stderr()


@pytest.mark.skipif(sys.platform != "linux", reason="needs the whole 127/8 on loopback")
def test_binds_only_the_given_host(start_fake: Callable[..., Fake], client: httpx.Client) -> None:
    fake = start_fake("--host", "127.0.0.2")
    fake.wait_listening()
    assert client.get(f"{fake.url}/health").status_code == 200
    with pytest.raises(ConnectionRefusedError), socket.socket() as probe:
        probe.connect(("127.0.0.1", fake.port))


# --------------------------------------------------------------------------- loading


def test_health_is_503_while_loading_then_200_and_the_log_says_so(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    fake = start_fake("-m", "m.gguf", env={"FAKE_LLAMA_LOAD_SECONDS": "0.4"})
    fake.wait_listening()  # listening while loading
    early = client.get(f"{fake.url}/health")
    assert early.status_code == 503
    assert early.json() == LOADING_BODY
    busy = client.post(f"{fake.url}/v1/chat/completions", json=chat_body("hi"))
    assert busy.status_code == 503
    assert busy.json() == LOADING_BODY

    ready_after = fake.wait_healthy(client)
    assert ready_after >= 0.4
    answer = client.post(f"{fake.url}/v1/chat/completions", json=chat_body("hi"))
    assert answer.status_code == 200

    log = fake.log()
    assert [(r["method"], r["path"], r["loading"]) for r in log[:2]] == [
        ("GET", "/health", True),
        ("POST", "/v1/chat/completions", True),
    ]
    assert log[1]["body"] == chat_body("hi")
    assert log[0]["body"] is None
    assert log[-1]["loading"] is False
    assert log[-1]["body"] == chat_body("hi")
    assert {r["pid"] for r in log} == {fake.proc.pid}
    times = [r["t"] for r in log]
    assert times == sorted(times)
    assert all(abs(t - time.time()) < 30 for t in times)
    assert "main: model loaded" in fake.stderr()


# --------------------------------------------------------------------------- answers


def test_chat_completion_embedding_and_error_answers(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    fake = start_fake("--alias", "tiny")
    fake.wait_listening()

    chat = client.post(f"{fake.url}/v1/chat/completions", json=chat_body("hello there world"))
    assert chat.status_code == 200
    body = chat.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "tiny"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "echo: hello there world",
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}

    short = client.post(
        f"{fake.url}/v1/chat/completions", json=chat_body("hello there world", max_tokens=2)
    ).json()
    assert short["choices"][0]["message"]["content"] == "echo: hello"
    assert short["choices"][0]["finish_reason"] == "length"

    completion = client.post(f"{fake.url}/v1/completions", json={"prompt": "abc def"}).json()
    assert completion["object"] == "text_completion"
    assert completion["choices"][0]["text"] == "echo: abc def"
    assert completion["usage"]["total_tokens"] == 5

    # A chunked request body, as a proxy streaming the upload would send it.
    def upload() -> Iterator[bytes]:
        yield b'{"prompt": '
        yield b'"in pieces"}'

    chunked = client.post(f"{fake.url}/v1/completions", content=upload())
    assert chunked.json()["choices"][0]["text"] == "echo: in pieces"

    embeddings = client.post(f"{fake.url}/v1/embeddings", json={"input": ["a", "b c"]}).json()
    assert [e["index"] for e in embeddings["data"]] == [0, 1]
    assert embeddings["data"][0]["embedding"] == [0.1, 0.2, 0.3, 0.4]

    missing = client.get(f"{fake.url}/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == 404
    bad = client.post(
        f"{fake.url}/v1/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    no_messages = client.post(f"{fake.url}/v1/chat/completions", json={"model": "x"})
    assert no_messages.status_code == 400


def test_streamed_chat_arrives_chunk_by_chunk(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    fake = start_fake(
        env={"FAKE_LLAMA_STREAM_CHUNKS": "5", "FAKE_LLAMA_STREAM_INTERVAL": "0.2"},
    )
    fake.wait_listening()
    sent = time.monotonic()
    body = chat_body("one two three four five six", stream=True)
    with client.stream("POST", f"{fake.url}/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
        events = list(sse_events(response))

    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in events[:-1]]
    arrivals = [at - sent for at, _ in events[:-1]]
    assert len(chunks) == 5
    # One every 0.2 s: the first long before the last.
    assert arrivals[0] < 0.3
    assert arrivals[-1] - arrivals[0] > 0.6
    assert all(later > earlier for earlier, later in itertools.pairwise(arrivals))

    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text == "echo: one two three four five six"
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 4 + ["stop"]
    assert chunks[-1]["usage"]["completion_tokens"] == 7


def test_streamed_completion_and_the_wire_format(start_fake: Callable[..., Fake]) -> None:
    fake = start_fake(env={"FAKE_LLAMA_STREAM_CHUNKS": "3"})
    fake.wait_listening()

    def raw(version: str) -> bytes:
        payload = json.dumps({"prompt": "a b c d", "stream": True}).encode()
        request = (
            f"POST /v1/completions {version}\r\nHost: x\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode() + payload
        with socket.create_connection((fake.host, fake.port), timeout=5) as conn:
            conn.sendall(request)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        return data

    http11 = raw("HTTP/1.1")
    head, _, wire = http11.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert wire.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    assert wire.count(b"data: ") == 4

    http10 = raw("HTTP/1.0")
    head, _, stream = http10.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert b"Connection: close" in head
    events = [e.removeprefix(b"data: ") for e in stream.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"}
    assert "".join(c["choices"][0]["text"] for c in chunks) == "echo: a b c d"


# --------------------------------------------------------------------------- connections


def test_keep_alive_serves_twenty_requests_on_one_connection(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    fake = start_fake()
    fake.wait_listening()
    for i in range(20):
        if i % 5 == 4:
            body = chat_body(f"stream {i}", stream=True)
            with client.stream("POST", f"{fake.url}/v1/chat/completions", json=body) as response:
                assert response.status_code == 200
                assert [data for _, data in sse_events(response)][-1] == "[DONE]"
        elif i % 2:
            assert client.get(f"{fake.url}/health").json() == {"status": "ok"}
        else:
            answer = client.post(f"{fake.url}/v1/chat/completions", json=chat_body(f"n{i}"))
            assert answer.json()["choices"][0]["message"]["content"] == f"echo: n{i}"
    log = fake.log()
    assert len(log) == 20
    assert len({r["peer"] for r in log}) == 1, "expected every request on one connection"


def test_fifty_concurrent_requests(start_fake: Callable[..., Fake]) -> None:
    fake = start_fake(
        env={"FAKE_LLAMA_STREAM_CHUNKS": "3", "FAKE_LLAMA_STREAM_INTERVAL": "0.1"},
    )
    fake.wait_listening()
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    barrier = threading.Barrier(50)
    streaming = threading.Barrier(50)
    with httpx.Client(timeout=10, trust_env=False, limits=limits) as http:

        def plain(i: int) -> str:
            barrier.wait(timeout=10)
            response = http.post(f"{fake.url}/v1/chat/completions", json=chat_body(f"p{i}"))
            return str(response.json()["choices"][0]["message"]["content"])

        def streamed(i: int) -> str:
            barrier.wait(timeout=10)
            body = chat_body(f"s{i}", stream=True)
            with http.stream("POST", f"{fake.url}/v1/chat/completions", json=body) as response:
                incoming = sse_events(response)
                first = next(incoming)[1]
                # Every stream has its first event before any reads on: all 50 are open
                # at once (served one at a time, the barrier would time out).
                streaming.wait(timeout=10)
                events = [first, *(data for _, data in incoming)]
            assert events[-1] == "[DONE]"
            return "".join(json.loads(e)["choices"][0]["delta"]["content"] for e in events[:-1])

        with ThreadPoolExecutor(max_workers=50) as pool:
            began = time.monotonic()
            plain_answers = list(pool.map(plain, range(50)))
            plain_seconds = time.monotonic() - began
            barrier.reset()
            began = time.monotonic()
            streamed_answers = list(pool.map(streamed, range(50)))
            streamed_seconds = time.monotonic() - began

    print(f"50 concurrent: plain {plain_seconds:.3f} s, streamed {streamed_seconds:.3f} s")
    assert plain_answers == [f"echo: p{i}" for i in range(50)]
    assert streamed_answers == [f"echo: s{i}" for i in range(50)]
    # Each stream lasts >= 0.2 s: one at a time would take >= 10 s.
    assert streamed_seconds < 4
    streams = [r for r in fake.log() if r["body"] and r["body"].get("stream")]
    assert len({r["peer"] for r in streams}) == 50, "the streams did not run side by side"


def test_a_stream_abandoned_by_the_client_is_logged(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    fake = start_fake(
        env={"FAKE_LLAMA_STREAM_CHUNKS": "50", "FAKE_LLAMA_STREAM_INTERVAL": "0.05"},
    )
    fake.wait_listening()
    body = chat_body("a b c d e f g h", stream=True)
    with client.stream("POST", f"{fake.url}/v1/chat/completions", json=body) as response:
        next(sse_events(response))
    # Leaving the block with the stream unread closes the connection.

    def disconnect_event() -> dict[str, Any] | None:
        return next((r for r in fake.log() if r.get("event") == "client_disconnected"), None)

    event = wait_until(disconnect_event, 3, "the client_disconnected line")
    assert event["path"] == "/v1/chat/completions"
    assert 1 <= event["chunks_sent"] < 50
    assert client.get(f"{fake.url}/health").status_code == 200


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("code", [0, 7])
def test_exit_at_start(start_fake: Callable[..., Fake], code: int) -> None:
    fake = start_fake("-m", "broken.gguf", env={"FAKE_LLAMA_EXIT_AT_START": str(code)})
    assert fake.proc.wait(timeout=5) == code
    assert "failed to load model 'broken.gguf'" in fake.stderr()
    assert "listening" not in fake.stderr()
    with pytest.raises(ConnectionRefusedError), socket.socket() as probe:
        probe.connect((fake.host, fake.port))


def test_crash_after_n_v1_requests(start_fake: Callable[..., Fake], client: httpx.Client) -> None:
    fake = start_fake(env={"FAKE_LLAMA_CRASH_AFTER_REQUESTS": "3"})
    fake.wait_listening()
    assert client.get(f"{fake.url}/health").status_code == 200  # not a /v1 path
    for _ in range(3):
        assert client.get(f"{fake.url}/v1/models").status_code == 200
    assert fake.proc.wait(timeout=5) == 3


def test_crash_on_signal(start_fake: Callable[..., Fake], client: httpx.Client) -> None:
    fake = start_fake(env={"FAKE_LLAMA_CRASH_ON_SIGNAL": "SIGUSR1"})
    fake.wait_healthy(client)
    fake.proc.send_signal(signal.SIGUSR1)
    assert fake.proc.wait(timeout=5) == 4


def test_ignored_sigterm_needs_sigkill(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    fake = start_fake(env={"FAKE_LLAMA_IGNORE_SIGTERM": "1"})
    fake.wait_healthy(client)
    fake.proc.terminate()
    with pytest.raises(subprocess.TimeoutExpired):
        fake.proc.wait(timeout=0.5)
    assert client.get(f"{fake.url}/health").status_code == 200
    fake.proc.kill()
    assert fake.proc.wait(timeout=5) == -signal.SIGKILL


def test_sigterm_stops_at_once_even_mid_stream(
    start_fake: Callable[..., Fake], client: httpx.Client
) -> None:
    fake = start_fake(
        env={"FAKE_LLAMA_STREAM_CHUNKS": "50", "FAKE_LLAMA_STREAM_INTERVAL": "0.2"},
    )
    fake.wait_listening()
    body = chat_body("x y z", stream=True)
    with client.stream("POST", f"{fake.url}/v1/chat/completions", json=body) as response:
        next(sse_events(response))
        signalled = time.monotonic()
        fake.proc.terminate()
        assert fake.proc.wait(timeout=5) == 0
        assert time.monotonic() - signalled < 1
    assert "received SIGTERM" in fake.stderr()


def test_sigterm_exit_code(start_fake: Callable[..., Fake], client: httpx.Client) -> None:
    fake = start_fake(env={"FAKE_LLAMA_SIGTERM_EXIT_CODE": "9"})
    fake.wait_healthy(client)
    fake.proc.terminate()
    assert fake.proc.wait(timeout=5) == 9


def test_long_line_is_printed_intact(start_fake: Callable[..., Fake]) -> None:
    fake = start_fake(env={"FAKE_LLAMA_LONG_LINE": "200000"})
    fake.wait_listening()
    lines = fake.stdout_lines()
    assert len(lines) == 2
    assert json.loads(lines[0])["argv"][0] == "--port"
    assert len(lines[1]) == 200_000
    assert lines[1] == ("0123456789" * 20_000)


def test_grandchild_shares_the_process_group(start_fake: Callable[..., Fake]) -> None:
    fake = start_fake(env={"FAKE_LLAMA_CHILD": "1"})
    fake.wait_listening()
    [child] = fake.child_pids()
    assert is_alive(child)
    assert os.getpgid(child) == os.getpgid(fake.proc.pid) == fake.proc.pid
    assert os.getpgid(child) != os.getpgid(0)

    os.killpg(fake.proc.pid, signal.SIGTERM)
    assert fake.proc.wait(timeout=5) == 0
    wait_until(lambda: not is_alive(child), 3, "the grandchild to die with its group")

"""Signals to a real llamactl process: SIGHUP reloads, SIGTERM answers waiting requests."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.config import FAKE_SERVER, PORT_RANGE
from tests.support.net import free_port
from tests.support.server_process import environment, start, stop, wait_healthy

MANAGEMENT_KEY = "sk-signals-management"
WAIT = 30.0


class Output:
    """The lines a process prints, collected by a thread, waited for by pattern."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        assert process.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str) -> str:
        """The next line matching ``pattern``; fails if the process ends or WAIT passes."""
        deadline = time.monotonic() + WAIT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                pytest.fail(f"the process ended before {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        pytest.fail(f"no line matched {pattern!r}:\n" + "\n".join(self.lines))


def write_config(path: Path, inference_key: str, *, extra: str = "") -> None:
    path.write_text(
        f"auth:\n  require_inference_auth: true\n  inference_keys: [{inference_key}]\n{extra}"
    )


@pytest.fixture
def llamactl(home: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path, Output]]:
    """A llamactl whose llama.cpp backend is the fake server and whose config is a file."""
    port = free_port()
    config_file = home / "llamactl.yaml"
    write_config(config_file, "sk-old")
    env = environment(
        home,
        LLAMACTL_PORT=str(port),
        LLAMACTL_CONFIG_PATH=str(config_file),
        LLAMACTL_MANAGEMENT_KEYS=MANAGEMENT_KEY,
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
        LLAMACTL_INSTANCE_PORT_RANGE=PORT_RANGE,
    )
    process = start(home, env)
    output = Output(process)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(process, f"{url}/healthz")
        yield process, url, config_file, output
    finally:
        stop(process)


def create(url: str, name: str, environment: dict[str, str] | None = None) -> None:
    body = {
        "backend_type": "llama_cpp",
        "backend_options": {"model": "/models/fake.gguf"},
        "on_demand_start": True,
        "environment": environment or {},
    }
    created = httpx.post(
        f"{url}/api/v1/instances/{name}",
        json=body,
        headers={"Authorization": f"Bearer {MANAGEMENT_KEY}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text


def chat(url: str, name: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=WAIT,
    )


def instance(url: str, name: str) -> dict[str, object]:
    answer = httpx.get(
        f"{url}/api/v1/instances/{name}",
        headers={"Authorization": f"Bearer {MANAGEMENT_KEY}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


def test_sighup_reloads_the_keys_and_keeps_the_backends_running(
    llamactl: tuple[subprocess.Popen[str], str, Path, Output],
) -> None:
    process, url, config_file, output = llamactl
    create(url, "alpha")
    assert chat(url, "alpha", "sk-old").status_code == 200
    pid = instance(url, "alpha")["pid"]
    assert isinstance(pid, int)

    write_config(config_file, "sk-new", extra="server:\n  access_log: true\n")
    process.send_signal(signal.SIGHUP)
    output.wait_for(r"configuration reloaded: 2 changed, 1 applied, 1 need a restart")
    assert any("auth.inference_keys changed: applied" in line for line in output.lines)
    assert any("server.access_log changed: needs a restart" in line for line in output.lines)
    assert not any("sk-new" in line or "sk-old" in line for line in output.lines)

    assert chat(url, "alpha", "sk-old").status_code == 401
    assert chat(url, "alpha", "sk-new").status_code == 200
    after = instance(url, "alpha")
    assert (after["status"], after["pid"]) == ("running", pid)
    assert process.poll() is None

    config_file.write_text("instances:\n  max_running_instances: lots\n")
    process.send_signal(signal.SIGHUP)
    output.wait_for(r"configuration not reloaded, the running one is kept: .*max_running")
    assert chat(url, "alpha", "sk-new").status_code == 200
    assert process.poll() is None


def test_a_request_waiting_for_a_start_at_shutdown_gets_503_at_once(
    llamactl: tuple[subprocess.Popen[str], str, Path, Output],
) -> None:
    process, url, _config_file, output = llamactl
    create(url, "slow", {"FAKE_LLAMA_LOAD_SECONDS": "60"})
    with ThreadPoolExecutor(1) as pool:
        waiting: Future[httpx.Response] = pool.submit(chat, url, "slow", "sk-old")
        output.wait_for(r"instance slow: started \(pid")  # the request is waiting for it
        process.send_signal(signal.SIGTERM)
        answer = waiting.result(timeout=WAIT)
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["type"] and "shutting down" in error["message"]
    assert answer.headers["retry-after"]
    process.wait(timeout=WAIT)
    assert process.returncode == 0

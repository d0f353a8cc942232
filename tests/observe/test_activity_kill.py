"""A real llamactl killed with SIGKILL during a burst: the activity log loses at most the
batch it had not written yet, and the database is intact."""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.support.config import FAKE_SERVER, fake_options
from tests.support.net import free_port
from tests.support.server_process import environment, start, stop, wait_healthy
from tests.support.waiting import eventually

KEY = "sk-activity-drill"
FLUSH = 0.2  # activity.flush_interval of the server under test


def test_kill_9_during_a_burst_loses_at_most_the_unflushed_batch(home: Path) -> None:
    port = free_port()
    env = environment(
        home,
        LLAMACTL_PORT=str(port),
        LLAMACTL_DATA_DIRECTORY=str(home / "data"),
        LLAMACTL_LLAMACPP_COMMAND=sys.executable,
        LLAMACTL_LLAMACPP_ARGS=str(FAKE_SERVER),
        LLAMACTL_MANAGEMENT_KEYS=KEY,
        LLAMACTL_ACTIVITY_FLUSH_INTERVAL=f"{int(FLUSH * 1000)}ms",
    )
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {KEY}"}
    process = start(home, env)
    acked: list[float] = []
    stopping = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=url, headers=auth, timeout=10) as http:
            while not stopping.is_set():
                body = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}
                try:
                    response = http.post("/v1/chat/completions", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                assert response.status_code == 200
                acked.append(time.monotonic())

    threads = [threading.Thread(target=client) for _ in range(8)]
    try:
        wait_healthy(process, f"{url}/healthz")
        created = httpx.post(f"{url}/api/v1/instances/alpha", json=fake_options(), headers=auth)
        assert created.status_code == 201, created.text
        assert httpx.post(f"{url}/api/v1/instances/alpha/start", headers=auth).status_code == 200
        for thread in threads:
            thread.start()
        eventually(lambda: len(acked) >= 600, "600 requests answered")
        process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        process.wait(timeout=10)
    finally:
        stopping.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=15)
        stop(process)
    connection = sqlite3.connect(home / "data" / "llamactl.db")
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (stored,) = connection.execute("SELECT count(*) FROM activity").fetchone()
    finally:
        connection.close()
    # Everything answered before the last two flushes is written; nothing more than was
    # answered (a request still in flight at the kill is never logged).
    written_for_sure = sum(1 for at in acked if at < killed - 2 * FLUSH - 0.1)
    assert written_for_sure <= stored <= len(acked)
    assert len(acked) - stored < len(acked) / 2  # most of the burst is there

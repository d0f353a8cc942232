"""The replica drill: two routers over one PostgreSQL, two agents, all real processes on
127.0.0.1. A burst of mixed management writes and ``/v1`` requests spread over both
routers; the router that leads is ``kill -9``ed midway. Afterwards every acknowledged
write is in the database and served by the survivor, the survivor answered everything it
was sent, and it took the lead (its log says so)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from tests.support.cluster import Cluster, Node
from tests.support.config import fake_options
from tests.support.postgres import PostgresServer
from tests.support.waiting import eventually

WORKERS = 6
OPERATIONS = 30  # per worker
KILL_AFTER = WORKERS * OPERATIONS * 2 // 5  # operations done when the leader is killed


@dataclass
class Ledger:
    """What the routers acknowledged, and what the survivor refused or failed."""

    created: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    # Deletes that got no answer (the router died with them): done or not, nobody knows.
    unknown: set[str] = field(default_factory=set)
    keys: set[int] = field(default_factory=set)
    answered: int = 0
    survivor_failures: list[str] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def drill(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[tuple[Cluster, str]]:
    root = tmp_path_factory.mktemp("replica-drill")
    secret = root / "keys.secret"
    secret.write_text("ab" * 32 + "\n")
    secret.chmod(0o600)
    with postgres.fresh_database() as name:
        nodes = Cluster(root)
        for router in ("ra", "rb"):
            node = nodes.add(router, {"gpu1": "gpu1", "gpu2": "gpu2"})
            node.env.update(
                LLAMACTL_DATABASE_URL=postgres.url(name), LLAMACTL_KEY_SECRET_FILE=str(secret)
            )
        nodes.add("gpu1")
        nodes.add("gpu2")
        with nodes:
            yield nodes, postgres.dsn(name)


def _chat(client: httpx.Client, model: str) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "x"}]},
    )


def _operation(client: httpx.Client, worker: int, step: int, ledger: Ledger) -> httpx.Response:
    """One of the burst's requests; records what was acknowledged."""
    kind = step % 5
    if kind == 0:
        name = f"d-{worker}-{step}"
        node = random.choice(["gpu1", "gpu2"])
        response = client.post(f"/api/v1/instances/{name}", json=fake_options(nodes=[node]))
        if response.status_code == 201:
            with ledger.lock:
                ledger.created.add(name)
        return response
    if kind in (1, 4):
        return _chat(client, random.choice(["warm1", "warm2"]))
    if kind == 2:
        with ledger.lock:
            left = ledger.created - ledger.deleted - ledger.unknown
            mine = sorted(n for n in left if n.startswith(f"d-{worker}-"))
        if not mine:
            return _chat(client, "warm1")
        try:
            response = client.delete(f"/api/v1/instances/{mine[0]}")
        except httpx.TransportError:
            with ledger.lock:
                ledger.unknown.add(mine[0])
            raise
        if response.status_code == 204:
            with ledger.lock:
                ledger.deleted.add(mine[0])
        return response
    response = client.post(
        "/api/v1/auth/keys", json={"name": f"k-{worker}-{step}", "permission_mode": "allow_all"}
    )
    if response.status_code == 201:
        with ledger.lock:
            ledger.keys.add(int(response.json()["id"]))
    return response


def _worker(
    worker: int, routers: list[Node], killed: threading.Event, victim: Node, ledger: Ledger
) -> None:
    clients = {node.name: node.client(timeout=30) for node in routers}
    try:
        for step in range(OPERATIONS):
            node = routers[(worker + step) % 2]
            if killed.is_set() and node is victim:
                node = next(other for other in routers if other is not victim)
            try:
                response = _operation(clients[node.name], worker, step, ledger)
                ok = response.status_code < 300
                failure = (
                    f"{response.request.method} {response.request.url.path}: "
                    f"{response.status_code} {response.text[:200]}"
                )
            except httpx.TransportError as exc:
                ok, failure = False, f"{type(exc).__name__}: {exc}"
            with ledger.lock:
                ledger.done += 1
                if ok:
                    ledger.answered += 1
                elif node is not victim:
                    ledger.survivor_failures.append(f"{node.name} {failure}")
    finally:
        for client in clients.values():
            client.close()


def test_a_router_killed_in_a_burst_loses_no_acknowledged_write(
    drill: tuple[Cluster, str],
) -> None:
    cluster, dsn = drill
    routers = [cluster.nodes["ra"], cluster.nodes["rb"]]
    with routers[0].client() as client:
        for name, node in (("warm1", "gpu1"), ("warm2", "gpu2")):
            body = fake_options(nodes=[node], on_demand_start=True)
            assert client.post(f"/api/v1/instances/{name}", json=body).status_code == 201
            assert _chat(client, name).status_code == 200
    eventually(lambda: any("now leads" in n.log() for n in routers), "a router to lead", 10)
    victim = next(node for node in routers if "now leads" in node.log())
    survivor = next(node for node in routers if node is not victim)
    for node in routers:  # both know the warm instances before the burst
        with node.client() as client:
            eventually(
                lambda c=client: c.get("/api/v1/instances/warm2").status_code == 200,
                f"{node.name} to know warm2",
                5,
            )

    ledger, killed = Ledger(), threading.Event()
    threads = [
        threading.Thread(target=_worker, args=(i, routers, killed, victim, ledger))
        for i in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    eventually(lambda: ledger.done >= KILL_AFTER, "the burst to reach its middle", 120)
    cluster.kill(victim.name)
    killed.set()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(thread.is_alive() for thread in threads)

    assert ledger.survivor_failures == []
    assert ledger.answered >= WORKERS * OPERATIONS // 2
    expected = ledger.created - ledger.deleted - ledger.unknown
    with psycopg.connect(dsn) as connection:
        stored = {row[0] for row in connection.execute("SELECT name FROM instances")}
        keys = {row[0] for row in connection.execute("SELECT id FROM api_keys")}
    assert expected <= stored
    assert not (ledger.deleted & stored)
    assert ledger.keys <= keys
    with survivor.client() as client:

        def served() -> bool:
            listed = {body["name"] for body in client.get("/api/v1/instances").json()}
            return expected <= listed and not (ledger.deleted & listed)

        eventually(served, f"{survivor.name} to list every acknowledged instance", 15)
        assert _chat(client, "warm1").status_code == 200
    eventually(lambda: "now leads" in survivor.log(), f"{survivor.name} to take the lead", 15)

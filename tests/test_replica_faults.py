"""A router over PostgreSQL loses its database: it keeps serving ``/v1`` from what it
knows, answers management writes with 503 naming the unreachable database, and recovers
by itself once the server is back; past ``database.stale_after`` it refuses ``/v1`` too,
until the database is back. A real PostgreSQL server of its own (stopped with
``-m immediate``, as when its machine goes away), a real router and agent."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.cluster import Cluster
from tests.support.config import fake_options
from tests.support.postgres import PostgresServer, start_server
from tests.support.waiting import eventually

STALE_AFTER = 4  # seconds the router serves /v1 without its database


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    found = start_server(durable=True)  # a pause loses no acknowledged commit
    yield found
    found.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, server: PostgresServer) -> Iterator[Cluster]:
    with server.fresh_database() as name:
        nodes = Cluster(tmp_path_factory.mktemp("replica-faults"))
        router = nodes.add("router", {"gpu": "gpu"})
        router.env["LLAMACTL_DATABASE_URL"] = server.url(name)
        router.env["LLAMACTL_DATABASE_STALE_AFTER"] = f"{STALE_AFTER}s"
        nodes.add("gpu")
        with nodes:
            yield nodes


def ask(cluster: Cluster, model: str) -> str:
    router = cluster.nodes["router"]
    client = openai.OpenAI(base_url=f"{router.url}/v1", api_key=router.key, max_retries=0)
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}]
    )
    return answer.choices[0].message.content or ""


def test_without_its_database_a_router_serves_and_refuses_writes_then_recovers(
    cluster: Cluster, server: PostgresServer
) -> None:
    router = cluster.nodes["router"]
    with router.client() as client:
        body = fake_options(nodes=["gpu"], on_demand_start=True)
        assert client.post("/api/v1/instances/kept", json=body).status_code == 201
        assert ask(cluster, "kept")
        server.pause()
        try:
            assert ask(cluster, "kept")  # from what the router knows
            listed = client.get("/api/v1/instances")
            assert listed.status_code == 200 and [i["name"] for i in listed.json()] == ["kept"]
            refused = client.post("/api/v1/instances/later", json=body)
            assert refused.status_code == 503, refused.text
            message = refused.json()["error"]["message"]
            assert "unreachable" in message and "127.0.0.1" in message
            assert "later" not in [i["name"] for i in client.get("/api/v1/instances").json()]

            def stale() -> bool:
                answer = httpx.post(
                    f"{router.url}/v1/chat/completions",
                    headers=router.headers,
                    json={"model": "kept", "messages": [{"role": "user", "content": "x"}]},
                )
                if answer.status_code != 503:
                    return False
                message = answer.json()["error"]["message"]
                assert "database.stale_after" in message, message
                return True

            eventually(stale, "/v1 to be refused once the bound has passed", STALE_AFTER + 10)
            anonymous = httpx.post(f"{router.url}/v1/chat/completions", json={"model": "kept"})
            assert anonymous.status_code == 401  # the key is checked first
        finally:
            server.resume()

        def created() -> bool:
            return client.post("/api/v1/instances/later", json=body).status_code == 201

        eventually(created, "the router to write again once the database is back", timeout=15)

        def serves() -> bool:
            try:
                return bool(ask(cluster, "kept"))
            except openai.InternalServerError:  # 503 until the feed listens again
                return False

        eventually(serves, "/v1 to be served again", timeout=15)
        assert sorted(i["name"] for i in client.get("/api/v1/instances").json()) == [
            "kept", "later",
        ]  # fmt: skip
    eventually(
        lambda: "listening for changes again" in router.log(),
        "the change feed to listen again",
        timeout=15,
    )
    assert "not listening for changes to the database" in router.log()

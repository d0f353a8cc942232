"""Routing replicas: two real llamactl routers over one real PostgreSQL database, in front
of one agent (all on 127.0.0.1).

``ra`` and ``rb`` own no instances: every instance lives on ``gpu``. What is changed
through one router (instances, keys) is served by the other within a second; the tests
wait on it with a bound and fail past it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.cluster import Cluster, Node
from tests.support.config import fake_options
from tests.support.postgres import PostgresServer
from tests.support.waiting import eventually

SEEN_WITHIN = 1.0  # seconds: the bound for a change to reach the other replica


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    secret = root / "keys.secret"
    secret.write_text(secrets.token_hex(32) + "\n")
    secret.chmod(0o600)
    with postgres.fresh_database() as name:
        nodes = Cluster(root)
        for router in ("ra", "rb"):
            node = nodes.add(router, {"gpu": "gpu"})
            node.env.update(
                LLAMACTL_DATABASE_URL=postgres.url(name), LLAMACTL_KEY_SECRET_FILE=str(secret)
            )
        nodes.add("gpu")
        with nodes:
            yield nodes


def seen_on(node: Node, check: object, what: str) -> float:
    """Wait until ``check(client)`` holds on ``node``; the seconds it took. Fails past
    ``SEEN_WITHIN`` (polling every 10 ms: the other process has no event to await)."""
    assert callable(check)
    start = time.monotonic()
    with node.client() as client:
        eventually(lambda: bool(check(client)), what, timeout=SEEN_WITHIN)
    return time.monotonic() - start


def test_an_instance_created_on_one_router_is_served_by_the_other(cluster: Cluster) -> None:
    ra, rb = cluster.nodes["ra"], cluster.nodes["rb"]
    with ra.client() as a:
        created = a.post(
            "/api/v1/instances/shared",
            json=fake_options(nodes=["gpu"], on_demand_start=True),
        )
        assert created.status_code == 201, created.text

    def listed(client: httpx.Client) -> bool:
        return client.get("/api/v1/instances/shared").status_code == 200

    seen_on(rb, listed, "rb to know the instance ra created")
    answer = openai.OpenAI(
        base_url=f"{rb.url}/v1", api_key=rb.key, max_retries=0
    ).chat.completions.create(model="shared", messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].message.content
    with httpx.Client(base_url=cluster.nodes["gpu"].url, headers=cluster.nodes["gpu"].headers) as g:
        assert g.get("/api/v1/instances/shared").json()["status"] == "running"

    with rb.client() as b:
        changed = b.put(
            "/api/v1/instances/shared",
            json=fake_options(nodes=["gpu"], on_demand_start=True, idle_timeout=7),
        )
        assert changed.status_code == 200, changed.text

    def updated(client: httpx.Client) -> bool:
        body = client.get("/api/v1/instances/shared").json()
        return bool(body["options"].get("idle_timeout") == 7)

    seen_on(ra, updated, "ra to take the options rb stored")

    with ra.client() as a:
        assert a.post("/api/v1/instances/shared/stop").status_code == 200
        assert a.delete("/api/v1/instances/shared").status_code == 204

    def gone(client: httpx.Client) -> bool:
        return client.get("/api/v1/instances/shared").status_code == 404

    seen_on(rb, gone, "rb to forget the instance ra deleted")
    assert "was deleted on another replica" in rb.log()


def test_a_key_made_on_one_router_opens_the_other(cluster: Cluster) -> None:
    ra, rb = cluster.nodes["ra"], cluster.nodes["rb"]
    with ra.client() as a:
        assert a.post(
            "/api/v1/instances/keyed", json=fake_options(nodes=["gpu"], on_demand_start=True)
        ).status_code == 201
        made = a.post(
            "/api/v1/auth/keys",
            json={
                "name": "team",
                "permission_mode": "per_instance",
                "permissions": [{"instance": "keyed"}],
            },
        )
        assert made.status_code == 201, made.text
    key, key_id = made.json()["key"], made.json()["id"]

    def opens(_client: httpx.Client) -> bool:
        response = httpx.get(f"{rb.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        return response.status_code == 200

    seen_on(rb, opens, "rb to accept the key ra made")
    answer = openai.OpenAI(
        base_url=f"{rb.url}/v1", api_key=key, max_retries=0
    ).chat.completions.create(model="keyed", messages=[{"role": "user", "content": "x"}])
    assert answer.choices[0].message.content
    with ra.client() as a:
        assert a.post("/api/v1/instances/keyed/stop").status_code == 200
        assert a.delete(f"/api/v1/auth/keys/{key_id}").status_code == 204

    def refused(_client: httpx.Client) -> bool:
        response = httpx.get(f"{rb.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
        return response.status_code == 401

    seen_on(rb, refused, "rb to refuse the key ra deleted")
    with ra.client() as a:
        assert a.delete("/api/v1/instances/keyed").status_code == 204


def test_the_lead_moves_to_the_other_router_when_its_holder_is_killed(cluster: Cluster) -> None:
    routers = [cluster.nodes["ra"], cluster.nodes["rb"]]
    eventually(
        lambda: sum("now leads" in node.log() for node in routers) >= 1,
        "a router to lead",
        timeout=10,
    )
    leader = next(node for node in routers if "now leads" in node.log())
    other = next(node for node in routers if node is not leader)
    before = other.log().count("now leads")
    cluster.kill(leader.name)
    try:
        eventually(
            lambda: other.log().count("now leads") > before,
            f"{other.name} to take the lead {leader.name} held",
            timeout=10,
        )
        with other.client() as client:
            assert client.get("/api/v1/instances").status_code == 200
    finally:
        cluster.restart(leader.name)

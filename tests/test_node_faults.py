"""Nodes configured wrong: a key the node refuses, a loop between two nodes, a node down.

``front`` lists ``keyless`` (an agent given a key it refuses), ``loop`` (``mirror``, which
calls itself ``elsewhere`` and lists ``loop`` back at ``front``) and ``down`` (an agent
that is stopped for the test).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.cluster import Cluster
from tests.support.config import fake_options
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("faults"))
    nodes.add(
        "front",
        {"keyless": "keyless", "loop": "mirror", "down": "down", "rekeyed": "rekeyed"},
        wrong_keys=frozenset({"keyless"}),
    )
    nodes.add("keyless")
    nodes.add("mirror", {"loop": "front"}, local_node="elsewhere")
    nodes.add("down")
    nodes.add("rekeyed")
    with nodes:
        yield nodes


@pytest.fixture
def front(cluster: Cluster) -> Iterator[httpx.Client]:
    with cluster.nodes["front"].client() as client:
        yield client


def ask(client: openai.OpenAI, model: str) -> str:
    """One chat completion's text."""
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}]
    )
    return answer.choices[0].message.content or ""


def create(front: httpx.Client, name: str, nodes: list[str]) -> httpx.Response:
    return front.post(f"/api/v1/instances/{name}", json=fake_options(nodes=nodes))


def test_a_key_the_node_refuses_answers_502_and_the_node_shows_unauthorized(
    cluster: Cluster, front: httpx.Client
) -> None:
    refused = create(front, "sealed", ["keyless"])
    assert refused.status_code == 502, refused.text
    error = refused.json()["error"]
    assert error["code"] == "node_refused_key"
    assert "node keyless refused the key in nodes.keyless.api_key" in error["message"]
    assert front.get("/api/v1/instances/sealed").status_code == 404
    eventually(
        lambda: front.get("/api/v1/nodes").json()["keyless"]["status"] == "unauthorized",
        "front to show keyless unauthorized",
    )
    assert "refused the key" in front.get("/api/v1/nodes").json()["keyless"]["error"]


def test_a_loop_between_two_nodes_ends_at_once_with_a_clear_error(
    cluster: Cluster, front: httpx.Client
) -> None:
    began = time.monotonic()
    refused = create(front, "circle", ["loop"])
    took = time.monotonic() - began
    assert refused.status_code == 508, refused.text
    message = refused.json()["error"]["message"]
    assert "node loop failed" in message
    assert "node front forwarded this request here, and it would go on to node loop" in message
    assert "requests travel one hop at most" in message
    assert took < 5
    for node in ("front", "mirror"):
        with cluster.nodes[node].client() as client:
            assert client.get("/api/v1/instances/circle").status_code == 404


def test_an_instance_whose_only_node_is_down_answers_503_naming_it(
    cluster: Cluster, front: httpx.Client
) -> None:
    assert create(front, "alone", ["down"]).status_code == 201
    cluster.stop("down")
    try:
        one = front.get("/api/v1/instances/alone")
        assert one.status_code == 503, one.text
        assert one.json()["error"]["code"] == "node_unreachable"
        assert "node down" in one.json()["error"]["message"]
        listed = front.get("/api/v1/instances")
        assert listed.status_code == 200
        alone = next(body for body in listed.json() if body["name"] == "alone")
        assert (alone["node"], alone["node_status"]) == ("down", "unreachable")
        client = openai.OpenAI(
            base_url=f"{cluster.nodes['front'].url}/v1",
            api_key=cluster.nodes["front"].inference_key,
            max_retries=0,
        )
        with pytest.raises(openai.InternalServerError) as caught:
            ask(client, "alone")
        assert caught.value.status_code == 503
        assert "none can be reached" in caught.value.message
    finally:
        cluster.restart("down")
        eventually(
            lambda: front.get("/api/v1/nodes").json()["down"]["status"] == "healthy",
            "front to see down healthy again",
        )
        assert front.delete("/api/v1/instances/alone").status_code == 204


def test_a_node_that_stops_taking_its_key_answers_502_and_shows_unauthorized(
    cluster: Cluster, front: httpx.Client
) -> None:
    rekeyed = cluster.nodes["rekeyed"]
    first_key = rekeyed.key
    assert create(front, "turned", ["rekeyed"]).status_code == 201
    client = openai.OpenAI(
        base_url=f"{cluster.nodes['front'].url}/v1",
        api_key=cluster.nodes["front"].inference_key,
        max_retries=0,
    )
    try:
        for _ in range(2):  # the second goes on a kept-alive connection
            assert ask(client, "turned")
        cluster.rekey("rekeyed", "sk-rekeyed-new-management-key")

        def refused() -> bool:
            try:
                ask(client, "turned")
            except openai.APIStatusError as exc:
                assert exc.status_code == 502, exc.message
                assert "node rekeyed refused the key in nodes.rekeyed.api_key" in exc.message
                return True
            return False

        eventually(refused, "the node's refusal of its old key")
        eventually(
            lambda: front.get("/api/v1/nodes").json()["rekeyed"]["status"] == "unauthorized",
            "front to show rekeyed unauthorized",
        )
    finally:
        cluster.rekey("rekeyed", first_key)
        eventually(
            lambda: front.get("/api/v1/nodes").json()["rekeyed"]["status"] == "healthy",
            "front to see rekeyed healthy again",
        )
        front.post("/api/v1/instances/turned/stop")
        assert front.delete("/api/v1/instances/turned").status_code == 204

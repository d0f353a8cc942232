"""Several machines, one endpoint: three real llamactl processes on 127.0.0.1.

``main`` lists two agents, ``gpu1`` and ``gpu2``, each running fake llama-servers. Every
request goes to main (its API, or the ``openai`` client against its ``/v1``); what the
agents did is read from their own APIs and from ``/proc``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.cluster import Cluster, Node
from tests.support.config import fake_options
from tests.support.processes import descendants
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("cluster"))
    nodes.add("main", {"gpu1": "gpu1", "gpu2": "gpu2"})
    nodes.add("gpu1")
    nodes.add("gpu2")
    with nodes:
        yield nodes


@pytest.fixture
def main(cluster: Cluster) -> Iterator[httpx.Client]:
    with cluster.nodes["main"].client() as client:
        yield client


def on(node: Node, path: str) -> httpx.Response:
    with node.client() as client:
        return client.get(path)


def openai_client(node: Node) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{node.url}/v1", api_key=node.key, max_retries=0)


def ask(client: openai.OpenAI, model: str) -> str:
    """One chat completion's text."""
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}]
    )
    return answer.choices[0].message.content or ""


def create(main: httpx.Client, name: str, nodes: list[str], **overrides: object) -> httpx.Response:
    body = fake_options(nodes=nodes, on_demand_start=True, **overrides)
    return main.post(f"/api/v1/instances/{name}", json=body)


def backend_pids(node: Node) -> set[int]:
    """The backends the node's process started (all its processes below it)."""
    return set(descendants(node.pid))


def delete_everywhere(main: httpx.Client, name: str) -> None:
    main.post(f"/api/v1/instances/{name}/stop")
    assert main.delete(f"/api/v1/instances/{name}").status_code == 204


# -- one agent --------------------------------------------------------------------------


def test_an_instance_on_an_agent_runs_there_and_is_served_through_main(
    cluster: Cluster, main: httpx.Client
) -> None:
    gpu1, main_node = cluster.nodes["gpu1"], cluster.nodes["main"]
    created = create(main, "far", ["gpu1"])
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["node"], body["status"], body["pid"]) == ("gpu1", "stopped", None)
    assert body["options"]["nodes"] == ["gpu1"]
    there = on(gpu1, "/api/v1/instances/far")
    assert there.status_code == 200 and there.json()["node"] == "gpu1"

    client = openai_client(main_node)
    answer = client.chat.completions.create(
        model="far", messages=[{"role": "user", "content": "hello"}]
    )
    assert answer.choices[0].message.content
    pid = on(gpu1, "/api/v1/instances/far").json()["pid"]
    assert pid in backend_pids(gpu1)
    assert backend_pids(main_node) == set()
    listed = main.get("/api/v1/instances/far").json()
    assert (listed["status"], listed["readiness"], listed["pid"]) == ("running", "ready", None)
    assert listed["copies"][0]["pid"] == pid

    stream = client.chat.completions.create(
        model="far", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len([piece for piece in pieces if piece]) >= 2

    logs = main.get("/api/v1/instances/far/logs", params={"lines": "50"})
    assert logs.status_code == 200
    assert logs.text == on(gpu1, "/api/v1/instances/far/logs?lines=50").text
    assert logs.text.strip()
    with main.stream("GET", "/api/v1/instances/far/logs/follow", params={"lines": "5"}) as follow:
        assert follow.status_code == 200
        assert follow.headers["content-type"].startswith("text/event-stream")
        first = next(follow.iter_lines())
        assert first == "event: log"

    for path in ("/llama-cpp/far/health", "/api/v1/instances/far/proxy/health"):
        relayed = main.get(path)  # the node's own routes, on the node's copy
        assert (relayed.status_code, relayed.json()) == (200, {"status": "ok"}), path
    models = {model.id: model for model in client.models.list()}
    assert models["far"].model_extra == {"status": "running", "ready": True, "node": "gpu1"}

    stopped = main.post("/api/v1/instances/far/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert on(gpu1, "/api/v1/instances/far").json()["status"] == "stopped"
    assert main.delete("/api/v1/instances/far").status_code == 204
    assert on(gpu1, "/api/v1/instances/far").status_code == 404
    assert main.get("/api/v1/instances/far").status_code == 404


def test_an_unknown_node_is_refused_naming_it_and_the_configured_ones(
    cluster: Cluster, main: httpx.Client
) -> None:
    refused = create(main, "lost", ["gpu9"])
    assert refused.status_code == 400, refused.text
    message = refused.json()["error"]["message"]
    assert "node gpu9 not found" in message
    assert "main (this one), gpu1, gpu2" in message
    assert main.get("/api/v1/instances/lost").status_code == 404
    for agent in ("gpu1", "gpu2"):
        assert on(cluster.nodes[agent], "/api/v1/instances/lost").status_code == 404


def test_the_nodes_are_listed_with_their_health(cluster: Cluster, main: httpx.Client) -> None:
    def healthy() -> bool:
        nodes = main.get("/api/v1/nodes").json()
        return all(nodes[name]["status"] == "healthy" for name in ("gpu1", "gpu2"))

    eventually(healthy, "both agents checked healthy")
    nodes = main.get("/api/v1/nodes").json()
    assert list(nodes) == ["gpu1", "gpu2", "main"]
    gpu1 = nodes["gpu1"]
    assert gpu1["address"] == cluster.nodes["gpu1"].url and gpu1["local"] is False
    assert gpu1["version"] and gpu1["error"] is None and gpu1["rtt_ms"] > 0
    assert gpu1["max_running_instances"] == -1
    one = main.get("/api/v1/nodes/gpu2")
    assert one.status_code == 200 and one.json()["status"] == "healthy"


def test_the_client_key_stays_on_main_and_the_agent_gets_its_own(
    cluster: Cluster, main: httpx.Client
) -> None:
    main_node, gpu1 = cluster.nodes["main"], cluster.nodes["gpu1"]
    assert create(main, "keyed", ["gpu1"]).status_code == 201
    try:
        own = openai.OpenAI(
            base_url=f"{gpu1.url}/v1", api_key=main_node.inference_key, max_retries=0
        )
        with pytest.raises(openai.AuthenticationError):  # gpu1 does not know main's keys
            own.models.list()
        client = openai.OpenAI(
            base_url=f"{main_node.url}/v1", api_key=main_node.inference_key, max_retries=0
        )
        assert ask(client, "keyed")
        wrong = openai.OpenAI(base_url=f"{main_node.url}/v1", api_key=gpu1.key, max_retries=0)
        with pytest.raises(openai.AuthenticationError):  # main checks the key itself
            ask(wrong, "keyed")
    finally:
        delete_everywhere(main, "keyed")


def test_following_a_remote_instance_does_not_hold_up_a_stop_of_main(
    cluster: Cluster, main: httpx.Client
) -> None:
    assert create(main, "followed", ["gpu2"]).status_code == 201
    try:
        with main.stream("GET", "/api/v1/instances/followed/logs/follow") as follow:
            lines = follow.iter_lines()
            assert next(lines) == "event: log"
            began = time.monotonic()
            cluster.stop("main")  # the relayed stream ends with the others
            took = time.monotonic() - began
        assert took < 5  # well within the 10 s a stop gives open requests
    finally:
        cluster.restart("main")
        with cluster.nodes["main"].client() as again:
            assert again.delete("/api/v1/instances/followed").status_code == 204


def test_a_client_that_goes_away_cancels_the_request_on_the_agent(
    cluster: Cluster, main: httpx.Client, tmp_path: Path
) -> None:
    log = tmp_path / "requests.jsonl"
    slow = {
        "FAKE_LLAMA_REQUEST_LOG": str(log),
        "FAKE_LLAMA_STREAM_CHUNKS": "200",
        "FAKE_LLAMA_STREAM_INTERVAL": "0.05",
    }
    assert create(main, "slow", ["gpu1"], environment=slow).status_code == 201
    try:
        body = {"model": "slow", "messages": [{"role": "user", "content": "x"}], "stream": True}
        with main.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            assert next(response.iter_raw())  # the first event has come through both hops

        def disconnected() -> bool:
            records = [json.loads(line) for line in log.read_text().splitlines()]
            return any(record.get("event") == "client_disconnected" for record in records)

        eventually(disconnected, "the agent's backend to see the request end")
    finally:
        delete_everywhere(main, "slow")


# -- several agents ---------------------------------------------------------------------


def test_an_instance_on_two_agents_is_served_by_the_warm_one(
    cluster: Cluster, main: httpx.Client
) -> None:
    created = create(main, "twin", ["gpu1", "gpu2"])
    assert created.status_code == 201, created.text
    try:
        gpu1, gpu2 = cluster.nodes["gpu1"], cluster.nodes["gpu2"]
        for agent in (gpu1, gpu2):
            assert on(agent, "/api/v1/instances/twin").json()["status"] == "stopped"
        with gpu2.client() as direct:
            started = direct.post("/api/v1/instances/twin/start", params={"wait": "true"})
            assert started.status_code == 200, started.text
        eventually(
            lambda: main.get("/api/v1/instances/twin").json()["readiness"] == "ready",
            "main to see twin ready on gpu2",
        )
        client = openai_client(cluster.nodes["main"])
        for _ in range(3):
            ask(client, "twin")
        assert on(gpu1, "/api/v1/instances/twin").json()["status"] == "stopped"
        shown = main.get("/api/v1/instances/twin").json()
        assert shown["node"] == "gpu2"
        assert [(copy["node"], copy["status"]) for copy in shown["copies"]] == [
            ("gpu1", "stopped"),
            ("gpu2", "running"),
        ]
    finally:
        delete_everywhere(main, "twin")


def test_with_an_agent_killed_requests_go_to_the_other_and_it_comes_back(
    cluster: Cluster, main: httpx.Client
) -> None:
    assert create(main, "spare", ["gpu1", "gpu2"]).status_code == 201
    gpu1, gpu2 = cluster.nodes["gpu1"], cluster.nodes["gpu2"]
    try:
        with gpu1.client() as direct:
            assert direct.post("/api/v1/instances/spare/start", params={"wait": "true"})
        cluster.kill("gpu1")
        client = openai_client(cluster.nodes["main"])
        began = time.monotonic()
        assert ask(client, "spare")
        assert time.monotonic() - began < 15
        assert on(gpu2, "/api/v1/instances/spare").json()["status"] == "running"

        listed = main.get("/api/v1/instances")
        assert listed.status_code == 200
        spare = next(body for body in listed.json() if body["name"] == "spare")
        copies = {copy["node"]: copy for copy in spare["copies"]}
        assert copies["gpu1"]["node_status"] == "unreachable"
        assert copies["gpu2"]["node_status"] == "healthy"
        assert main.get("/api/v1/nodes").json()["gpu1"]["status"] == "unreachable"

        cluster.restart("gpu1")
        eventually(
            lambda: main.get("/api/v1/nodes").json()["gpu1"]["status"] == "healthy",
            "main to see gpu1 healthy again",
        )
    finally:
        delete_everywhere(main, "spare")


def test_a_remote_instance_never_gets_a_pid_on_main_by_any_route(
    cluster: Cluster, main: httpx.Client
) -> None:
    main_node = cluster.nodes["main"]
    assert create(main, "never", ["gpu2"], auto_restart=True).status_code == 201
    try:
        routes = [
            lambda: main.post("/api/v1/instances/never/start"),
            lambda: main.post("/api/v1/instances/never/restart"),
            lambda: main.put(
                "/api/v1/instances/never", json=fake_options(nodes=["gpu2"], on_demand_start=True)
            ),
            lambda: ask(openai_client(main_node), "never"),
        ]
        for route in routes:
            route()
            assert backend_pids(main_node) == set()
        assert on(cluster.nodes["gpu2"], "/api/v1/instances/never").json()["status"] == "running"
        eventually(
            lambda: main.get("/api/v1/instances/never").json()["status"] == "running",
            "main to keep never's status running (a boot would resume it)",
        )
        cluster.stop("main")
        cluster.restart("main")  # boot: a local instance stored running would start here
        assert main.get("/api/v1/instances/never").json()["status"] == "running"
        assert backend_pids(main_node) == set()
        assert "never" in on(cluster.nodes["gpu2"], "/api/v1/instances").text
    finally:
        delete_everywhere(main, "never")


def test_an_instance_on_main_and_an_agent_is_defined_on_both_and_served_where_ready(
    cluster: Cluster, main: httpx.Client
) -> None:
    main_node, gpu1 = cluster.nodes["main"], cluster.nodes["gpu1"]
    created = create(main, "both", ["gpu1", "main"])
    assert created.status_code == 201, created.text
    try:
        assert created.json()["node"] == "main"
        there = on(gpu1, "/api/v1/instances/both").json()
        assert (there["options"]["nodes"], there["status"]) == (["gpu1"], "stopped")

        assert ask(openai_client(main_node), "both")  # neither ready: main has room, starts here
        assert len(backend_pids(main_node)) == 1
        assert on(gpu1, "/api/v1/instances/both").json()["status"] == "stopped"

        stopped = main.post("/api/v1/instances/both/stop")
        assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
        eventually(lambda: backend_pids(main_node) == set(), "main's backend to end")
        with gpu1.client() as direct:
            assert direct.post("/api/v1/instances/both/start", params={"wait": "true"})

        def gpu1_ready() -> bool:
            copies = main.get("/api/v1/instances/both").json()["copies"]
            return [(copy["node"], copy["readiness"]) for copy in copies] == [
                ("main", None),
                ("gpu1", "ready"),
            ]

        eventually(gpu1_ready, "main to see both ready on gpu1")
        assert ask(openai_client(main_node), "both")  # ready on gpu1 only: served there
        assert backend_pids(main_node) == set()

        assert main.post("/api/v1/instances/both/stop").status_code == 200
        assert on(gpu1, "/api/v1/instances/both").json()["status"] == "stopped"
    finally:
        delete_everywhere(main, "both")
    assert on(gpu1, "/api/v1/instances/both").status_code == 404

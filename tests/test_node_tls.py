"""A node at an https address: management calls and relayed inference speak TLS.

The agent ``secure`` is plain HTTP behind a TLS front with a self-signed certificate;
``main`` lists it twice: as ``secure``, trusting that certificate (``ca_file``), and as
``untrusted``, with the system's trust store only.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.support.cluster import Cluster
from tests.support.config import fake_options
from tests.support.tls import TlsFront, self_signed
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(root)
    nodes = Cluster(root)
    agent = nodes.add("secure")
    front = TlsFront(agent.port, cert, key)
    address = f"https://127.0.0.1:{front.port}"
    main = nodes.add("main", {"secure": "secure", "untrusted": "secure"})
    main.instead = {
        "secure": {"address": address, "ca_file": str(cert)},
        "untrusted": {"address": address},
    }
    try:
        with nodes:
            yield nodes
    finally:
        front.close()


def test_an_instance_behind_tls_is_managed_and_served_through_main(cluster: Cluster) -> None:
    main, agent = cluster.nodes["main"], cluster.nodes["secure"]
    with main.client() as api:
        created = api.post(
            "/api/v1/instances/sealed", json=fake_options(nodes=["secure"], on_demand_start=True)
        )
        assert created.status_code == 201, created.text
        try:
            client = openai.OpenAI(base_url=f"{main.url}/v1", api_key=main.key, max_retries=0)
            answer = client.chat.completions.create(
                model="sealed", messages=[{"role": "user", "content": "x"}]
            )
            assert answer.choices[0].message.content
            stream = client.chat.completions.create(
                model="sealed", messages=[{"role": "user", "content": "x"}], stream=True
            )
            assert [chunk for chunk in stream if chunk.choices]
            with agent.client() as direct:
                assert direct.get("/api/v1/instances/sealed").json()["status"] == "running"
            eventually(
                lambda: api.get("/api/v1/nodes").json()["secure"]["status"] == "healthy",
                "main to check secure healthy over TLS",
            )
        finally:
            api.post("/api/v1/instances/sealed/stop")
            assert api.delete("/api/v1/instances/sealed").status_code == 204


def test_a_certificate_not_trusted_leaves_the_node_unreachable_saying_why(
    cluster: Cluster,
) -> None:
    with cluster.nodes["main"].client() as api:
        eventually(
            lambda: api.get("/api/v1/nodes").json()["untrusted"]["status"] == "unreachable",
            "main to find untrusted's certificate not trusted",
        )
        error = api.get("/api/v1/nodes").json()["untrusted"]["error"]
        assert "CERTIFICATE_VERIFY_FAILED" in error or "certificate" in error.lower()
        refused = api.post("/api/v1/instances/nope", json=fake_options(nodes=["untrusted"]))
        assert refused.status_code == 503, refused.text
        assert "node untrusted" in refused.json()["error"]["message"]
        assert httpx.get(f"{cluster.nodes['secure'].url}/healthz").status_code == 200

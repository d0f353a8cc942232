"""``llamactl nodes`` and the NODE column of ``instances list``, against real nodes.

``main`` lists three other llamactl processes (``tests.support.cluster``): ``gpu1``,
healthy; ``gpu2``, given a key it refuses; ``gpu3``, killed by the test that needs a node
that is down. The commands talk to main.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from llamactl.cli.exits import ExitCode
from tests.support.cli import Server, create, invoke
from tests.support.cluster import Cluster
from tests.support.net import free_port
from tests.support.waiting import eventually


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("cli-cluster"))
    agents = {"gpu1": "gpu1", "gpu2": "gpu2", "gpu3": "gpu3"}
    nodes.add("main", agents, wrong_keys=frozenset({"gpu2"}))
    for agent in agents:
        nodes.add(agent)
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.close()


@pytest.fixture(scope="module")
def main(cluster: Cluster) -> Server:
    node = cluster.nodes["main"]
    return Server(node.url, node.key, node.folder / "data")


def api_nodes(main: Server, path: str = "") -> dict[str, object]:
    headers = {"Authorization": f"Bearer {main.key}"}
    answer = httpx.get(f"{main.url}/api/v1/nodes{path}", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert isinstance(body, dict)
    return body


def node_status(main: Server, name: str) -> object:
    node = api_nodes(main)[name]
    assert isinstance(node, dict)
    return node["status"]


def wait_for_checks(main: Server) -> None:
    eventually(
        lambda: (
            (node_status(main, "gpu1"), node_status(main, "gpu2")) == ("healthy", "unauthorized")
        ),
        "main to check gpu1 (healthy) and gpu2 (unauthorized)",
    )


def rows_by_name(stdout: str) -> tuple[str, dict[str, str]]:
    header, *rows = stdout.splitlines()
    return header, {row.split()[0]: row for row in rows}


def cell(header: str, row: str, heading: str) -> str:
    """The cell under ``heading`` (its first word, cells being split on spaces)."""
    return row[header.index(heading) :].split()[0]


def test_nodes_lists_every_node_this_one_first(cluster: Cluster, main: Server) -> None:
    wait_for_checks(main)
    shown = main.run("nodes")
    assert shown.exit_code == ExitCode.OK, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].split() == [
        "NAME", "ADDRESS", "STATUS", "LATENCY", "MS", "VERSION", "RUNNING", "INSTANCES", "ERROR"
    ]  # fmt: skip
    assert all(line == line.rstrip() for line in lines)
    assert [line.split()[0] for line in lines[1:]] == ["main", "gpu1", "gpu2", "gpu3"]
    header, rows = rows_by_name(shown.stdout)

    here = rows["main"]
    assert here.split()[1:3] == ["local", "healthy"]
    assert cell(header, here, "LATENCY MS") == "-"
    assert cell(header, here, "RUNNING") == "0/unlimited"
    assert here.endswith("-")  # no error

    gpu1, api_gpu1 = rows["gpu1"], api_nodes(main)["gpu1"]
    assert isinstance(api_gpu1, dict)
    assert gpu1.split()[1:4] == ["remote", cluster.nodes["gpu1"].url, "healthy"]
    assert float(cell(header, gpu1, "LATENCY MS")) > 0
    assert cell(header, gpu1, "VERSION") == api_gpu1["version"]
    assert cell(header, gpu1, "RUNNING") == "0/unlimited"
    assert cell(header, gpu1, "INSTANCES") == "0"

    gpu2 = rows["gpu2"]
    assert cell(header, gpu2, "STATUS") == "unauthorized"
    assert cell(header, gpu2, "VERSION") == "-"
    api_gpu2 = api_nodes(main)["gpu2"]
    assert isinstance(api_gpu2, dict) and isinstance(api_gpu2["error"], str)
    assert gpu2[header.index("ERROR") :] == " ".join(api_gpu2["error"].split())


def test_nodes_json_is_the_servers(main: Server) -> None:
    wait_for_checks(main)
    as_json = main.run("nodes", "--json")
    assert as_json.exit_code == ExitCode.OK, as_json.output
    assert as_json.stdout.startswith("{\n  ")  # indented for reading
    printed, served = json.loads(as_json.stdout), api_nodes(main)
    assert list(printed) == list(served) == ["gpu1", "gpu2", "gpu3", "main"]
    for name, body in printed.items():
        # When each node was checked and its round trip move with every background check
        # (and the local node's checked_at is the time of the request); the rest stays.
        moving = {"checked_at": None, "rtt_ms": None}
        assert {**body, **moving} == {**served[name], **moving}


def test_one_node_is_checked_and_shown_field_by_field(cluster: Cluster, main: Server) -> None:
    shown = main.run("nodes", "gpu1")
    assert shown.exit_code == ExitCode.OK, shown.output
    fields = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert fields["name"] == "gpu1"
    assert fields["address"] == cluster.nodes["gpu1"].url
    assert (fields["local"], fields["status"], fields["error"]) == ("false", "healthy", "-")
    assert float(fields["rtt_ms"]) > 0
    assert fields["max_running_instances"] == "-1"
    assert fields["checked_at"][:4].isdigit()  # a date, not a number of seconds

    as_json = main.run("nodes", "gpu2", "--json")
    assert as_json.exit_code == ExitCode.OK, as_json.output
    assert json.loads(as_json.stdout)["status"] == "unauthorized"


def test_an_unknown_node_fails_naming_the_configured_ones(main: Server) -> None:
    unknown = main.run("nodes", "gpu9")
    assert unknown.exit_code == ExitCode.ERROR, unknown.output
    assert unknown.stdout == ""
    assert unknown.stderr.strip() == (
        "llamactl: node not found: gpu9 (configured: gpu1, gpu2, gpu3, main)"
    )


def test_nodes_of_a_server_that_cannot_be_reached() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["nodes"], ["nodes", "gpu1"]):
        result = invoke(*args, "--url", url, "--api-key", "k")
        assert result.exit_code == ExitCode.UNREACHABLE, result.output
        assert result.stderr.startswith(f"llamactl: cannot reach llamactl at {url}")
        assert "is the server running?" in result.stderr


def test_instances_list_names_the_node_and_marks_one_that_is_down(
    cluster: Cluster, main: Server
) -> None:
    create(main, "near")
    create(main, "far", "--set", 'nodes=["gpu3"]')
    try:
        listed = main.run("instances", "list")
        assert listed.exit_code == ExitCode.OK, listed.output
        header, rows = rows_by_name(listed.stdout)
        assert cell(header, rows["near"], "NODE") == "main"
        assert rows["far"][header.index("NODE") :].split()[:2] == ["gpu3", "-"]

        cluster.kill("gpu3")
        try:
            eventually(lambda: node_status(main, "gpu3") == "unreachable", "gpu3 to be down")
            listed = main.run("instances", "list")
            assert listed.exit_code == ExitCode.OK, listed.output
            header, rows = rows_by_name(listed.stdout)
            assert rows["far"][header.index("NODE") :].split()[:2] == ["gpu3", "(unreachable)"]
            assert cell(header, rows["near"], "NODE") == "main"

            table = main.run("nodes")
            header, rows = rows_by_name(table.stdout)
            assert cell(header, rows["gpu3"], "STATUS") == "unreachable"
            assert cell(header, rows["gpu3"], "LATENCY MS") == "-"  # not its last good one
            down = main.run("nodes", "gpu3")  # reported, not a failure of the command
            assert down.exit_code == ExitCode.OK, down.output
            fields = dict(line.split(None, 1) for line in down.stdout.splitlines())
            assert fields["status"] == "unreachable" and fields["error"] != "-"
        finally:
            cluster.restart("gpu3")
        eventually(lambda: node_status(main, "gpu3") == "healthy", "gpu3 to be back")
    finally:
        for name in ("near", "far"):
            deleted = main.run("instances", "delete", name, "--yes")
            assert deleted.exit_code == ExitCode.OK, deleted.output

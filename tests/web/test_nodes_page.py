"""The dashboard of a llamactl with another node: the Nodes page, the node column and
filter of the list, and the form's choice of node.

``main``, whose dashboard the browser opens, lists ``gpu1``; both are real llamactl
processes (``tests/support/cluster.py``) over the fake llama-server, and what gpu1 did is
read from its own API. A test that stops gpu1 starts it again before it ends. Waits are
Playwright's own (``expect``) or polling of the other processes (``eventually``), never
sleeps.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.cluster import Cluster, Node
from tests.support.config import fake_options
from tests.support.dashboard import READY_TIMEOUT, log_in, open_dashboard, row
from tests.support.layout import action, assert_inside_viewport, assert_no_horizontal_overflow
from tests.support.waiting import eventually
from tests.support.web import SKIP_REASON, Server

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

sync_api = pytest.importorskip("playwright.sync_api", reason=SKIP_REASON)
expect = sync_api.expect

DOWN_TIMEOUT = 15_000  # ms: nodes are checked every 300 ms, the page polls every 2 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nodes = Cluster(tmp_path_factory.mktemp("web-nodes"))
    nodes.add("main", {"gpu1": "gpu1"})
    nodes.add("gpu1")
    nodes.start()
    try:
        wait_node_status(nodes.nodes["main"], "gpu1", "healthy")
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def main(cluster: Cluster) -> Node:
    return cluster.nodes["main"]


@pytest.fixture
def gpu1(cluster: Cluster) -> Node:
    return cluster.nodes["gpu1"]


def get(node: Node, path: str) -> httpx.Response:
    with node.client() as client:
        return client.get(f"/api/v1/{path}")


def wait_node_status(node: Node, name: str, status: str) -> None:
    eventually(
        lambda: get(node, "nodes").json()[name]["status"] == status,
        f"{node.name} to see {name} {status}",
    )


def version(node: Node) -> str:
    text = get(node, "version").text
    return text.splitlines()[0].removeprefix("Version:").strip()


def create_on(main: Node, name: str, nodes: list[str]) -> None:
    with main.client() as client:
        created = client.post(f"/api/v1/instances/{name}", json=fake_options(nodes=nodes))
    assert created.status_code == 201, created.text


def remove(main: Node, name: str) -> None:
    """Stop and delete ``name`` through main (on every node it is defined on)."""
    with main.client() as client:
        client.post(f"/api/v1/instances/{name}/stop")
        deleted = client.delete(f"/api/v1/instances/{name}")
    assert deleted.status_code in (204, 404), deleted.text


def log_in_to(page: Page, node: Node) -> None:
    open_dashboard(page, f"{node.url}/")
    page.fill("#login-key", node.key)
    page.click("#login-submit")
    expect(page.locator("#view-instances")).to_be_visible()


def node_row(page: Page, name: str) -> Locator:
    return page.locator(f'#nodes-body tr[data-node="{name}"]')


def test_the_nodes_page_lists_both_nodes_healthy_with_their_latency(
    page: Page, main: Node, gpu1: Node, screenshots: Path
) -> None:
    create_on(main, "near", [])
    create_on(main, "far", ["gpu1"])
    try:
        log_in_to(page, main)
        page.locator('#nav a[data-view="nodes"]').click()
        expect(page.locator("#view-nodes")).to_be_visible()
        expect(page.locator("#nodes-body tr")).to_have_count(2)
        expect(page.locator("#nodes-body tr").first).to_have_attribute("data-node", "main")

        here = node_row(page, "main")
        expect(here.locator(".col-where")).to_have_text("Localthis llamactl")
        expect(here.locator(".col-status .badge")).to_have_text("healthy")
        expect(here.locator(".col-latency")).to_have_text("—")
        expect(here.locator(".col-version")).to_have_text(version(main))
        expect(here.locator(".col-running .running")).to_have_text("0 / no limit")
        expect(here.locator(".col-running .count")).to_have_text("of 1 instance")
        expect(here.locator(".col-runs .run")).to_have_text(["nearstopped"])
        expect(here.locator(".act-check")).to_be_hidden()

        there = node_row(page, "gpu1")
        expect(there.locator(".col-where .where")).to_have_text("Remote")
        expect(there.locator(".col-where .address")).to_have_text(gpu1.url)
        expect(there.locator(".col-status .badge")).to_have_text("healthy")
        expect(there.locator(".col-status .node-error")).to_be_hidden()
        expect(there.locator(".col-latency")).to_have_text(re.compile(r"^\d+(\.\d)? ms$"))
        expect(there.locator(".col-version")).to_have_text(version(gpu1))
        expect(there.locator(".col-running .running")).to_have_text("0 / no limit")
        expect(there.locator(".col-running .count")).to_have_text("of 1 instance")
        expect(there.locator(".col-runs .run")).to_have_text(["farstopped"])
        page.screenshot(path=screenshots / "nodes.png")

        there.locator(".act-check").click()
        expect(page.locator("#toasts")).to_contain_text("gpu1 is healthy.")

        # the list offers every node, and the form too
        page.locator('#nav a[data-view="instances"]').click()
        expect(page.locator("#node-filter-label")).to_be_visible()
        options = page.locator("#node-filter option")
        expect(options).to_have_text(["all nodes", "main (this node)", "gpu1"])
        expect(row(page, "near").locator(".col-node")).to_have_text("main")
        expect(row(page, "far").locator(".col-node")).to_have_text("gpu1")
        page.locator('#nav a[data-view="form"]').click()
        expect(page.locator("#f-node")).to_be_visible()
        expect(page.locator("#f-node option")).to_have_text(["main (this node)", "gpu1"])
        expect(page.locator("#f-node")).to_have_value("")
    finally:
        remove(main, "near")
        remove(main, "far")


def test_an_instance_created_with_the_remote_node_selected_lands_there(
    page: Page, main: Node, gpu1: Node
) -> None:
    try:
        log_in_to(page, main)
        page.click("#new-instance")
        expect(page.locator("#view-form")).to_be_visible()
        page.fill("#f-name", "far-form")
        page.fill("#b-llama_cpp-model", "/models/far.gguf")
        page.select_option("#f-node", "gpu1")
        with page.expect_request(lambda request: request.method == "POST") as sent:
            page.click("#form-submit")
        assert json.loads(sent.value.post_data or "{}")["nodes"] == ["gpu1"]
        expect(page.locator("#toasts")).to_contain_text("Created far-form.")

        there = get(gpu1, "instances/far-form")
        assert there.status_code == 200, there.text
        assert there.json()["node"] == "gpu1"
        assert there.json()["options"]["backend_options"]["model"] == "/models/far.gguf"
        here = get(main, "instances/far-form").json()
        assert (here["node"], here["options"]["nodes"], here["pid"]) == ("gpu1", ["gpu1"], None)

        far = row(page, "far-form")
        expect(page.locator("#instances-table th.col-node")).to_be_visible()
        expect(far.locator(".col-node")).to_have_text("gpu1")
        expect(far.locator(".col-node .node-marker")).to_have_count(0)

        far.locator(".act-start").click()
        expect(far.locator(".col-status")).to_have_text("running")
        expect(far.locator(".col-readiness")).to_have_text("ready", timeout=READY_TIMEOUT)
        assert get(gpu1, "instances/far-form").json()["status"] == "running"
        assert get(main, "instances/far-form").json()["pid"] is None  # gpu1's process

        # the filter: this node has none of it, gpu1 has it
        page.select_option("#node-filter", "main")
        expect(far).to_have_count(0)
        expect(page.locator("#instances-none-on")).to_have_text(re.compile("No instance on main"))
        page.select_option("#node-filter", "gpu1")
        expect(far).to_be_visible()
        expect(page.locator("#instances-none-on")).to_be_hidden()
        page.select_option("#node-filter", "")

        # what runs where
        page.locator('#nav a[data-view="nodes"]').click()
        runs = node_row(page, "gpu1").locator('.col-runs .run[data-instance="far-form"]')
        expect(runs).to_have_text("far-formrunning")
        expect(node_row(page, "gpu1").locator(".col-running .running")).to_have_text("1 / no limit")
        expect(node_row(page, "main").locator(".col-runs")).to_have_text("—")

        # an edit keeps the instance on gpu1
        page.locator('#nav a[data-view="instances"]').click()
        far.locator(".act-edit").click()
        expect(page.locator("#form-title")).to_have_text("Edit far-form")
        expect(page.locator("#f-node")).to_be_disabled()
        expect(page.locator("#f-node")).to_have_text("gpu1")
        expect(page.locator("#f-node-note")).to_be_visible()
        page.fill("#b-llama_cpp-ctx_size", "1024")
        with page.expect_request(lambda request: request.method == "PUT") as sent:
            page.click("#form-submit")
        assert "nodes" not in json.loads(sent.value.post_data or "{}")
        expect(page.locator("#toasts")).to_contain_text("Saved far-form")
        stored = get(gpu1, "instances/far-form").json()["options"]
        assert stored["backend_options"]["ctx_size"] == 1024
        assert get(main, "instances/far-form").json()["options"]["nodes"] == ["gpu1"]
    finally:
        remove(main, "far-form")
    assert get(gpu1, "instances/far-form").status_code == 404


def test_an_instance_created_on_this_node_sends_no_nodes(page: Page, main: Node) -> None:
    try:
        log_in_to(page, main)
        page.click("#new-instance")
        expect(page.locator("#f-node")).to_have_value("")
        page.fill("#f-name", "near-form")
        page.fill("#b-llama_cpp-model", "/models/near.gguf")
        with page.expect_request(lambda request: request.method == "POST") as sent:
            page.click("#form-submit")
        assert "nodes" not in json.loads(sent.value.post_data or "{}")
        expect(row(page, "near-form").locator(".col-node")).to_have_text("main")
        here = get(main, "instances/near-form").json()
        assert (here["node"], here["options"].get("nodes") or []) == ("main", [])
    finally:
        remove(main, "near-form")


def test_a_node_gone_from_the_configuration_is_refused_next_to_the_choice(
    page: Page, main: Node
) -> None:
    """As when the configuration lost a node after the form was opened."""
    log_in_to(page, main)
    page.click("#new-instance")
    expect(page.locator("#f-node option")).to_have_count(2)
    page.locator("#f-node").evaluate("select => select.append(new Option('gpu9', 'gpu9'))")
    page.fill("#f-name", "nowhere")
    page.fill("#b-llama_cpp-model", "/models/nowhere.gguf")
    page.select_option("#f-node", "gpu9")
    page.click("#form-submit")
    error = page.locator('.field[data-field="nodes"] .field-error')
    expect(error).to_contain_text("node gpu9 not found")
    expect(page.locator('.field[data-field="nodes"]')).to_have_class(re.compile(r"\bhas-error\b"))
    expect(page.locator("#f-name")).to_have_value("nowhere")  # what was typed is kept
    assert get(main, "instances/nowhere").status_code == 404


def test_a_stopped_node_shows_unreachable_and_marks_its_instances(
    page: Page, cluster: Cluster, main: Node, screenshots: Path
) -> None:
    create_on(main, "marooned", ["gpu1"])
    create_on(main, "homebound", [])
    try:
        log_in_to(page, main)
        marooned = row(page, "marooned")
        expect(marooned.locator(".col-node")).to_have_text("gpu1")
        expect(marooned.locator(".col-node .node-marker")).to_have_count(0)

        cluster.stop("gpu1")
        marker = marooned.locator(".col-node .node-marker")
        expect(marker).to_have_text("unreachable", timeout=DOWN_TIMEOUT)
        expect(marker).to_have_attribute("title", re.compile(r"^gpu1 is unreachable \(node gpu1"))
        expect(marooned).to_have_class(re.compile(r"\bstale\b"))
        expect(row(page, "homebound").locator(".col-node")).to_have_text("main")
        expect(row(page, "homebound")).not_to_have_class(re.compile(r"\bstale\b"))
        expect(page.locator("#node-filter option")).to_have_text(
            ["all nodes", "main (this node)", "gpu1 (unreachable)"]
        )
        expect(page.locator("#offline-banner")).to_be_hidden()  # this node answers
        page.screenshot(path=screenshots / "instance-on-unreachable-node.png")

        page.locator('#nav a[data-view="nodes"]').click()
        there = node_row(page, "gpu1")
        expect(there.locator(".col-status .badge")).to_have_text("unreachable")
        expect(there.locator(".col-status .node-error")).to_contain_text("cannot be reached")
        expect(there.locator(".col-latency")).to_have_text("—")
        expect(there.locator('.run[data-instance="marooned"] .node-marker')).to_have_text(
            "unreachable"
        )
        expect(node_row(page, "main").locator(".col-status .badge")).to_have_text("healthy")
        page.screenshot(path=screenshots / "node-unreachable.png")

        cluster.restart("gpu1")
        there.locator(".act-check").click()
        expect(page.locator("#toasts")).to_contain_text("gpu1 is healthy.")
        expect(there.locator(".col-status .badge")).to_have_text("healthy")
        page.locator('#nav a[data-view="instances"]').click()
        expect(marker).to_have_count(0, timeout=DOWN_TIMEOUT)
    finally:
        process = cluster.nodes["gpu1"].process
        if process is None or process.poll() is not None:
            cluster.restart("gpu1")
        wait_node_status(main, "gpu1", "healthy")
        remove(main, "marooned")
        remove(main, "homebound")


def test_the_node_column_and_the_nodes_page_at_every_width(sized_page: Page, main: Node) -> None:
    page = sized_page
    viewport = page.viewport_size
    assert viewport is not None
    width = viewport["width"]
    name = f"wide-model-name-q4-{width}"
    create_on(main, name, ["gpu1"])
    try:
        log_in_to(page, main)
        inst = row(page, name)
        expect(inst.locator(".col-node")).to_have_text("gpu1")
        assert_inside_viewport(page, inst.locator(".col-node"))
        assert_inside_viewport(page, page.locator("#node-filter"))
        assert_no_horizontal_overflow(page)
        action(page, inst, ".act-start").click()
        expect(inst.locator(".col-status")).to_have_text(re.compile("running"))
        action(page, inst, ".act-stop").click()
        expect(inst.locator(".col-status")).to_have_text(
            re.compile("stopped"), timeout=READY_TIMEOUT
        )

        page.locator('#nav a[data-view="nodes"]').click()
        there = node_row(page, "gpu1")
        expect(there.locator(f'.run[data-instance="{name}"]')).to_be_visible()
        assert_inside_viewport(page, there.locator(".act-check"))
        assert_no_horizontal_overflow(page)
        sideways = page.locator("#view-nodes .table-wrap").evaluate(
            "node => node.scrollWidth - node.clientWidth"
        )
        assert sideways <= 1, f"the node table scrolls sideways by {sideways} px"
    finally:
        remove(main, name)


def test_with_one_node_the_list_and_the_form_offer_no_node(page: Page, server: Server) -> None:
    created = server.api(
        "POST",
        "instances/alone",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/alone.gguf"}},
    )
    assert created.status_code == 201, created.text
    try:
        log_in(page, server)
        expect(row(page, "alone")).to_be_visible()
        expect(page.locator("#node-filter-label")).to_be_hidden()
        expect(page.locator("#instances-table th.col-node")).to_be_hidden()
        expect(row(page, "alone").locator(".col-node")).to_be_hidden()
        page.click("#new-instance")
        expect(page.locator("#view-form")).to_be_visible()
        expect(page.locator('.field[data-field="nodes"]')).to_be_hidden()

        page.locator('#nav a[data-view="nodes"]').click()
        expect(page.locator("#nodes-body tr")).to_have_count(1)
        here = page.locator("#nodes-body tr").first
        expect(here.locator(".col-where .where")).to_have_text("Local")
        expect(here.locator(".col-status .badge")).to_have_text("healthy")
        expect(here.locator(".col-runs")).to_have_text("alonestopped")
    finally:
        server.api("DELETE", "instances/alone")

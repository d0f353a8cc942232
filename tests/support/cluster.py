"""Several real llamactl processes on 127.0.0.1 that know each other as nodes.

Each node has its own folder (data, logs, ``llamactl.yaml``), port, management key and
port range for its backends (fake llama-servers). ``Cluster.start`` writes every node's
configuration from the names and what each lists, starts them and waits for each to
answer; ``kill``/``restart`` stop one hard and bring it back on the same port and data;
``close`` stops all (``with cluster:`` starts and stops it).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest
import yaml

from tests.support.config import FAKE_SERVER, SESSION_PORTS
from tests.support.net import free_port
from tests.support.server_process import STARTUP_SECONDS, environment

__all__ = ["Cluster", "Node"]

# Each node's backends get twenty ports of their own, from the session's hundred.
_RANGE_SIZE = 20


@dataclass
class Node:
    """One llamactl of the cluster."""

    name: str
    folder: Path
    port: int
    key: str
    first_backend_port: int
    lists: Mapping[str, str]  # the other nodes it knows: name -> name in its config
    local_node: str = ""
    wrong_keys: frozenset[str] = frozenset()  # of those, the ones given a key they refuse
    # Settings to use for some of those instead (``address``, ``ca_file``).
    instead: dict[str, dict[str, str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # variables of its own (LLAMACTL_*)
    process: subprocess.Popen[bytes] | None = None
    output: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def inference_key(self) -> str:
        """A key for ``/v1`` that only this node knows."""
        return f"sk-node-{self.name}-inference"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return (self.folder / "output.log").read_text(errors="replace")


class Cluster:
    """Nodes by name; see the module docstring."""

    def __init__(self, root: Path, base_port: int = SESSION_PORTS) -> None:
        self.root = root
        self.nodes: dict[str, Node] = {}
        self._next_range = base_port

    def add(
        self,
        name: str,
        lists: Mapping[str, str] | None = None,
        local_node: str = "",
        wrong_keys: frozenset[str] = frozenset(),
    ) -> Node:
        """A node called ``name`` (its ``local_node``, unless given) that lists the nodes
        ``lists`` maps: its name for each -> the node of this cluster it points to (with
        that node's key, or one it refuses for the names in ``wrong_keys``)."""
        folder = self.root / name
        (folder / "home").mkdir(parents=True)
        node = Node(
            name=name,
            folder=folder,
            port=free_port(),
            key=f"sk-node-{name}-management",
            first_backend_port=self._next_range,
            lists=dict(lists or {}),
            local_node=local_node or name,
            wrong_keys=wrong_keys,
        )
        self._next_range += _RANGE_SIZE
        self.nodes[name] = node
        return node

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self, **environ: str) -> None:
        for node in self.nodes.values():
            self._write_config(node)
        for node in self.nodes.values():
            self._launch(node, environ)
        for node in self.nodes.values():
            self.wait_up(node)

    def _write_config(self, node: Node) -> None:
        first = node.first_backend_port
        document = {
            "server": {"host": "127.0.0.1", "port": node.port},
            "data_dir": str(node.folder / "data"),
            "local_node": node.local_node,
            "node_check_interval": "300ms",
            "node_connect_timeout": "1s",
            "auth": {
                "management_keys": [node.key],
                "inference_keys": [node.inference_key],
                "require_inference_auth": True,
            },
            "backends": {"llama-cpp": {"command": sys.executable, "args": [str(FAKE_SERVER)]}},
            "instances": {"port_range": [first, first + _RANGE_SIZE - 1]},
            "nodes": {
                listed: {
                    "address": self.nodes[target].url,
                    "api_key": self._key(node, listed),
                    **node.instead.get(listed, {}),
                }
                for listed, target in node.lists.items()
            },
        }
        (node.folder / "llamactl.yaml").write_text(yaml.safe_dump(document))

    def _key(self, node: Node, listed: str) -> str:
        return "sk-refused" if listed in node.wrong_keys else self.nodes[node.lists[listed]].key

    def _launch(self, node: Node, environ: Mapping[str, str]) -> None:
        env = environment(node.folder / "home", **{**environ, **node.env})
        env.pop("LLAMACTL_HOST", None)
        env["LLAMACTL_CONFIG_PATH"] = str(node.folder / "llamactl.yaml")
        if node.output is not None:
            node.output.close()
        node.output = (node.folder / "output.log").open("ab")
        node.process = subprocess.Popen(
            [sys.executable, "-m", "llamactl"],
            cwd=node.folder,
            env=env,
            stdout=node.output,
            stderr=subprocess.STDOUT,
        )

    def wait_up(self, node: Node) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert node.process is not None
            if node.process.poll() is not None:
                pytest.fail(f"node {node.name} exited:\n{node.log()}")
            try:
                if httpx.get(f"{node.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"node {node.name} did not answer /healthz in time:\n{node.log()}")

    def kill(self, name: str) -> None:
        """``kill -9`` the node (its backends die with it: they watch their parent)."""
        node = self.nodes[name]
        assert node.process is not None
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=10)

    def rekey(self, name: str, key: str) -> None:
        """Give the node a new management key and have it reload its configuration
        (SIGHUP); the nodes that list it keep the key they were started with."""
        node = self.nodes[name]
        node.key = key
        self._write_config(node)
        assert node.process is not None
        node.process.send_signal(signal.SIGHUP)

    def stop(self, name: str) -> None:
        """Stop the node as a user would (SIGTERM), and wait for it to end."""
        node = self.nodes[name]
        assert node.process is not None
        node.process.send_signal(signal.SIGTERM)
        node.process.wait(timeout=20)

    def restart(self, name: str) -> None:
        node = self.nodes[name]
        self._launch(node, {})
        self.wait_up(node)

    def close(self) -> None:
        for node in self.nodes.values():
            if node.process is not None and node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes.values():
            if node.process is not None:
                try:
                    node.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()
            if node.output is not None:
                node.output.close()

"""``llamactl nodes [NAME]``: the llamactl nodes a running server knows, and how each is.

Without NAME, every node as the server last checked it (``GET /api/v1/nodes``): one line
each, this node first (``tables``). With NAME, that node, checked now
(``GET /api/v1/nodes/NAME``); a name the server does not know fails through ``exits``
like an unknown instance. ``--json`` prints the server's JSON. A node that is down or
refuses its key is what the command reports, not a failure of the command: it exits 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from llamactl.cli.connection import client, connection_options
from llamactl.cli.exits import reports_failures
from llamactl.cli.messages import describe_client_failure
from llamactl.cli.output import echo_lines, json_option, print_json

if TYPE_CHECKING:
    from llamactl.client import ApiClient, JsonObject

__all__ = ["nodes_command"]


def _fetch(api: ApiClient, name: str | None) -> JsonObject:
    """``GET /nodes`` or ``GET /nodes/NAME``."""
    return api.nodes() if name is None else api.node(name)


@click.command("nodes")
@click.argument("name", required=False)
@connection_options
@json_option
@reports_failures(describe_client_failure)
def nodes_command(name: str | None, url: str | None, api_key: str | None, as_json: bool) -> None:
    """List the nodes of a running server: address, health, latency, version, load.

    With NAME, show that node, checked now. Exit codes: 0 done (also for a node that is
    down), 1 error from the server (an unknown node), 2 usage error, 3 server unreachable.
    """
    from llamactl.cli.tables import node_lines, nodes_lines

    with client(url, api_key) as api:
        body = _fetch(api, name)
    if as_json:
        print_json(body)
    elif name is not None:
        echo_lines(node_lines(name, body))
    else:
        nodes = {key: value for key, value in body.items() if isinstance(value, dict)}
        echo_lines(nodes_lines(nodes))

"""A reliability drill: generated requests against every documented management operation.

Schemathesis reads ``/openapi.json`` from the whole application (``create_app``) running
in-process over real services (a file database, a manager whose llama.cpp backend is the
fake llama-server, management keys required) and sends a bounded number of generated
requests to each operation: schema-valid and schema-violating ones, most with the
management key and some without, and for per-instance routes many aimed at instances that
exist. Every response must come from a documented status code, carry the documented
content type and match the documented schema, and no request may end in a server error.
Examples are derandomized so that a run is reproducible.

The one 5xx allowed is 502 ``backend_failed``: it reports that the configured backend
executable failed (the fake llama-server knows no ``--help``; a start with generated
options may exit at once), which is the API doing its job, not a fault of the API.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.failures import FailureGroup
from schemathesis.python import asgi
from schemathesis.specs.openapi import checks

from llamactl import auth
from llamactl.database import DatabaseSettings
from llamactl.manager import InstanceManager
from llamactl.server.app import create_app
from tests.support.config import fake_config, fake_options
from tests.support.services import build_services, migrated

MANAGEMENT_KEY = "sk-drill-management"
AUTHORIZED = {"Authorization": f"Bearer {MANAGEMENT_KEY}"}
# Instances that exist whenever an operation's drill begins: per-instance routes aim at
# them, at generated valid names (new ones, mostly) and at anything the schema allows.
SEEDED = ("drill-a", "drill-b")
VALID_NAMES = st.from_regex(r"\A[a-z0-9][a-z0-9_.-]{0,15}\Z")
BACKENDS = ("llama-cpp", "mlx", "vllm")
MAX_EXAMPLES = 25
REQUEST_TIMEOUT = 15.0  # seconds; a hung request fails the drill instead of stalling it
BUDGET = 60.0  # seconds for the whole drill


def no_server_error(
    _ctx: schemathesis.CheckContext, response: schemathesis.Response, _case: schemathesis.Case
) -> None:
    """No 5xx, except a 502 that reports a failed backend in the management shape."""
    if response.status_code < 500:
        return
    if response.status_code == 502:
        body = response.json()
        if isinstance(body, dict) and body.get("error", {}).get("code") == "backend_failed":
            return
    raise AssertionError(f"server error {response.status_code}: {response.text[:2000]}")


CHECKS = [
    no_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@dataclass
class Drill:
    schema: schemathesis.BaseSchema
    manager: InstanceManager

    def seed(self) -> None:
        """Create each seeded instance that is missing (an earlier example deleted it)."""
        create = self.schema["/api/v1/instances/{name}"]["POST"]
        for name in SEEDED:
            if name in {inst.name for inst in self.manager.list()}:
                continue
            case = create.Case(path_parameters={"name": name}, body=fake_options())
            response = case.call(headers=AUTHORIZED)
            assert response.status_code == 201, response.text


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[Drill]:
    """The loaded schema of the whole app over real services, all stopped at the end."""
    config = fake_config(
        tmp_path, LLAMACTL_MANAGEMENT_KEYS=MANAGEMENT_KEY, LLAMACTL_ENABLE_SWAGGER="true"
    )
    db = migrated(DatabaseSettings.from_config(config.database))
    services = build_services(config, db, auth.load_keys(config).keys)
    manager = services.manager
    app = create_app(services)
    # /logs/follow never ends by itself: keep its first two events (past lines, status).
    options = schemathesis.Config.from_dict({"max-stream-events": 2})
    try:
        # Loading the schema starts the app's lifespan: the manager boots on its loop.
        schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=options)
        yield Drill(schema, manager)
    finally:
        # The app's shutdown (manager.shutdown(), then the database closed).
        asgi.shutdown_lifespans()
        db.close()
    assert [inst.name for inst in manager.list() if manager.info(inst.name).pid] == []


def named(case: schemathesis.Case, name: str) -> schemathesis.Case:
    case.path_parameters = {**(case.path_parameters or {}), "name": name}
    return case


def cases(operation: schemathesis.APIOperation) -> st.SearchStrategy[schemathesis.Case]:
    """Valid and invalid requests, aimed at instances and backends that exist as well."""
    positive = schemathesis.GenerationMode.POSITIVE
    strategies = [
        operation.as_strategy(positive),
        operation.as_strategy(schemathesis.GenerationMode.NEGATIVE),
    ]
    if operation.path.startswith("/api/v1/instances/{name}"):
        strategies += [
            operation.as_strategy(positive, path_parameters={"name": name}) for name in SEEDED
        ]
        strategies.append(st.builds(named, operation.as_strategy(positive), VALID_NAMES))
    if "{backend}" in operation.path:
        strategies += [
            operation.as_strategy(positive, path_parameters={"backend": backend})
            for backend in BACKENDS
        ]
    return st.one_of(strategies)


def run_operation(drill: Drill, operation: schemathesis.APIOperation) -> None:
    """Up to ``MAX_EXAMPLES`` generated requests to ``operation``, each response checked."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    # Mostly with the key (True first: Hypothesis leans towards the first choice).
    @given(case=cases(operation), authorized=st.sampled_from((True, True, True, False)))
    def examples(case: schemathesis.Case, authorized: bool) -> None:
        drill.seed()
        case.call_and_validate(
            headers=AUTHORIZED if authorized else {}, checks=CHECKS, timeout=REQUEST_TIMEOUT
        )

    examples()


def test_management_api_holds_its_schema(drill: Drill) -> None:
    started = time.monotonic()
    failures: list[str] = []
    operations = 0
    for result in drill.schema.get_all_operations():
        operation = result.ok()
        operations += 1
        try:
            run_operation(drill, operation)
        except (Exception, FailureGroup) as exc:
            failures.append(f"{operation.label}:\n{exc}")
    elapsed = time.monotonic() - started
    assert operations >= 19, f"only {operations} operations in the schema"
    assert not failures, "\n\n".join(failures)
    assert elapsed < BUDGET, f"the drill took {elapsed:.0f} s"

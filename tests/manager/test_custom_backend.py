"""The custom backend as a real process: its argv, readiness, idle stop and refusals."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from llamactl import database
from llamactl.backends.custom import SPEC
from llamactl.errors import ConfigError, InvalidOptions
from llamactl.instance import Status
from llamactl.manager import InstanceManager
from llamactl.proxy import Scheduler
from tests.support.clock import FakeClock
from tests.support.config import FAST, fake_config
from tests.support.custom import CUSTOM_ENTRY_ARGS, custom_config_file, custom_options
from tests.support.records import stored_status

pytestmark = pytest.mark.anyio


@pytest.fixture
async def custom_manager(
    tmp_path: Path, db: database.DB, clock: FakeClock
) -> AsyncIterator[InstanceManager]:
    config_file = custom_config_file(
        tmp_path,
        nocommand={"args": ["--port", "{port}"]},
        noport={"command": "server", "args": ["--listen", "8000"]},
    )
    config = fake_config(tmp_path, LLAMACTL_CONFIG_PATH=str(config_file))
    built = InstanceManager(config, db, clock=clock, timings=FAST)
    built.load()
    yield built
    await built.shutdown()


def argv_seen(log: Path) -> list[str]:
    for line in log.read_text().splitlines():
        if line.startswith('{"argv"'):
            return list(json.loads(line)["argv"])
    raise AssertionError(f"no argv line in {log}")


async def test_a_custom_instance_runs_its_entry_then_its_own_arguments(
    custom_manager: InstanceManager,
) -> None:
    manager = custom_manager
    created = await manager.create("foreign", custom_options())
    port = created.options.backend_options.port
    assert created.options.backend_type == "custom" and port is not None
    await manager.start("foreign")
    await manager.wait_ready("foreign", timeout=10)

    argv = argv_seen(manager.log_path("foreign"))
    # The entry's arguments (after the script) first, then the instance's, substituted.
    assert argv == [
        "--port", str(port), "--host", "127.0.0.1",
        "-m", "/models/foreign.gguf", "--alias", f"foreign-{port}",
    ]  # fmt: skip
    assert CUSTOM_ENTRY_ARGS[1:3] == ["--port", "{port}"]
    reply = httpx.get(f"http://127.0.0.1:{port}/v1/models")
    assert reply.json()["data"][0]["id"] == f"foreign-{port}"
    assert (await manager.stop("foreign")).status is Status.STOPPED


async def test_an_idle_custom_instance_is_stopped(
    custom_manager: InstanceManager, clock: FakeClock, db_path: Path
) -> None:
    manager = custom_manager
    scheduler = Scheduler(manager, manager._env.config)  # it stops idle instances
    await manager.create("foreign", custom_options(idle_timeout=1))
    await manager.start("foreign")
    await manager.wait_ready("foreign", timeout=10)
    clock.now += 59
    assert await scheduler.check_idle() == []
    clock.now += 2
    assert await scheduler.check_idle() == ["foreign"]
    assert manager.get("foreign").status is Status.STOPPED
    assert stored_status(db_path, "foreign") == "stopped"


@pytest.mark.parametrize(
    ("backend_options", "message"),
    [
        ({"model": "m"}, "backend_options.name: this key is required"),
        ({"name": "sglang"}, "no entry backends.custom.sglang in the configuration, got 'sglang'"),
        ({"name": "nocommand"}, "backends.custom.nocommand.command: the entry has no command"),
        ({"name": "noport"}, r"backends.custom.noport.args: no argument carries \{port\}"),
        ({"name": "fake", "ctx_size": 4}, "ctx_size: unknown custom option"),
    ],
)
async def test_creation_is_refused_naming_the_problem(
    custom_manager: InstanceManager, backend_options: dict[str, object], message: str
) -> None:
    options = {"backend_type": "custom", "backend_options": backend_options}
    with pytest.raises(InvalidOptions, match=message):
        await custom_manager.create("bad", options)
    assert [inst.name for inst in custom_manager.list()] == []


async def test_the_port_may_come_from_the_instance_arguments(
    custom_manager: InstanceManager,
) -> None:
    options = custom_options()
    options["backend_options"] = {"name": "noport", "args": ["--port={port}"]}
    created = await custom_manager.create("ported", options)
    assert created.options.backend_options.to_json()["args"] == ["--port={port}"]


def test_any_2xx_answer_means_ready() -> None:
    assert all(status in SPEC.healthy_statuses for status in (200, 204, 299))
    assert all(status not in SPEC.healthy_statuses for status in (199, 301, 404, 503))


async def test_docker_without_a_docker_part_in_the_entry_is_refused_naming_it(
    custom_manager: InstanceManager,
) -> None:
    manager = custom_manager
    await manager.create("boxed", custom_options(docker_enabled=True))
    with pytest.raises(ConfigError, match=r"^backends\.custom\.fake\.docker: ") as caught:
        await manager.start("boxed")
    assert caught.value.key == "backends.custom.fake.docker"
    assert manager.get("boxed").status is Status.STOPPED
    assert manager.info("boxed").pid is None

"""The instance record: JSON shape, legacy files, validation and status changes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from llamactl.backends import BackendType, LlamaCppOptions
from llamactl.errors import InvalidInstanceName, InvalidOptions, InvalidTransition
from llamactl.instance import Instance, Options, Status

# A pre-database instance file, exactly as the old JSON store wrote it.
LEGACY_FILE = """
{
  "name": "mymodel",
  "status": "running",
  "created": 1731000000,
  "options": {
    "backend_type": "llama_cpp",
    "backend_options": { "gpu_layers": 99, "model": "/m/x.gguf", "port": 8001 },
    "auto_restart": true, "max_restarts": 3, "restart_delay": 5,
    "on_demand_start": true, "idle_timeout": 0
  }
}
"""


def llama(**backend: object) -> Options:
    return Options.from_json({"backend_type": "llama_cpp", "backend_options": backend})


def test_legacy_file_parses() -> None:
    instance = Instance.from_json(json.loads(LEGACY_FILE))

    assert instance.name == "mymodel"
    assert instance.status is Status.RUNNING
    assert instance.created == 1731000000
    options = instance.options
    assert options.backend_type is BackendType.LLAMA_CPP
    assert isinstance(options.backend_options, LlamaCppOptions)
    assert options.backend_options.gpu_layers == 99
    assert options.backend_options.model == "/m/x.gguf"
    assert options.backend_options.port == 8001
    assert (options.auto_restart, options.max_restarts, options.restart_delay) == (True, 3, 5)
    assert (options.on_demand_start, options.idle_timeout) == (True, 0)
    assert options.docker_enabled is None
    assert options.command_override is None
    assert options.nodes == ()


def test_legacy_file_writes_back_identically() -> None:
    data = json.loads(LEGACY_FILE)
    assert Instance.from_json(data).to_json() == data


def test_to_json_key_order() -> None:
    instance = Instance(name="a", created=5, status=Status.FAILED, options=llama(model="m"))

    result = instance.to_json()

    assert list(result) == ["name", "status", "created", "options"]
    assert result == {
        "name": "a",
        "status": "failed",
        "created": 5,
        "options": {"backend_type": "llama_cpp", "backend_options": {"model": "m"}},
    }


def test_to_json_leaves_out_created_zero() -> None:
    result = Instance(name="a", options=llama()).to_json()
    assert list(result) == ["name", "status", "options"]
    assert result["status"] == "stopped"


@pytest.mark.parametrize(
    "options",
    [
        {"backend_type": "llama_cpp", "backend_options": {"m": "/x.gguf", "ngl": 0, "x-y": 1}},
        {"backend_type": "mlx_lm", "backend_options": {"model": "mlx/x"}, "idle_timeout": 10},
        {
            "nodes": ["n2", "n1"],
            "backend_type": "vllm",
            "backend_options": {"model": "m", "served_model_name": ["m1"]},
            "environment": {"HF_HOME": "/hf"},
            "docker_enabled": True,
        },
    ],
)
@pytest.mark.parametrize("status", list(Status), ids=str)
def test_round_trip(options: dict[str, object], status: Status) -> None:
    data = {"name": "inst-1", "status": str(status), "created": 1700000000, "options": options}

    instance = Instance.from_json(data)

    assert Instance.from_json(instance.to_json()) == instance
    assert json.loads(json.dumps(instance.to_json())) == instance.to_json()


def test_missing_status_and_created_default() -> None:
    instance = Instance.from_json(
        {"name": "a", "options": {"backend_type": "vllm", "backend_options": {}}}
    )
    assert (instance.status, instance.created) == (Status.STOPPED, 0)


@pytest.mark.parametrize("name", [".hidden", "a b", "a/b", "x" * 51, "", None, 5])
def test_bad_name(name: object) -> None:
    data = {"name": name, "options": {"backend_type": "vllm", "backend_options": {}}}
    with pytest.raises(InvalidInstanceName, match="Invalid instance name"):
        Instance.from_json(data)


def test_missing_name() -> None:
    with pytest.raises(InvalidInstanceName):
        Instance.from_json({"options": {"backend_type": "vllm", "backend_options": {}}})


GOOD_OPTIONS = {"backend_type": "llama_cpp", "backend_options": {}}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"status": "paused"}, "status"),
        ({"status": 1}, "status"),
        ({"created": -1}, "created"),
        ({"created": "1731000000"}, "created"),
        ({"created": True}, "created"),
        ({"created": 1.5}, "created"),
        ({"options": None}, "options"),
        ({"options": "llama_cpp"}, "options"),
        ({"options": {"backend_options": {}}}, "options.backend_type"),
        (
            {"options": {"backend_type": "llama_cpp", "backend_options": {"ctx_size": "4k"}}},
            "options.backend_options.ctx_size",
        ),
        ({"options": {**GOOD_OPTIONS, "max_restarts": "3"}}, "options.max_restarts"),
        ({"id": 7}, "id"),
    ],
)
def test_invalid_instance_json_names_the_path(changes: dict[str, object], field: str) -> None:
    data = {"name": "ok", "status": "stopped", "created": 1, "options": GOOD_OPTIONS, **changes}

    with pytest.raises(InvalidOptions) as caught:
        Instance.from_json(data)

    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


def test_nested_message() -> None:
    data = {
        "name": "ok",
        "options": {"backend_type": "llama_cpp", "backend_options": {"ctx_size": "4k"}},
    }
    with pytest.raises(InvalidOptions) as caught:
        Instance.from_json(data)
    assert caught.value.message == "options.backend_options.ctx_size: expected an integer, got '4k'"


def test_missing_options() -> None:
    with pytest.raises(InvalidOptions) as caught:
        Instance.from_json({"name": "ok"})
    assert caught.value.field == "options"


def test_not_an_object() -> None:
    with pytest.raises(InvalidOptions):
        Instance.from_json(["name"])  # type: ignore[arg-type]


def test_constructor_validates_name_and_created() -> None:
    with pytest.raises(InvalidInstanceName):
        Instance(name="../x", options=llama())
    with pytest.raises(InvalidOptions) as caught:
        Instance(name="x", created=-1, options=llama())
    assert caught.value.field == "created"


def test_with_status_follows_the_lifecycle() -> None:
    stopped = Instance(name="a", created=1, options=llama())

    running = stopped.with_status(Status.RUNNING)
    shutting = running.with_status(Status.SHUTTING_DOWN)

    assert (stopped.status, running.status, shutting.status) == (
        Status.STOPPED,
        Status.RUNNING,
        Status.SHUTTING_DOWN,
    )
    assert running.is_running
    assert not shutting.is_running
    assert shutting.with_status(Status.STOPPED).status is Status.STOPPED
    with pytest.raises(InvalidTransition, match="cannot go from 'stopped' to 'restarting'"):
        stopped.with_status(Status.RESTARTING)
    with pytest.raises(InvalidTransition):
        shutting.with_status(Status.RUNNING)


def test_instances_are_frozen() -> None:
    instance = Instance(name="a", options=llama())
    with pytest.raises(dataclasses.FrozenInstanceError):
        instance.status = Status.RUNNING  # type: ignore[misc]


def test_with_options_replaces_options_only() -> None:
    instance = Instance(name="a", created=9, status=Status.RUNNING, options=llama(model="a"))

    updated = instance.with_options(llama(model="b"))

    assert updated.options.backend_options.model == "b"
    assert (updated.name, updated.created, updated.status) == ("a", 9, Status.RUNNING)
    assert instance.options.backend_options.model == "a"

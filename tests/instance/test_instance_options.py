"""Instance options: strict JSON input, validation, defaults, JSON output."""

from __future__ import annotations

import dataclasses

import pytest

from llamactl.backends import BackendType, LlamaCppOptions, MlxLmOptions, VllmOptions
from llamactl.errors import InvalidOptions
from llamactl.instance import InstanceDefaults, Options

DEFAULTS = InstanceDefaults(
    auto_restart=True,
    max_restarts=3,
    restart_delay=5,
    on_demand_start=True,
    idle_timeout=30,
    docker_enabled=True,
)

FULL = {
    "nodes": ["worker2", "worker1", "worker2"],
    "backend_type": "llama_cpp",
    "backend_options": {"model": "/m.gguf", "gpu_layers": 0, "ngl_typo": "1"},
    "auto_restart": False,
    "max_restarts": -1,
    "restart_delay": 0,
    "on_demand_start": False,
    "idle_timeout": 0,
    "environment": {"B": "2", "A": ""},
    "docker_enabled": False,
    "command_override": "/opt/llama-server --verbose",
}


def minimal(backend_type: str = "llama_cpp", **extra: object) -> dict[str, object]:
    return {"backend_type": backend_type, "backend_options": {}, **extra}


# -- input -----------------------------------------------------------------------------------


def test_full_request_is_read_exactly() -> None:
    options = Options.from_json(FULL)

    assert options.backend_type is BackendType.LLAMA_CPP
    assert isinstance(options.backend_options, LlamaCppOptions)
    assert options.backend_options.gpu_layers == 0
    assert options.backend_options.extra_args == {"ngl_typo": "1"}
    assert options.auto_restart is False
    assert options.max_restarts == -1
    assert options.restart_delay == 0
    assert options.on_demand_start is False
    assert options.idle_timeout == 0
    assert options.docker_enabled is False
    assert options.command_override == "/opt/llama-server --verbose"
    assert options.nodes == ("worker1", "worker2")
    assert dict(options.environment) == {"A": "", "B": "2"}


def test_minimal_request_leaves_everything_unset() -> None:
    options = Options.from_json(minimal())

    assert options == Options(backend_type=BackendType.LLAMA_CPP, backend_options=LlamaCppOptions())
    assert options.auto_restart is None
    assert options.max_restarts is None
    assert options.docker_enabled is None
    assert options.nodes == ()
    assert dict(options.environment) == {}


def test_nulls_mean_unset() -> None:
    data = minimal(
        auto_restart=None,
        max_restarts=None,
        nodes=None,
        environment=None,
        command_override=None,
        docker_enabled=None,
    )
    assert Options.from_json(data) == Options.from_json(minimal())


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"backend_options": {}}, "backend_type"),
        (minimal("llama"), "backend_type"),
        (minimal("LLAMA_CPP"), "backend_type"),
        (minimal(None), "backend_type"),  # type: ignore[arg-type]
        ({"backend_type": "vllm"}, "backend_options"),
        ({"backend_type": "vllm", "backend_options": None}, "backend_options"),
        ({"backend_type": "vllm", "backend_options": ["--model", "x"]}, "backend_options"),
        (
            {"backend_type": "llama_cpp", "backend_options": {"gpu_layers": "lots"}},
            "backend_options.gpu_layers",
        ),
        ({"backend_type": "mlx_lm", "backend_options": {"port": 70000}}, "backend_options.port"),
        ({"backend_type": "vllm", "backend_options": {"x": [1]}}, "backend_options.x"),
        (minimal(auto_restart="yes"), "auto_restart"),
        (minimal(auto_restart=1), "auto_restart"),
        (minimal(on_demand_start="true"), "on_demand_start"),
        (minimal(docker_enabled="false"), "docker_enabled"),
        (minimal(max_restarts="3"), "max_restarts"),
        (minimal(max_restarts=True), "max_restarts"),
        (minimal(max_restarts=-2), "max_restarts"),
        (minimal(max_restarts=2.5), "max_restarts"),
        (minimal(restart_delay=-1), "restart_delay"),
        (minimal(restart_delay="5s"), "restart_delay"),
        (minimal(idle_timeout=-1), "idle_timeout"),
        (
            minimal(idle_timeout=None, restart_delay=None, idle_timeout_minutes=3),
            "idle_timeout_minutes",
        ),
        (minimal(environment=["A=1"]), "environment"),
        (minimal(environment={"A": 1}), "environment.A"),
        (minimal(environment={"A": None}), "environment.A"),
        (minimal(environment={"A=B": "x"}), "environment"),
        (minimal(environment={"": "x"}), "environment"),
        (minimal(nodes="worker1"), "nodes"),
        (minimal(nodes=[1]), "nodes[0]"),
        (minimal(nodes=[""]), "nodes[0]"),
        (minimal(command_override=5), "command_override"),
        (minimal("mlx_lm", docker_enabled=True), "docker_enabled"),
        (minimal(docker_enabled=True, command_override="llama-server"), "command_override"),
        (minimal(group="g"), "group"),
        (minimal(name="x"), "name"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_invalid_requests_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidOptions) as caught:
        Options.from_json(data)

    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")
    assert "\n" not in caught.value.message


def test_error_message_for_a_bad_backend_value() -> None:
    data = {"backend_type": "llama_cpp", "backend_options": {"gpu_layers": "lots"}}

    with pytest.raises(InvalidOptions) as caught:
        Options.from_json(data)

    assert caught.value.message == (
        "backend_options.gpu_layers: expected an integer, 'auto' or 'all', got 'lots'"
    )
    assert caught.value.value == "lots"


def test_error_messages_name_the_value() -> None:
    with pytest.raises(InvalidOptions, match=r"^max_restarts: expected .*, got '3'$"):
        Options.from_json(minimal(max_restarts="3"))
    with pytest.raises(InvalidOptions, match=r"^auto_restart: expected true or false, got 'yes'$"):
        Options.from_json(minimal(auto_restart="yes"))
    with pytest.raises(InvalidOptions, match=r"^group: unknown instance option \(value 'g'\)"):
        Options.from_json(minimal(group="g"))


@pytest.mark.parametrize(
    "data",
    [
        minimal(),
        minimal(max_restarts=0),
        minimal(max_restarts=-1),
        minimal("mlx_lm", docker_enabled=False),
        minimal(docker_enabled=False, command_override="llama-server --foo"),
        minimal(docker_enabled=True),
        minimal(command_override=""),
        minimal(nodes=[]),
        minimal(environment={}),
    ],
)
def test_valid_edge_cases(data: dict[str, object]) -> None:
    Options.from_json(data)


def test_empty_command_override_is_unset() -> None:
    assert Options.from_json(minimal(command_override="")).command_override is None


def test_construction_checks_the_backend_options_class() -> None:
    with pytest.raises(InvalidOptions) as caught:
        Options(backend_type=BackendType.VLLM, backend_options=LlamaCppOptions())
    assert caught.value.field == "backend_options"


def test_construction_checks_ranges() -> None:
    with pytest.raises(InvalidOptions) as caught:
        Options(backend_type=BackendType.VLLM, backend_options=VllmOptions(), idle_timeout=-5)
    assert caught.value.field == "idle_timeout"


# -- immutability ----------------------------------------------------------------------------


def test_options_are_immutable() -> None:
    source_env = {"A": "1"}
    options = Options(
        backend_type=BackendType.VLLM,
        backend_options=VllmOptions(),
        environment=source_env,
        nodes=("b", "a"),
    )
    source_env["B"] = "2"

    assert dict(options.environment) == {"A": "1"}
    assert options.nodes == ("a", "b")
    with pytest.raises(TypeError):
        options.environment["C"] = "3"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.auto_restart = True  # type: ignore[misc]


# -- defaults --------------------------------------------------------------------------------


def test_defaults_fill_every_unset_setting() -> None:
    options = Options.from_json(minimal()).with_defaults(DEFAULTS)

    assert options.auto_restart is True
    assert options.max_restarts == 3
    assert options.restart_delay == 5
    assert options.on_demand_start is True
    assert options.idle_timeout == 30
    assert options.docker_enabled is True


def test_defaults_keep_explicit_values_including_zero_and_false() -> None:
    data = minimal(
        auto_restart=False,
        max_restarts=0,
        restart_delay=0,
        on_demand_start=False,
        idle_timeout=0,
        docker_enabled=False,
    )

    options = Options.from_json(data).with_defaults(DEFAULTS)

    assert options == Options.from_json(data)
    assert options.auto_restart is False
    assert options.max_restarts == 0
    assert options.idle_timeout == 0
    assert options.docker_enabled is False


def test_defaults_keep_explicit_docker_enabled_true() -> None:
    no_docker = dataclasses.replace(DEFAULTS, docker_enabled=False)
    options = Options.from_json(minimal("vllm", docker_enabled=True)).with_defaults(no_docker)
    assert options.docker_enabled is True


def test_mlx_never_defaults_to_docker() -> None:
    options = Options.from_json(minimal("mlx_lm")).with_defaults(DEFAULTS)
    assert options.docker_enabled is False


def test_command_override_defaults_to_a_native_run() -> None:
    options = Options.from_json(minimal(command_override="llama-server")).with_defaults(DEFAULTS)

    assert options.docker_enabled is False
    assert options.command_override == "llama-server"


def test_defaults_leave_other_fields_alone() -> None:
    options = Options.from_json(FULL | {"auto_restart": None}).with_defaults(DEFAULTS)

    assert options.auto_restart is True
    assert options.nodes == ("worker1", "worker2")
    assert dict(options.environment) == {"A": "", "B": "2"}
    assert options.backend_options.model == "/m.gguf"


def test_defaults_are_idempotent() -> None:
    once = Options.from_json(minimal()).with_defaults(DEFAULTS)
    assert once.with_defaults(dataclasses.replace(DEFAULTS, max_restarts=9)) == once


# -- output ----------------------------------------------------------------------------------


def test_to_json_key_order_with_everything_set() -> None:
    result = Options.from_json(FULL).to_json()

    assert list(result) == [
        "nodes",
        "backend_type",
        "backend_options",
        "auto_restart",
        "max_restarts",
        "restart_delay",
        "on_demand_start",
        "idle_timeout",
        "environment",
        "docker_enabled",
        "command_override",
    ]
    assert result["nodes"] == ["worker1", "worker2"]
    assert result["environment"] == {"A": "", "B": "2"}
    assert result["backend_options"] == {
        "extra_args": {"ngl_typo": "1"},
        "gpu_layers": 0,
        "model": "/m.gguf",
    }


def test_to_json_leaves_out_unset_and_empty() -> None:
    assert Options.from_json(minimal("vllm")).to_json() == {
        "backend_type": "vllm",
        "backend_options": {},
    }


def test_to_json_after_defaults_has_zero_idle_timeout_and_false_docker() -> None:
    defaults = dataclasses.replace(DEFAULTS, idle_timeout=0, docker_enabled=False)

    result = Options.from_json(minimal()).with_defaults(defaults).to_json()

    assert result == {
        "backend_type": "llama_cpp",
        "backend_options": {},
        "auto_restart": True,
        "max_restarts": 3,
        "restart_delay": 5,
        "on_demand_start": True,
        "idle_timeout": 0,
        "docker_enabled": False,
    }


ROUND_TRIP_CASES = [
    FULL,
    minimal(),
    {
        "backend_type": "mlx_lm",
        "backend_options": {"model": "mlx-community/x", "temp": 0, "trust_remote_code": False},
        "on_demand_start": True,
        "idle_timeout": 15,
    },
    {
        "nodes": ["gpu-box"],
        "backend_type": "vllm",
        "backend_options": {"model": "Qwen/Qwen3-8B", "api_key": ["a", "b"], "port": 8010},
        "docker_enabled": True,
        "environment": {"CUDA_VISIBLE_DEVICES": "0,1"},
    },
]


@pytest.mark.parametrize("data", ROUND_TRIP_CASES)
def test_round_trip(data: dict[str, object]) -> None:
    options = Options.from_json(data)

    assert Options.from_json(options.to_json()) == options
    with_defaults = options.with_defaults(DEFAULTS)
    assert Options.from_json(with_defaults.to_json()) == with_defaults


def test_backend_options_classes_follow_the_type() -> None:
    assert isinstance(Options.from_json(minimal("mlx_lm")).backend_options, MlxLmOptions)
    assert isinstance(Options.from_json(minimal("vllm")).backend_options, VllmOptions)


@pytest.mark.parametrize(
    ("key", "value"),
    [("idle_timeout", 2**63), ("restart_delay", 2**31), ("max_restarts", 2**31)],
)
def test_integer_settings_have_an_upper_bound(key: str, value: int) -> None:
    body = {"backend_type": "llama_cpp", "backend_options": {"model": "m"}, key: value}
    with pytest.raises(InvalidOptions, match=f"{key}.*2147483647") as caught:
        Options.from_json(body)
    assert caught.value.field == key

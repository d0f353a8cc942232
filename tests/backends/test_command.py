"""Building a backend's argv and environment from typed options and configuration."""

from __future__ import annotations

import dataclasses
import shlex
from typing import ClassVar

import pytest

from llamactl.backends import (
    OPTIONS_CLASSES,
    BackendOptionsBase,
    BackendType,
    Command,
    FieldKind,
    backend_args,
    build_command,
    options_class,
    parse_command,
    render,
)
from llamactl.backends.command import runs_in_docker
from llamactl.config.models import BackendConfig, DockerConfig
from llamactl.errors import ConfigError, InvalidOptions
from llamactl.instance.options import Options
from tests.support.backend_samples import full_json

LLAMA, MLX, VLLM = BackendType.LLAMA_CPP, BackendType.MLX_LM, BackendType.VLLM


class CommaListOptions(BackendOptionsBase):
    """A backend with a list field that is neither multi-valued nor variadic."""

    BACKEND_TYPE: ClassVar[BackendType] = BackendType.LLAMA_CPP

    tags: list[str] | None = None
    name: str | None = None


def args_of(backend: BackendType, data: dict[str, object], *, docker: bool = False) -> list[str]:
    return backend_args(options_class(backend).from_json(data), docker=docker)


# -- backend_args ------------------------------------------------------------------------------

ARGS_CASES: list[tuple[str, BackendType, dict[str, object], list[str]]] = [
    ("nothing set", LLAMA, {}, []),
    (
        "explicit zeros",
        LLAMA,
        {"seed": 0, "gpu_layers": 0, "temp": 0.0},
        ["--gpu-layers", "0", "--seed", "0", "--temp", "0.0"],
    ),
    ("false switch gives nothing", LLAMA, {"mlock": False, "no_mmap": True}, ["--no-mmap"]),
    ("all switches false", VLLM, {"enforce_eager": False, "trust_remote_code": False}, []),
    (
        "float spelling",
        LLAMA,
        {"temp": 0.7, "min_p": 1e-05, "rope_freq_base": 1e6, "top_k": 40},
        ["--rope-freq-base", "1000000.0", "--temp", "0.7", "--top-k", "40", "--min-p", "1e-05"],
    ),
    ("int given to a float field", MLX, {"temp": 1}, ["--temp", "1.0"]),
    ("string", LLAMA, {"alias": "my model"}, ["--alias", "my model"]),
    (
        "multi-valued list repeats the flag",
        LLAMA,
        {"lora": ["a.gguf", "b,c.gguf"], "override_tensor": ["x=CPU"]},
        ["--override-tensor", "x=CPU", "--lora", "a.gguf", "--lora", "b,c.gguf"],
    ),
    (
        "vllm multi-valued",
        VLLM,
        {"api_key": ["k1", "k2"], "middleware": ["m"]},
        ["--middleware", "m", "--api-key", "k1", "--api-key", "k2"],
    ),
    (
        "variadic list: one flag, every value",
        VLLM,
        {"served_model_name": ["a", "b", "c"]},
        ["--served-model-name", "a", "b", "c"],
    ),
    ("switch field", LLAMA, {"flash_attn": "auto"}, ["--flash-attn", "auto"]),
    ("legacy boolean switch", LLAMA, {"flash_attn": True}, ["--flash-attn", "on"]),
    ("flag spelling override", LLAMA, {"fim_qwen_1_5b_default": True}, ["--fim-qwen-1.5b-default"]),
    ("alias input", LLAMA, {"ngl": 99, "c": 4096}, ["--ctx-size", "4096", "--gpu-layers", "99"]),
    (
        "llama reads the next word verbatim",
        LLAMA,
        {"alias": "-x", "seed": -1},
        ["--seed", "-1", "--alias", "-x"],
    ),
    (
        "argparse backends attach a value starting with '-'",
        MLX,
        {"model": "-m", "temp": -0.5, "top_k": 3},
        ["--model=-m", "--temp=-0.5", "--top-k", "3"],
    ),
    (
        "vllm multi-valued value starting with '-'",
        VLLM,
        {"api_key": ["-k", "k"]},
        ["--api-key=-k", "--api-key", "k"],
    ),
    (
        "extra args: fields first, then keys sorted, spelled verbatim",
        LLAMA,
        {
            "extra_args": {"zeta": "1", "Alpha_b": "", "foo-bar": "x y"},
            "ctx_size": 8,
        },
        ["--ctx-size", "8", "--Alpha_b", "--foo-bar", "x y", "--zeta", "1"],
    ),
    (
        "unknown keys become extra args with their spelling",
        LLAMA,
        {"context_size": 4096, "no_thing": True},
        ["--context_size", "4096", "--no_thing", "true"],
    ),
    ("extra arg with a dash value on llama", LLAMA, {"extra_args": {"k": "-v"}}, ["--k", "-v"]),
    ("extra arg with a dash value on vllm", VLLM, {"extra_args": {"k": "-v"}}, ["--k=-v"]),
    (
        "vllm native: model positional first, no --model",
        VLLM,
        {"host": "h", "port": 8001, "model": "org/M", "seed": 1},
        ["org/M", "--host", "h", "--port", "8001", "--seed", "1"],
    ),
    (
        "mlx keeps --model",
        MLX,
        {"model": "mlx-community/M", "port": 8001},
        ["--model", "mlx-community/M", "--port", "8001"],
    ),
    ("llama keeps --model", LLAMA, {"model": "/m.gguf"}, ["--model", "/m.gguf"]),
]


@pytest.mark.parametrize(
    ("backend", "data", "expected"),
    [case[1:] for case in ARGS_CASES],
    ids=[case[0] for case in ARGS_CASES],
)
def test_backend_args(backend: BackendType, data: dict[str, object], expected: list[str]) -> None:
    assert args_of(backend, data) == expected


@pytest.mark.parametrize(
    ("docker", "expected"),
    [
        (False, ["org/M", "--host", "h", "--seed", "1"]),
        (True, ["--host", "h", "--model", "org/M", "--seed", "1"]),
    ],
)
def test_vllm_model_positional_natively_and_flag_in_docker(
    docker: bool, expected: list[str]
) -> None:
    data: dict[str, object] = {"seed": 1, "model": "org/M", "host": "h"}
    assert args_of(VLLM, data, docker=docker) == expected


@pytest.mark.parametrize("backend", [LLAMA, MLX])
def test_docker_flag_changes_nothing_for_llama_and_mlx(backend: BackendType) -> None:
    data: dict[str, object] = {"model": "m", "port": 8001}
    assert args_of(backend, data, docker=True) == args_of(backend, data)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["a", "b"], ["--tags", "a,b"]),
        (["one"], ["--tags", "one"]),
        ([], []),
    ],
)
def test_other_lists_are_joined_with_commas(tags: list[str], expected: list[str]) -> None:
    assert backend_args(CommaListOptions(tags=tags)) == expected


def test_empty_lists_give_nothing() -> None:
    options = options_class(VLLM)(served_model_name=[], api_key=[])
    assert backend_args(options) == []


@pytest.mark.parametrize("backend", list(OPTIONS_CLASSES))
def test_every_field_has_its_flag(backend: BackendType) -> None:
    cls = options_class(backend)
    argv = backend_args(cls.from_json(full_json(cls)))
    for name, kind in cls.FIELD_KINDS.items():
        if name == "model" and backend is VLLM:
            assert argv[0] == "x y"
            continue
        assert cls.flag_name(name) in argv, name
        if kind is FieldKind.BOOL:
            following = argv[argv.index(cls.flag_name(name)) + 1 :][:1]
            assert following == [] or following[0].startswith("--"), name


@pytest.mark.parametrize(
    "value",
    [
        "; rm -rf ~",
        "$(whoami)",
        "`id`",
        "a'b\"c",
        "line1\nline2",
        "a && b | c > d",
        "${HOME}",
        "*",
    ],
)
def test_shell_metacharacters_stay_single_literal_items(value: str) -> None:
    data: dict[str, object] = {
        "alias": value,
        "lora": [value, value],
        "extra_args": {"custom": value},
    }
    argv = args_of(LLAMA, data)
    assert argv == ["--lora", value, "--lora", value, "--alias", value, "--custom", value]


# -- build_command -----------------------------------------------------------------------------

LLAMA_DOCKER = DockerConfig(
    enabled=False,
    image="ghcr.io/ggml-org/llama.cpp:server",
    args=["run", "--rm", "--network", "host", "--gpus", "all", "-v", "/d:/root/.cache"],
    environment={"B": "docker", "C": "docker"},
)
LLAMA_DOCKER_ON = LLAMA_DOCKER.model_copy(update={"enabled": True})
VLLM_DOCKER = DockerConfig(
    enabled=False, image="vllm/vllm-openai:latest", args=["run", "--rm", "--shm-size", "1g"]
)


def backend_config(
    command: str = "llama-server",
    args: list[str] | None = None,
    environment: dict[str, str] | None = None,
    docker: DockerConfig | None = None,
) -> BackendConfig:
    return BackendConfig(
        command=command, args=args or [], environment=environment or {}, docker=docker
    )


def instance(
    backend: BackendType = LLAMA, data: dict[str, object] | None = None, **settings: object
) -> Options:
    typed = options_class(backend).from_json(data or {})
    return Options(backend_type=backend, backend_options=typed, **settings)  # type: ignore[arg-type]


def test_native_llama_command_as_in_the_reference_example() -> None:
    options = instance(data={"model": "/m.gguf", "ctx_size": 4096, "gpu_layers": 99})
    command = build_command(options, backend_config(), port=8000)
    assert command.argv == (
        "llama-server",
        "--ctx-size",
        "4096",
        "--gpu-layers",
        "99",
        "--model",
        "/m.gguf",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
    )
    assert command.environment == {}


@pytest.mark.parametrize(
    ("data", "host_argument", "expected_host"),
    [
        ({}, None, "127.0.0.1"),
        ({}, "10.1.2.3", "10.1.2.3"),
        ({"host": "0.0.0.0"}, None, "0.0.0.0"),
        ({"host": "0.0.0.0"}, "10.1.2.3", "0.0.0.0"),
    ],
)
def test_host_injection(
    data: dict[str, object], host_argument: str | None, expected_host: str
) -> None:
    options = instance(data=data)
    if host_argument is None:
        command = build_command(options, backend_config(), port=8000)
    else:
        command = build_command(options, backend_config(), port=8000, host=host_argument)
    assert command.argv[1:] == ("--host", expected_host, "--port", "8000")


@pytest.mark.parametrize("own_port", [None, 8000, 9000])
def test_port_is_always_the_given_one(own_port: int | None) -> None:
    options = instance(data={} if own_port is None else {"port": own_port})
    argv = build_command(options, backend_config(), port=8000).argv
    assert argv.count("--port") == 1
    assert argv[argv.index("--port") + 1] == "8000"


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_port_out_of_range_is_a_programming_error(port: int) -> None:
    with pytest.raises(ValueError, match="port must be from 1 to 65535"):
        build_command(instance(), backend_config(), port=port)


def test_build_command_does_not_change_the_options() -> None:
    options = instance(data={"model": "m"})
    build_command(options, backend_config(), port=8000)
    assert options.backend_options.port is None
    assert options.backend_options.host is None


def test_vllm_native_with_config_args() -> None:
    options = instance(VLLM, {"model": "org/M", "tensor_parallel_size": 2})
    command = build_command(options, backend_config("vllm", ["serve"]), port=8000)
    assert command.argv == (
        "vllm",
        "serve",
        "org/M",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--tensor-parallel-size",
        "2",
    )


def test_mlx_native() -> None:
    options = instance(MLX, {"model": "mlx-community/M", "temp": 0.0})
    command = build_command(options, backend_config("mlx_lm.server"), port=8123)
    assert command.argv == (
        "mlx_lm.server",
        "--model",
        "mlx-community/M",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--temp",
        "0.0",
    )


@pytest.mark.parametrize(
    ("override", "executable"),
    [
        ('"/opt/my venv/bin/llama-server"', ["/opt/my venv/bin/llama-server"]),
        ("'/opt/my venv/bin/llama-server'", ["/opt/my venv/bin/llama-server"]),
        ("/opt/my\\ venv/bin/llama-server", ["/opt/my venv/bin/llama-server"]),
        ("nice -n 5 llama-server", ["nice", "-n", "5", "llama-server"]),
        ("env FOO='a b' llama-server", ["env", "FOO=a b", "llama-server"]),
        ("run#1 x", ["run#1", "x"]),
        ("/bin/server \\\n  --flag", ["/bin/server", "--flag"]),
    ],
)
def test_command_override_is_split_with_shell_quoting(override: str, executable: list[str]) -> None:
    options = instance(data={"model": "m"}, command_override=override)
    backend = backend_config(args=["--log-disable"], environment={"A": "1"})
    command = build_command(options, backend, port=8000)
    rest = ["--log-disable", "--model", "m", "--host", "127.0.0.1", "--port", "8000"]
    assert list(command.argv) == [*executable, *rest]
    assert command.environment == {"A": "1"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('"/opt/my venv/bin/llama-server', "unterminated quoted string"),
        ("llama-server 'x", "unterminated quoted string"),
        ("   ", "command is empty"),
        ("llama-server \\", "the command ends with a lone backslash"),
    ],
)
def test_command_override_that_cannot_be_split(override: str, message: str) -> None:
    options = instance(command_override=override)
    with pytest.raises(InvalidOptions, match=f"^command_override: {message}") as caught:
        build_command(options, backend_config(), port=8000)
    assert caught.value.field == "command_override"
    assert caught.value.value == override


def test_native_environment_instance_wins_and_nothing_else_is_added() -> None:
    options = instance(environment={"B": "instance", "C": "3"})
    backend = backend_config(environment={"A": "1", "B": "backend"}, docker=LLAMA_DOCKER)
    command = build_command(options, backend, port=8000)
    assert dict(command.environment) == {"A": "1", "B": "instance", "C": "3"}
    assert command.argv[0] == "llama-server"


def test_docker_mode_passes_variables_into_the_container() -> None:
    options = instance(
        data={"model": "/models/m.gguf", "gpu_layers": 0},
        docker_enabled=True,
        environment={"C": "instance", "D": "4"},
    )
    backend = backend_config(
        args=["--never-in-docker"], environment={"A": "1", "B": "backend"}, docker=LLAMA_DOCKER
    )
    command = build_command(options, backend, port=8000)
    assert command.argv == (
        "docker",
        "run",
        "--rm",
        "--network",
        "host",
        "--gpus",
        "all",
        "-v",
        "/d:/root/.cache",
        "-e",
        "A=1",
        "-e",
        "B=docker",
        "-e",
        "C=instance",
        "-e",
        "D=4",
        "ghcr.io/ggml-org/llama.cpp:server",
        "--gpu-layers",
        "0",
        "--model",
        "/models/m.gguf",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
    )
    assert command.environment == {}


def test_vllm_docker_keeps_model_flag_and_skips_config_args() -> None:
    options = instance(VLLM, {"model": "org/M"}, docker_enabled=True)
    backend = backend_config("vllm", ["serve"], docker=VLLM_DOCKER)
    command = build_command(options, backend, port=8000)
    assert command.argv == (
        "docker",
        "run",
        "--rm",
        "--shm-size",
        "1g",
        "vllm/vllm-openai:latest",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--model",
        "org/M",
    )
    assert command.environment == {}


def test_docker_environment_values_stay_single_items() -> None:
    value = "x; rm -rf ~ $(id)\nnext"
    options = instance(docker_enabled=True, environment={"TRICKY": value})
    argv = build_command(options, backend_config(docker=LLAMA_DOCKER), port=8000).argv
    assert f"TRICKY={value}" in argv
    assert argv[argv.index(f"TRICKY={value}") - 1] == "-e"


@pytest.mark.parametrize(
    ("backend", "docker", "docker_enabled", "override", "expected"),
    [
        (LLAMA, LLAMA_DOCKER, True, None, True),
        (LLAMA, LLAMA_DOCKER, False, None, False),
        (LLAMA, None, True, None, False),
        (LLAMA, LLAMA_DOCKER, None, None, False),
        (LLAMA, LLAMA_DOCKER_ON, None, None, True),
        (LLAMA, LLAMA_DOCKER_ON, False, None, False),
        (LLAMA, LLAMA_DOCKER_ON, None, "my-server", False),
        (VLLM, VLLM_DOCKER, True, None, True),
        (VLLM, None, None, None, False),
        (MLX, LLAMA_DOCKER_ON, None, None, False),
    ],
)
def test_runs_in_docker(
    backend: BackendType,
    docker: DockerConfig | None,
    docker_enabled: bool | None,
    override: str | None,
    expected: bool,
) -> None:
    options = instance(backend, docker_enabled=docker_enabled, command_override=override)
    config = backend_config(docker=docker)
    assert runs_in_docker(options, config) is expected
    argv = build_command(options, config, port=8000).argv
    assert (argv[0] == "docker") is expected


def test_docker_without_image_is_a_config_error() -> None:
    docker = LLAMA_DOCKER.model_copy(update={"image": ""})
    options = instance(docker_enabled=True)
    with pytest.raises(ConfigError, match=r"^backends\.llama-cpp\.docker\.image: ") as caught:
        build_command(options, backend_config(docker=docker), port=8000)
    assert caught.value.key == "backends.llama-cpp.docker.image"


def test_shell_metacharacters_reach_argv_unchanged() -> None:
    values = ["; rm -rf ~", "$(whoami)", "`id`", 'it\'s "quoted"', "a\nb"]
    data: dict[str, object] = {
        "chat_template": values[0],
        "alias": values[1],
        "api_key": values[2],
        "model": values[3],
        "hf_token": values[4],
    }
    argv = build_command(instance(data=data), backend_config(), port=8000).argv
    for value in values:
        assert argv.count(value) == 1


def test_command_is_frozen() -> None:
    command = build_command(instance(), backend_config(), port=8000)
    assert isinstance(command, Command)
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.argv = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        command.environment["X"] = "1"  # type: ignore[index]


# -- render ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["llama-server", "--model", "/m.gguf"], "llama-server --model /m.gguf"),
        (["/opt/my venv/x", "--alias", "a b"], "'/opt/my venv/x' --alias 'a b'"),
        (["x", "; rm -rf ~"], "x '; rm -rf ~'"),
        (["x", "it's"], "x 'it'\"'\"'s'"),
        ([], ""),
    ],
)
def test_render(argv: list[str], expected: str) -> None:
    assert render(argv) == expected
    assert shlex.split(render(argv)) == argv


@pytest.mark.parametrize("backend", [LLAMA, MLX, VLLM])
def test_rendered_native_command_parses_back(backend: BackendType) -> None:
    data: dict[str, object] = {"model": "org/My Model", "seed": 0, "extra_args": {"x-y": "1"}}
    executable = {
        LLAMA: ("llama-server", []),
        MLX: ("mlx_lm.server", []),
        VLLM: ("vllm", ["serve"]),
    }
    command_name, config_args = executable[backend]
    options = instance(backend, data)
    command = build_command(options, backend_config(command_name, config_args), port=8000)
    parsed = parse_command(backend, render(command.argv))
    expected = options.backend_options.replace(host="127.0.0.1", port=8000)
    assert parsed == expected

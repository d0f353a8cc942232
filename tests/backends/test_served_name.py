"""The instance name as llama.cpp's ``--alias``, so that responses name the instance."""

from __future__ import annotations

from llamactl.backends import BackendType, build_command, options_class
from llamactl.config.models import BackendConfig, DockerConfig
from llamactl.instance.options import Options

LLAMA = BackendType.LLAMA_CPP
BACKEND = BackendConfig(command="llama-server")


def options(
    backend: BackendType = LLAMA, data: dict[str, object] | None = None, **settings: object
) -> Options:
    typed = options_class(backend).from_json(data or {"model": "/models/x.gguf"})
    return Options(backend_type=backend, backend_options=typed, **settings)  # type: ignore[arg-type]


def flag_value(argv: tuple[str, ...], flag: str) -> list[str]:
    return [argv[i + 1] for i, item in enumerate(argv) if item == flag]


def test_an_instance_without_alias_is_served_under_its_name() -> None:
    argv = build_command(options(), BACKEND, port=8001, name="smollm2").argv
    assert flag_value(argv, "--alias") == ["smollm2"]


def test_the_users_alias_is_kept() -> None:
    typed = {"model": "/models/x.gguf", "alias": "mine"}
    argv = build_command(options(data=typed), BACKEND, port=8001, name="smollm2").argv
    assert flag_value(argv, "--alias") == ["mine"]


def test_a_command_override_gets_no_alias_it_did_not_ask_for() -> None:
    inst = options(command_override="/opt/wrapper --serve")
    argv = build_command(inst, BACKEND, port=8001, name="smollm2").argv
    assert argv[:2] == ("/opt/wrapper", "--serve")
    assert "--alias" not in argv


def test_docker_mode_gets_the_alias_too() -> None:
    docker = DockerConfig(enabled=True, image="ghcr.io/ggml-org/llama.cpp:server")
    backend = BackendConfig(command="llama-server", docker=docker)
    argv = build_command(options(), backend, port=8001, name="smollm2").argv
    assert argv[0] == "docker"
    assert flag_value(argv, "--alias") == ["smollm2"]


def test_other_backends_and_no_name_are_left_alone() -> None:
    assert "--alias" not in build_command(options(), BACKEND, port=8001).argv
    vllm = options(BackendType.VLLM, {"model": "org/model"})
    assert "--alias" not in build_command(vllm, BACKEND, port=8001, name="v").argv

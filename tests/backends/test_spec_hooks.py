"""The spec's hooks for a backend unlike the built-ins (an argv template, a section key of
its own, a docker part its instances cannot go without), tried on the llama.cpp spec with
the hooks set (a backend that has them registers its own spec the same way)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from llamactl.backends import (
    SPECS,
    ArgvStyle,
    BackendOptionsBase,
    BackendType,
    LlamaCppOptions,
    build_command,
    registry,
    section_key,
)
from llamactl.config.models import BackendConfig, DockerConfig
from llamactl.errors import ConfigError
from llamactl.instance.options import Options

LLAMA = BackendType.LLAMA_CPP


def templated(options: BackendOptionsBase, section: BackendConfig) -> list[str]:
    assert isinstance(options, LlamaCppOptions)
    return [*section.args, f"--listen={options.host}:{options.port}", f"--file={options.model}"]


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The llama.cpp spec with its hooks set, as ``spec_for`` answers it."""
    spec = dataclasses.replace(
        SPECS[LLAMA],
        argv_style=ArgvStyle.TEMPLATE,
        template_args=templated,
        section_key_of=lambda options: "backends.llama-cpp.entries.mine",
        docker_section_required=True,
    )
    monkeypatch.setattr(registry, "SPECS", {**SPECS, LLAMA: spec})
    yield


def instance(**settings: object) -> Options:
    typed = LlamaCppOptions.from_json({"model": "/m.gguf", "ctx_size": 4096})
    return Options(backend_type=LLAMA, backend_options=typed, **settings)  # type: ignore[arg-type]


def section(docker: DockerConfig | None = None) -> BackendConfig:
    return BackendConfig(command="server", args=["serve", "-v"], docker=docker)


IMAGE = DockerConfig(image="example/server", args=["run", "--rm"])


@pytest.mark.usefixtures("hooked")
def test_a_template_gives_every_argument_after_the_program() -> None:
    command = build_command(instance(), section(), port=8001)
    assert command.argv == ("server", "serve", "-v", "--listen=127.0.0.1:8001", "--file=/m.gguf")


@pytest.mark.usefixtures("hooked")
def test_a_template_gives_every_argument_after_the_image() -> None:
    command = build_command(instance(docker_enabled=True), section(IMAGE), port=8001)
    assert command.argv == (
        "docker", "run", "--rm", "example/server",
        "serve", "-v", "--listen=127.0.0.1:8001", "--file=/m.gguf",
    )  # fmt: skip


def test_without_hooks_the_flags_follow_the_sections_arguments() -> None:
    command = build_command(instance(), section(), port=8001)
    assert command.argv[:3] == ("server", "serve", "-v")
    assert "--ctx-size" in command.argv
    assert section_key(instance().backend_options) == "backends.llama-cpp"


@pytest.mark.usefixtures("hooked")
def test_the_docker_image_error_names_the_instances_section() -> None:
    with pytest.raises(ConfigError, match=r"^backends\.llama-cpp\.entries\.mine\.docker\.image: "):
        build_command(instance(docker_enabled=True), section(DockerConfig()), port=8001)


@pytest.mark.usefixtures("hooked")
def test_docker_asked_for_without_a_docker_part_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError) as caught:
        build_command(instance(docker_enabled=True), section(), port=8001)
    assert caught.value.key == "backends.llama-cpp.entries.mine.docker"
    assert caught.value.message.startswith("backends.llama-cpp.entries.mine.docker: ")
    assert "docker_enabled: true" in caught.value.message
    # Not asked for: it runs natively.
    for docker_enabled in (False, None):
        argv = build_command(instance(docker_enabled=docker_enabled), section(), port=8001).argv
        assert argv[0] == "server"


def test_without_the_requirement_docker_asked_for_runs_natively() -> None:
    argv = build_command(instance(docker_enabled=True), section(), port=8001).argv
    assert argv[0] == "server"

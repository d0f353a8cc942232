"""The spec's hooks for a backend unlike the built-ins, tried on the llama.cpp spec with
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
)
from llamactl.config.models import BackendConfig, DockerConfig
from llamactl.instance.options import Options

LLAMA = BackendType.LLAMA_CPP


def templated(options: BackendOptionsBase, section: BackendConfig) -> list[str]:
    assert isinstance(options, LlamaCppOptions)
    return [*section.args, f"--listen={options.host}:{options.port}", f"--file={options.model}"]


@pytest.fixture
def hooked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The llama.cpp spec with its hooks set, as ``spec_for`` answers it."""
    spec = dataclasses.replace(SPECS[LLAMA], argv_style=ArgvStyle.TEMPLATE, template_args=templated)
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

"""The custom backend without processes: its options, its entry, its argv, its docker mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamactl.backends import (
    BackendType,
    build_command,
    instance_section,
    parse_backend_options,
    section_key,
    spec_for_config_key,
)
from llamactl.backends.custom import SPEC, CustomOptions
from llamactl.config import load_config
from llamactl.config.models import BackendsConfig
from llamactl.errors import ConfigError, InvalidOptions
from llamactl.instance.options import Options
from tests.support.custom import write_config

CUSTOM = BackendType.CUSTOM
ENTRIES: dict[str, dict[str, object]] = {
    "sglang": {
        "command": "python3",
        "args": ["-m", "sglang.launch_server", "--port", "{port}", "--host", "{host}"],
        "environment": {"A": "entry"},
    },
    "boxed": {
        "command": "tabby",
        "args": ["--port={port}", "--model-dir", "/m/{model}"],
        "docker": {"image": "example/tabby", "args": ["run", "--rm"], "environment": {"D": "1"}},
    },
    "noimage": {"command": "srv", "args": ["--port", "{port}"], "docker": {"args": ["run"]}},
}


@pytest.fixture
def backends(tmp_path: Path) -> BackendsConfig:
    path = write_config(tmp_path, ENTRIES)
    return load_config(path, {}, cwd=tmp_path, home=tmp_path).backends


def instance(backend_options: dict[str, object], **settings: object) -> Options:
    typed = parse_backend_options(CUSTOM, backend_options)
    return Options(backend_type=CUSTOM, backend_options=typed, **settings)  # type: ignore[arg-type]


def command_of(backends: BackendsConfig, options: Options) -> tuple[str, ...]:
    section = instance_section(backends, options.backend_options)
    return build_command(options, section, port=8123, name="inst").argv


def test_the_entry_runs_first_then_the_instances_arguments(backends: BackendsConfig) -> None:
    options = instance(
        {"name": "sglang", "model": "org/m", "args": ["--model-path", "{model}", "--tp", "2"]},
        environment={"B": "instance"},
    )
    section = instance_section(backends, options.backend_options)
    command = build_command(options, section, port=8123, name="inst")
    assert command.argv == (
        "python3", "-m", "sglang.launch_server", "--port", "8123", "--host", "127.0.0.1",
        "--model-path", "org/m", "--tp", "2",
    )  # fmt: skip
    assert dict(command.environment) == {"A": "entry", "B": "instance"}


def test_only_the_three_placeholders_are_replaced(backends: BackendsConfig) -> None:
    options = instance(
        {"name": "sglang", "host": "0.0.0.0", "args": ['{"a": {port}}', "{name}", "{{port}}"]}
    )
    assert command_of(backends, options)[-3:] == ('{"a": 8123}', "{name}", "{8123}")
    assert "0.0.0.0" in command_of(backends, options)


def test_unknown_options_are_refused_not_passed_on() -> None:
    with pytest.raises(InvalidOptions, match=r"^ctx_size: unknown custom option") as caught:
        CustomOptions.from_json({"name": "x", "ctx_size": 4})
    assert caught.value.field == "ctx_size"
    assert "known: name, model, port, host, args" in caught.value.message


def test_the_instance_names_its_entry(backends: BackendsConfig) -> None:
    options = instance({"name": "nope"})
    with pytest.raises(InvalidOptions, match=r"configured: boxed, noimage, sglang\)$") as caught:
        instance_section(backends, options.backend_options)
    assert caught.value.field == "backend_options.name"
    assert section_key(instance({"name": "boxed"}).backend_options) == "backends.custom.boxed"


def test_docker_runs_the_entrys_image_with_the_same_arguments(backends: BackendsConfig) -> None:
    options = instance({"name": "boxed", "model": "q4"}, docker_enabled=True)
    assert command_of(backends, options) == (
        "docker", "run", "--rm", "-e", "D=1", "example/tabby",
        "--port=8123", "--model-dir", "/m/q4",
    )  # fmt: skip


def test_docker_asked_for_without_a_docker_part_is_refused_naming_it(
    backends: BackendsConfig,
) -> None:
    options = instance({"name": "sglang"}, docker_enabled=True)
    with pytest.raises(ConfigError, match=r"^backends\.custom\.sglang\.docker: ") as caught:
        command_of(backends, options)
    assert caught.value.key == "backends.custom.sglang.docker"
    assert command_of(backends, instance({"name": "sglang"}, docker_enabled=False))[0] == "python3"


def test_docker_without_an_image_names_the_entrys_image(backends: BackendsConfig) -> None:
    options = instance({"name": "noimage"}, docker_enabled=True)
    with pytest.raises(ConfigError, match=r"^backends\.custom\.noimage\.docker\.image: "):
        command_of(backends, options)


def test_the_spec_reads_the_entry_and_the_model() -> None:
    options = CustomOptions.from_json({"name": "x", "model": "org/m"})
    assert spec_for_config_key("custom") is SPEC
    assert SPEC.served_model_name(options) == "org/m"
    assert SPEC.api_key(options) is None
    assert SPEC.executables == frozenset()

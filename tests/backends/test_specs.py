"""Every backend type has one complete spec, and the other layers agree with it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from llamactl.backends import (
    OPTIONS_CLASSES,
    SPECS,
    ArgvStyle,
    BackendSpec,
    BackendType,
    CommandParseError,
    LlamaCppOptions,
    MlxLmOptions,
    VllmOptions,
    instance_section,
    parse_command,
    spec_for,
    spec_for_config_key,
)
from llamactl.config import load_config
from llamactl.config.models import BackendsConfig
from llamactl.config.registry import find_setting

# Fields that may be left at their defaults: not every backend has a subcommand.
# A backend with no executables has no command line to paste (custom).
OPTIONAL = {
    "served_name_field",
    "subcommand",
    "python_module",
    "section_of",
    "section_key_of",
    "template_args",
    "executables",
}


@pytest.mark.parametrize("backend_type", list(BackendType), ids=str)
def test_every_backend_type_has_a_complete_spec(backend_type: BackendType) -> None:
    spec = SPECS[backend_type]
    assert isinstance(spec, BackendSpec)
    assert spec.backend_type is backend_type
    for field in dataclasses.fields(BackendSpec):
        value = getattr(spec, field.name)
        if field.name not in OPTIONAL:
            assert value not in (None, "", frozenset(), (), range(0)), field.name
    assert spec.options_class.BACKEND_TYPE is backend_type
    assert OPTIONS_CLASSES[backend_type] is spec.options_class
    assert spec.health_path.startswith("/")
    assert all(name in spec.options_class.FIELD_KINDS for name in spec.top_fields)
    if spec.served_name_field is not None:
        assert spec.served_name_field in spec.options_class.FIELD_KINDS
    assert (spec.argv_style is ArgvStyle.TEMPLATE) is (spec.template_args is not None)
    if not spec.executables:
        with pytest.raises(CommandParseError, match="no command line to read"):
            parse_command(backend_type, "server --port 1")


def test_specs_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec_for(BackendType.VLLM).label = "changed"  # type: ignore[misc]


@pytest.mark.parametrize("spec", list(SPECS.values()), ids=lambda spec: spec.config_key)
def test_the_config_key_names_a_configuration_section(spec: BackendSpec) -> None:
    assert spec_for_config_key(spec.config_key) is spec
    # A backend whose instances each name their entry has sections backends.<key>.<name>.
    section = ("backends", spec.config_key, *(("entry",) if spec.section_of else ()))
    assert find_setting((*section, "command")) is not None
    assert find_setting((*section, "args")) is not None
    assert find_setting((*section, "environment")) is not None
    if spec.section_of is None:
        assert find_setting((*section, "response_headers")) is not None
    docker = find_setting((*section, "docker", "image"))
    assert (docker is not None) is spec.supports_docker
    aliases = {info.alias or name for name, info in BackendsConfig.model_fields.items()}
    assert spec.config_key in aliases


def test_config_keys_and_executables_are_unique() -> None:
    keys = [spec.config_key for spec in SPECS.values()]
    assert len(set(keys)) == len(keys)
    names = [name for spec in SPECS.values() for name in spec.executables]
    assert len(set(names)) == len(names)


def test_a_backend_type_is_not_a_config_key() -> None:
    assert spec_for_config_key("llama_cpp") is None
    assert spec_for("llama_cpp") is SPECS[BackendType.LLAMA_CPP]


@pytest.mark.parametrize(
    ("options", "api_key", "served"),
    [
        (LlamaCppOptions.from_json({"api_key": "k", "alias": "a"}), "k", "a"),
        (LlamaCppOptions.from_json({"model": "/m.gguf"}), None, None),
        (MlxLmOptions.from_json({"model": "mlx-community/x"}), None, "mlx-community/x"),
        (VllmOptions.from_json({"model": "org/m", "api_key": ["a", "b"]}), None, "org/m"),
        (VllmOptions.from_json({"model": "org/m", "served_model_name": ["s", "t"]}), None, "s"),
    ],
)
def test_api_key_and_served_model_name(
    options: LlamaCppOptions | MlxLmOptions | VllmOptions, api_key: str | None, served: str | None
) -> None:
    spec = spec_for(options.BACKEND_TYPE)
    assert spec.api_key(options) == api_key
    assert spec.served_model_name(options) == served


def test_a_built_in_backend_runs_every_instance_from_its_one_section(tmp_path: Path) -> None:
    environ = {"LLAMACTL_VLLM_COMMAND": "/opt/vllm"}
    config = load_config(None, environ, cwd=tmp_path, home=tmp_path)
    section = instance_section(config.backends, VllmOptions.from_json({"model": "org/m"}))
    assert section is config.backends.vllm
    assert section.command == "/opt/vllm"
    assert config.backends.section("llama-cpp") is config.backends.llama_cpp
    with pytest.raises(KeyError, match=r"backends\.nope"):
        config.backends.section("nope")

"""``--set``, ``--extra`` and ``--unset`` of create and edit, against a real server.

A key may be a typed option in any spelling or an instance setting; anything else is
refused before a request is made, with the closest names and a pointer to ``--extra``.
"""

from __future__ import annotations

import json

import httpx
import pytest

from llamactl.backends import LlamaCppOptions, backend_args, parse_backend_options
from llamactl.cli.options import INSTANCE_SETTINGS
from llamactl.instance import Options
from tests.support.cli import Server, api_get, create


def options_of(server: Server, name: str) -> dict[str, object]:
    options = api_get(server, f"/instances/{name}").json()["options"]
    assert isinstance(options, dict)
    return options


def argv_of(server: Server, name: str) -> list[str]:
    backend_options = options_of(server, name)["backend_options"]
    assert isinstance(backend_options, dict)
    return backend_args(parse_backend_options("llama_cpp", backend_options))


SPELLINGS = ["ctx_size", "ctx-size", "--ctx-size", "-c", "c"]


@pytest.mark.parametrize("key", SPELLINGS)
def test_every_spelling_of_an_option_sets_the_same_option(server: Server, key: str) -> None:
    name = f"spelled-{SPELLINGS.index(key)}"
    create(server, name, "--set", "ctx_size=8192")
    result = server.run("instances", "edit", name, "--set", f"{key}=2048")
    assert result.exit_code == 0, result.output
    backend_options = options_of(server, name)["backend_options"]
    assert isinstance(backend_options, dict)
    assert backend_options["ctx_size"] == 2048
    assert "extra_args" not in backend_options
    assert argv_of(server, name).count("--ctx-size") == 1


def test_aliases_and_word_values_through_set(server: Server) -> None:
    create(server, "aliased", "--set", "ngl=auto", "--set", "--n-gpu-layers-draft=all")
    backend_options = options_of(server, "aliased")["backend_options"]
    assert isinstance(backend_options, dict)
    assert backend_options["gpu_layers"] == "auto"
    assert backend_options["gpu_layers_draft"] == "all"

    bad = server.run("instances", "edit", "aliased", "--set", "ngl=lots")
    assert bad.exit_code == 1
    assert "gpu_layers: expected an integer, 'auto' or 'all', got 'lots'" in bad.stderr


@pytest.mark.parametrize(
    ("key", "value", "setting", "expected"),
    [
        ("restart_delay", "1", "restart_delay", 1),
        ("restart-delay", "4", "restart_delay", 4),
        ("--max-restarts", "-1", "max_restarts", -1),
        ("auto_restart", "false", "auto_restart", False),
        ("on_demand_start", "true", "on_demand_start", True),
        ("idle_timeout", "9", "idle_timeout", 9),
        ("environment", '{"A": "1"}', "environment", {"A": "1"}),
        ("command_override", "/opt/llama-server", "command_override", "/opt/llama-server"),
    ],
)
def test_instance_settings_set_the_setting_not_a_flag(
    server: Server, key: str, value: str, setting: str, expected: object
) -> None:
    name = f"setting-{sum(map(ord, key + value))}"
    create(server, name)
    result = server.run("instances", "edit", name, "--set", f"{key}={value}")
    assert result.exit_code == 0, result.output
    options = options_of(server, name)
    assert options[setting] == expected
    backend_options = options["backend_options"]
    assert isinstance(backend_options, dict)
    assert "extra_args" not in backend_options


def test_instance_settings_are_every_setting_of_the_options() -> None:
    fields = {field.name for field in Options.__dataclass_fields__.values()}
    assert set(INSTANCE_SETTINGS) == fields - {"backend_type", "backend_options"}


def test_an_unknown_key_is_refused_with_a_suggestion(server: Server) -> None:
    create(server, "typo")
    result = server.run("instances", "edit", "typo", "--set", "ctx-sise=2048")
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "unknown llama_cpp option or instance setting 'ctx-sise'" in message
    assert "(did you mean ctx_size" in message
    assert "use --extra ctx-sise=VALUE" in message

    setting = server.run(
        "instances", "create", "t2", "--backend", "llama_cpp", "--set", "restart_dalay=1"
    )
    assert setting.exit_code == 2
    assert "did you mean restart_delay" in " ".join(setting.stderr.split())
    assert api_get(server, "/instances/t2").status_code == 404


def test_extra_passes_a_flag_through_and_unset_removes_it(server: Server) -> None:
    create(server, "extra", "--extra", "moe-cache-mib=512", "--extra", "--no-host")
    backend_options = options_of(server, "extra")["backend_options"]
    assert isinstance(backend_options, dict)
    assert backend_options["extra_args"] == {"moe-cache-mib": "512", "no-host": ""}
    assert argv_of(server, "extra")[-3:] == ["--moe-cache-mib", "512", "--no-host"]

    typed = server.run("instances", "edit", "extra", "--extra", "ctx-size=1")
    assert typed.exit_code == 2
    assert "use --set ctx_size=VALUE" in " ".join(typed.stderr.split())

    removed = server.run("instances", "edit", "extra", "--unset", "--moe-cache-mib")
    assert removed.exit_code == 0, removed.output
    backend_options = options_of(server, "extra")["backend_options"]
    assert isinstance(backend_options, dict)
    assert backend_options["extra_args"] == {"no-host": ""}
    server.run("instances", "edit", "extra", "--unset", "no-host")
    backend_options = options_of(server, "extra")["backend_options"]
    assert isinstance(backend_options, dict)
    assert "extra_args" not in backend_options


def test_unset_takes_any_spelling_and_settings(server: Server) -> None:
    create(server, "unsets", "--set", "ctx_size=1024", "--restart-delay", "7")
    result = server.run("instances", "edit", "unsets", "--unset", "-c", "--unset", "restart-delay")
    assert result.exit_code == 0, result.output
    options = options_of(server, "unsets")
    backend_options = options["backend_options"]
    assert isinstance(backend_options, dict)
    assert "ctx_size" not in backend_options
    assert options["restart_delay"] != 7  # back to the configured default


def test_a_duplicate_left_in_extra_args_is_cleaned_by_set(server: Server) -> None:
    # What the old --set did with "ctx-size": a second --ctx-size among the extra args.
    create(server, "dup", "--set", "ctx_size=8192")
    options = options_of(server, "dup")
    backend_options = options["backend_options"]
    assert isinstance(backend_options, dict)
    backend_options["extra_args"] = {"ctx-size": "2048"}
    headers = {"Authorization": f"Bearer {server.key}"}
    put = httpx.put(f"{server.url}/api/v1/instances/dup", json=options, headers=headers)
    assert put.status_code == 200, put.text
    assert argv_of(server, "dup").count("--ctx-size") == 2

    result = server.run("instances", "edit", "dup", "--set", "--ctx-size=4096")
    assert result.exit_code == 0, result.output
    argv = argv_of(server, "dup")
    assert argv.count("--ctx-size") == 1
    assert argv[argv.index("--ctx-size") + 1] == "4096"


def test_flags_for_restarts_docker_and_command_override(server: Server) -> None:
    result = server.run(
        "instances", "create", "flagged", "--backend", "llama_cpp", "--model", "/m/x.gguf",
        "--max-restarts", "2", "--restart-delay", "3", "--no-docker",
        "--command-override", "/opt/bin/llama-server --verbose-prompt", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    options = json.loads(result.stdout)["options"]
    assert options["max_restarts"] == 2
    assert options["restart_delay"] == 3
    assert options["docker_enabled"] is False
    assert options["command_override"] == "/opt/bin/llama-server --verbose-prompt"

    edited = server.run(
        "instances", "edit", "flagged", "--max-restarts", "-1", "--unset", "command_override"
    )
    assert edited.exit_code == 0, edited.output
    options = options_of(server, "flagged")
    assert options["max_restarts"] == -1
    assert "command_override" not in options

    bad = server.run("instances", "edit", "flagged", "--max-restarts", "-2")
    assert bad.exit_code == 2


def test_field_for_reads_every_spelling() -> None:
    for key in ("ctx_size", "ctx-size", "--ctx-size", "-c", "c"):
        assert LlamaCppOptions.field_for(key) == "ctx_size"
    assert LlamaCppOptions.field_for("--fim-qwen-1.5b-default") == "fim_qwen_1_5b_default"
    assert LlamaCppOptions.field_for("restart_delay") is None

"""Options whose values are words as well as numbers: ``-ngl N|auto|all``, ``-fit on|off``.

Current llama-server documents ``-ngl, --gpu-layers, --n-gpu-layers N`` as "either an
exact number, 'auto', or 'all' (default: auto)", and the same for ``-ngld``. The value
must survive JSON, argv and parse-command, and a wrong one names the accepted forms.
"""

from __future__ import annotations

import pytest

from llamactl.backends import (
    BackendType,
    LlamaCppOptions,
    backend_args,
    parse_backend_options,
    parse_command,
)
from llamactl.errors import InvalidOptions

LLAMA = BackendType.LLAMA_CPP
FORMS = "an integer, 'auto' or 'all'"


@pytest.mark.parametrize("value", ["auto", "all", 0, 99, -1])
@pytest.mark.parametrize(
    ("field", "flag", "short"),
    [("gpu_layers", "--gpu-layers", "-ngl"), ("gpu_layers_draft", "--gpu-layers-draft", "-ngld")],
)
def test_layer_counts_take_auto_all_and_numbers(
    field: str, flag: str, short: str, value: int | str
) -> None:
    parsed = parse_command(LLAMA, f"llama-server -m /m.gguf {short} {value}")
    assert parsed.to_json() == {"model": "/m.gguf", field: value}
    assert parse_backend_options(LLAMA, parsed.to_json()) == parsed
    argv = backend_args(parsed)
    assert argv[argv.index(flag) + 1] == str(value)
    assert parse_command(LLAMA, " ".join(argv)) == parsed


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("-ngl lots", f"-ngl: expected {FORMS}, got 'lots'"),
        ("--n-gpu-layers=half", f"--n-gpu-layers: expected {FORMS}, got 'half'"),
        ("-ngld Auto", f"-ngld: expected {FORMS}, got 'Auto'"),
        ("--n-cpu-moe all", "--n-cpu-moe: expected an integer, got 'all'"),
    ],
)
def test_a_wrong_word_names_the_flag_and_the_accepted_forms(command: str, message: str) -> None:
    with pytest.raises(InvalidOptions) as caught:
        parse_command(LLAMA, f"llama-server {command}")
    assert caught.value.message == message


def test_json_refuses_other_words_naming_the_forms() -> None:
    with pytest.raises(InvalidOptions, match=rf"^ngl: expected {FORMS}, got 'many'$"):
        parse_backend_options(LLAMA, {"ngl": "many"})
    with pytest.raises(InvalidOptions, match=rf"^gpu_layers: expected {FORMS}, got 2.5$"):
        parse_backend_options(LLAMA, {"gpu_layers": 2.5})


def test_moe_options_and_their_spellings() -> None:
    parsed = parse_command(
        LLAMA, "llama-server -cmoe -ncmoe 4 -cmoed --spec-draft-ncmoe 2 --fit off -rea on"
    )
    assert parsed.to_json() == {
        "cpu_moe": True,
        "cpu_moe_draft": True,
        "fit": "off",
        "n_cpu_moe": 4,
        "n_cpu_moe_draft": 2,
        "reasoning": "on",
    }
    argv = backend_args(parsed)
    assert argv[:3] == ["--cpu-moe", "--n-cpu-moe", "4"]
    assert parse_command(LLAMA, " ".join(argv)) == parsed


def test_switches_take_only_their_own_words() -> None:
    assert parse_backend_options(LLAMA, {"fit": True}).to_json() == {"fit": "on"}
    with pytest.raises(InvalidOptions, match=r"^fit: expected one of on, off, got 'auto'$"):
        parse_backend_options(LLAMA, {"fit": "auto"})
    assert parse_command(LLAMA, "llama-server -fa auto").to_json() == {"flash_attn": "auto"}
    assert parse_command(LLAMA, "llama-server -fa").to_json() == {"flash_attn": "on"}
    assert LlamaCppOptions.SWITCHES["fit"] == ("on", "off")


def test_a_switch_followed_by_another_word_names_its_words() -> None:
    with pytest.raises(InvalidOptions, match=r"^-fit: expected one of on, off, got 'auto'$"):
        parse_command(LLAMA, "llama-server -fit auto -m /m.gguf")
    with pytest.raises(InvalidOptions, match=r"^-fa: expected one of on, off, auto, got 'yes'$"):
        parse_command(LLAMA, "llama-server -fa yes")

"""The instance naming rule: 1 to 50 of letters, digits, '_', '-', '.'; no leading '.'."""

from __future__ import annotations

import pytest

from llamactl.errors import InvalidInstanceName
from llamactl.instance import MAX_NAME_LENGTH, validate_name

VALID = [
    "a",
    "7",
    "llama2",
    "Qwen3-8B",
    "my_model-v1.5",
    "Q4_K_M.gguf",
    "a..b",
    "trailing.",
    "-leading-dash",
    "_underscore",
    "x" * 50,
]

INVALID = [
    "",
    "x" * 51,
    ".hidden",
    ".",
    "..",
    "../etc",
    "my model",
    " lead",
    "tab\there",
    "line\n",
    "a@b",
    "a/b",
    "a\\b",
    "a:b",
    "a;b",
    "é",
    "naïve",
    "a\x00b",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names_raise_with_the_name_and_the_rule(name: str) -> None:
    with pytest.raises(InvalidInstanceName) as caught:
        validate_name(name)

    message = caught.value.message
    assert repr(name) in message
    assert "1 to 50 characters" in message
    assert "does not start with '.'" in message
    assert message.endswith(".")


def test_length_limit() -> None:
    assert MAX_NAME_LENGTH == 50
    assert validate_name("n" * 50) == "n" * 50
    with pytest.raises(InvalidInstanceName):
        validate_name("n" * 51)


def test_non_string_name() -> None:
    with pytest.raises(InvalidInstanceName, match="must be a string"):
        validate_name(42)  # type: ignore[arg-type]

"""The strict value checks and the spelling of unknown values."""

from __future__ import annotations

import pytest

from llamactl.backends.values import (
    check_float,
    check_int,
    describe,
    nested,
    stringify,
)
from llamactl.errors import InvalidOptions


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("a", "a"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (4, "4"),
        (-12, "-12"),
        (0.5, "0.5"),
        (1e6, "1000000.0"),
        (1e20, "1e+20"),
        (1e-7, "1e-07"),
        (2.0, "2.0"),
    ],
)
def test_stringify(value: object, text: str) -> None:
    assert stringify("k", value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [("lots", "'lots'"), (True, "true"), (None, "null"), ([1, "a"], '[1, "a"]'), (1.5, "1.5")],
)
def test_describe(value: object, text: str) -> None:
    assert describe(value) == text


def test_check_int_edges() -> None:
    assert check_int("n", -3) == -3
    assert check_int("n", 1e3) == 1000
    with pytest.raises(InvalidOptions):
        check_int("n", float("inf"))


def test_check_float_rejects_non_finite() -> None:
    with pytest.raises(InvalidOptions, match=r"^x: expected a finite number, got "):
        check_float("x", float("-inf"))


def test_nested_moves_the_field_under_a_prefix() -> None:
    inner = InvalidOptions("gpu_layers: expected an integer, got 'lots'", field="gpu_layers")
    inner.value = "lots"

    outer = nested(nested(inner, "backend_options"), "options")

    assert outer.field == "options.backend_options.gpu_layers"
    assert outer.message == "options.backend_options.gpu_layers: expected an integer, got 'lots'"
    assert outer.value == "lots"

"""Sample values shared by the backend option tests."""

from __future__ import annotations

import random

from llamactl.backends import BackendOptionsBase, FieldKind


def sample_value(kind: FieldKind, rng: random.Random | None = None) -> object:
    """A valid, non-empty JSON value of ``kind`` (deterministic without ``rng``)."""
    if rng is None:
        return {
            FieldKind.BOOL: True,
            FieldKind.INT: 7,
            FieldKind.FLOAT: 0.25,
            FieldKind.STR: "x y",
            FieldKind.LIST: ["a", "b,c"],
        }[kind]
    match kind:
        case FieldKind.BOOL:
            return rng.choice([True, False])
        case FieldKind.INT:
            return rng.choice([0, 1, -1, 99, 2**40])
        case FieldKind.FLOAT:
            return rng.choice([0.0, 0.5, -1.25, 1e-7, 1e6, 3.0])
        case FieldKind.STR:
            return rng.choice(["a", "/m/x.gguf", "; rm -rf ~", "é ü", "--not-a-flag"])
        case FieldKind.LIST:
            return rng.choice([["one"], ["a", "b"], ["x=1", "y:2", "z"]])


def field_value(
    cls: type[BackendOptionsBase], name: str, rng: random.Random | None = None
) -> object:
    """A valid value for field ``name`` of ``cls``: switches get on/off/auto, port a port."""
    if name in cls.SWITCHES:
        words = cls.SWITCHES[name]
        return rng.choice(words) if rng else words[-1]
    if name in cls.INT_WORDS:
        return rng.choice([0, 99, *cls.INT_WORDS[name]]) if rng else cls.INT_WORDS[name][0]
    if name == "port":
        return rng.randint(1, 65535) if rng else 8123
    if name in cls.COUNTS:
        return rng.choice([0, 1, 99, 2**40]) if rng else 7
    return sample_value(cls.FIELD_KINDS[name], rng)


def full_json(cls: type[BackendOptionsBase]) -> dict[str, object]:
    """JSON with every field of ``cls`` set to a valid sample value."""
    return {name: field_value(cls, name) for name in cls.FIELD_KINDS}

"""Which options class belongs to which backend type, and the JSON entry points. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeAlias

from llamactl.backends.base import BackendType
from llamactl.backends.llama_cpp import LlamaCppOptions
from llamactl.backends.mlx_lm import MlxLmOptions
from llamactl.backends.values import expected
from llamactl.backends.vllm import VllmOptions

__all__ = [
    "OPTIONS_CLASSES",
    "BackendOptions",
    "options_class",
    "parse_backend_options",
    "parse_backend_type",
    "to_json",
]

BackendOptions: TypeAlias = LlamaCppOptions | MlxLmOptions | VllmOptions

OPTIONS_CLASSES: Mapping[BackendType, type[BackendOptions]] = MappingProxyType(
    {
        BackendType.LLAMA_CPP: LlamaCppOptions,
        BackendType.MLX_LM: MlxLmOptions,
        BackendType.VLLM: VllmOptions,
    }
)

_NAMES = frozenset(member.value for member in BackendType)
_CHOICES = ", ".join(repr(str(member)) for member in BackendType)


def parse_backend_type(value: object, field: str = "backend_type") -> BackendType:
    """Read a backend type name; anything else raises ``InvalidOptions`` naming ``field``."""
    if isinstance(value, str) and value in _NAMES:
        return BackendType(value)
    raise expected(field, f"one of {_CHOICES}", value)


def options_class(backend_type: BackendType | str) -> type[BackendOptions]:
    """The options class of ``backend_type``."""
    return OPTIONS_CLASSES[parse_backend_type(backend_type)]


def parse_backend_options(
    backend_type: BackendType | str, data: Mapping[str, object]
) -> BackendOptions:
    """Validate decoded JSON ``data`` as the options of ``backend_type``.

    Raises ``InvalidOptions`` whose ``field`` is the offending key as given in ``data``.
    """
    return options_class(backend_type).from_json(data)


def to_json(options: BackendOptions) -> dict[str, object]:
    """The JSON form of ``options``: set fields only, keys sorted."""
    return options.to_json()

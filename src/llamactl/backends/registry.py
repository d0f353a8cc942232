"""Every backend's spec and options class by backend type, and the JSON entry points. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeAlias, cast

from llamactl.backends import custom, llama_cpp, mlx_lm, vllm
from llamactl.backends.base import BackendOptionsBase, BackendType
from llamactl.backends.custom import CustomOptions
from llamactl.backends.llama_cpp import LlamaCppOptions
from llamactl.backends.mlx_lm import MlxLmOptions
from llamactl.backends.spec import BackendSpec
from llamactl.backends.values import expected
from llamactl.backends.vllm import VllmOptions
from llamactl.config.models import BackendConfig, BackendsConfig

__all__ = [
    "OPTIONS_CLASSES",
    "SPECS",
    "BackendOptions",
    "instance_section",
    "options_class",
    "parse_backend_options",
    "parse_backend_type",
    "section_key",
    "spec_for",
    "spec_for_config_key",
    "to_json",
]

BackendOptions: TypeAlias = LlamaCppOptions | MlxLmOptions | VllmOptions | CustomOptions

SPECS: Mapping[BackendType, BackendSpec] = MappingProxyType(
    {spec.backend_type: spec for spec in (llama_cpp.SPEC, mlx_lm.SPEC, vllm.SPEC, custom.SPEC)}
)

OPTIONS_CLASSES: Mapping[BackendType, type[BackendOptions]] = MappingProxyType(
    {kind: cast("type[BackendOptions]", spec.options_class) for kind, spec in SPECS.items()}
)

_BY_CONFIG_KEY: Mapping[str, BackendSpec] = MappingProxyType(
    {spec.config_key: spec for spec in SPECS.values()}
)
_NAMES = frozenset(member.value for member in BackendType)
_CHOICES = ", ".join(repr(str(member)) for member in BackendType)


def parse_backend_type(value: object, field: str = "backend_type") -> BackendType:
    """Read a backend type name; anything else raises ``InvalidOptions`` naming ``field``."""
    if isinstance(value, str) and value in _NAMES:
        return BackendType(value)
    raise expected(field, f"one of {_CHOICES}", value)


def spec_for(backend_type: BackendType | str) -> BackendSpec:
    """The spec of ``backend_type``."""
    if isinstance(backend_type, BackendType):  # the usual case, on the proxy's hot path
        return SPECS[backend_type]
    return SPECS[parse_backend_type(backend_type)]


def spec_for_config_key(config_key: str) -> BackendSpec | None:
    """The spec whose configuration section is ``backends.<config_key>``, if any."""
    return _BY_CONFIG_KEY.get(config_key)


def instance_section(backends: BackendsConfig, options: BackendOptionsBase) -> BackendConfig:
    """The configuration section that runs an instance with ``options``.

    Raises ``InvalidOptions`` naming the problem when its backend has none it can use.
    """
    spec = spec_for(options.BACKEND_TYPE)
    if spec.section_of is not None:
        return spec.section_of(backends, options)
    return backends.section(spec.config_key)


def section_key(options: BackendOptionsBase) -> str:
    """The dotted key of the section ``instance_section`` gives (``backends.llama-cpp``)."""
    spec = spec_for(options.BACKEND_TYPE)
    if spec.section_key_of is not None:
        return spec.section_key_of(options)
    return f"backends.{spec.config_key}"


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

"""Typed options of ``mlx_lm.server``: no aliases, no list fields, no docker mode. No I/O."""

from __future__ import annotations

from typing import ClassVar

from llamactl.backends.base import BackendOptionsBase, BackendType
from llamactl.backends.spec import ArgvStyle, BackendSpec

__all__ = ["SPEC", "MlxLmOptions"]


class MlxLmOptions(BackendOptionsBase):
    """Options of ``mlx_lm.server``; every field is unset (``None``) unless given."""

    BACKEND_TYPE: ClassVar[BackendType] = BackendType.MLX_LM
    COUNTS: ClassVar[frozenset[str]] = frozenset({"max_tokens", "num_draft_tokens"})

    # connection
    model: str | None = None
    host: str | None = None
    port: int | None = None

    # model and adapters
    adapter_path: str | None = None
    draft_model: str | None = None
    num_draft_tokens: int | None = None
    trust_remote_code: bool | None = None

    # logging and templates
    log_level: str | None = None
    chat_template: str | None = None
    use_default_chat_template: bool | None = None
    chat_template_args: str | None = None  # a JSON object, passed as one string

    # sampling defaults
    temp: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    max_tokens: int | None = None


def _no_api_key(options: BackendOptionsBase) -> str | None:
    return None


def _served_model_name(options: BackendOptionsBase) -> str | None:
    assert isinstance(options, MlxLmOptions)
    return options.model


SPEC = BackendSpec(
    backend_type=BackendType.MLX_LM,
    config_key="mlx",
    label="MLX-LM (mlx_lm.server)",
    executables=frozenset({"mlx_lm.server"}),
    options_class=MlxLmOptions,
    argv_style=ArgvStyle.ARGPARSE,
    positional_model=False,
    supports_docker=False,  # Apple silicon only: there is no container image
    rewrites_model=True,
    messages_api=False,  # mlx_lm.server has no /v1/messages
    health_path="/health",
    api_key=_no_api_key,
    served_model_name=_served_model_name,
    python_module="mlx_lm.server",
    top_fields=("model", "temp", "max_tokens"),
)

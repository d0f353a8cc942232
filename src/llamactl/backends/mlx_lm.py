"""Typed options of ``mlx_lm.server``: no aliases, no list fields, no docker mode. No I/O."""

from __future__ import annotations

from typing import ClassVar

from llamactl.backends.base import BackendOptionsBase, BackendType

__all__ = ["MlxLmOptions"]


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

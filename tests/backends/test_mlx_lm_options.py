"""MLX-LM options: inventory and what sets the backend apart (no aliases, no lists)."""

from __future__ import annotations

from llamactl.backends import BackendType, FieldKind, MlxLmOptions, parse_backend_options

MLX_LM_FIELDS = [
    "model",
    "host",
    "port",
    "adapter_path",
    "draft_model",
    "num_draft_tokens",
    "trust_remote_code",
    "log_level",
    "chat_template",
    "use_default_chat_template",
    "chat_template_args",
    "temp",
    "top_p",
    "top_k",
    "min_p",
    "max_tokens",
]


def test_fields_are_the_16_mlx_lm_server_options_in_order() -> None:
    assert len(MLX_LM_FIELDS) == 16
    assert list(MlxLmOptions.FIELD_ORDER) == MLX_LM_FIELDS
    assert set(MlxLmOptions.model_fields) == {*MLX_LM_FIELDS, "extra_args"}


def test_field_kinds() -> None:
    kinds = MlxLmOptions.FIELD_KINDS
    assert [name for name in MLX_LM_FIELDS if kinds[name] is FieldKind.INT] == [
        "port",
        "num_draft_tokens",
        "top_k",
        "max_tokens",
    ]
    assert [name for name in MLX_LM_FIELDS if kinds[name] is FieldKind.FLOAT] == [
        "temp",
        "top_p",
        "min_p",
    ]
    assert [name for name in MLX_LM_FIELDS if kinds[name] is FieldKind.BOOL] == [
        "trust_remote_code",
        "use_default_chat_template",
    ]
    assert FieldKind.LIST not in kinds.values()


def test_no_aliases_and_no_multi_valued_flags() -> None:
    assert dict(MlxLmOptions.ALIASES) == {}
    assert frozenset() == MlxLmOptions.MULTI_VALUED
    assert frozenset() == MlxLmOptions.VARIADIC


def test_llama_aliases_are_unknown_keys_here() -> None:
    options = parse_backend_options(BackendType.MLX_LM, {"m": "model", "ngl": 99})

    assert options.model is None
    assert options.extra_args == {"m": "model", "ngl": "99"}


def test_typical_options() -> None:
    data = {"model": "mlx-community/Qwen3-4B-4bit", "temp": 0.7, "max_tokens": 2048}

    options = parse_backend_options(BackendType.MLX_LM, data)

    assert isinstance(options, MlxLmOptions)
    assert options.set_fields() == [
        ("model", "mlx-community/Qwen3-4B-4bit"),
        ("temp", 0.7),
        ("max_tokens", 2048),
    ]

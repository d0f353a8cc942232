"""llama.cpp options: field inventory, aliases, types, extra args, JSON in and out."""

from __future__ import annotations

import pytest

from llamactl.backends import (
    LLAMA_CPP_ALIASES,
    BackendType,
    FieldKind,
    LlamaCppOptions,
    parse_backend_options,
)
from llamactl.errors import InvalidOptions
from tests.support.backend_samples import field_value

# The llama-server options in command-line order, as the instance JSON format defines them.
LLAMA_CPP_FIELDS_TEXT = """
verbose_prompt threads threads_batch cpu_mask cpu_range cpu_strict prio poll cpu_mask_batch
cpu_range_batch cpu_strict_batch prio_batch poll_batch ctx_size predict batch_size ubatch_size
keep flash_attn no_perf escape no_escape rope_scaling rope_scale rope_freq_base rope_freq_scale
yarn_orig_ctx yarn_ext_factor yarn_attn_factor yarn_beta_slow yarn_beta_fast dump_kv_cache
no_kv_offload cache_type_k cache_type_v defrag_thold parallel mlock no_mmap numa device
override_tensor cpu_moe n_cpu_moe gpu_layers split_mode tensor_split main_gpu fit fit_target
fit_ctx check_tensors override_kv lora
lora_scaled control_vector control_vector_scaled control_vector_layer_range model model_url
hf_repo hf_repo_draft hf_file hf_repo_v hf_file_v hf_token log_disable log_file log_colors
verbose verbosity log_prefix log_timestamps samplers seed sampling_seq ignore_eos temp top_k
top_p min_p xtc_probability xtc_threshold typical repeat_last_n repeat_penalty
presence_penalty frequency_penalty dry_multiplier dry_base dry_allowed_length
dry_penalty_last_n dry_sequence_breaker dynatemp_range dynatemp_exp mirostat mirostat_lr
mirostat_ent logit_bias grammar grammar_file json_schema json_schema_file no_context_shift
special no_warmup spm_infill pooling cont_batching no_cont_batching mmproj mmproj_url
no_mmproj no_mmproj_offload alias host port path no_webui embedding reranking api_key
api_key_file ssl_key_file ssl_cert_file chat_template_kwargs timeout threads_http cache_reuse
metrics slots props no_slots slot_save_path jinja reasoning_format reasoning reasoning_budget
chat_template chat_template_file no_prefill_assistant slot_prompt_similarity
lora_init_without_apply draft_max draft_min draft_p_min ctx_size_draft device_draft
gpu_layers_draft cpu_moe_draft n_cpu_moe_draft model_draft cache_type_k_draft cache_type_v_draft
model_vocoder
tts_use_guide_tokens embd_bge_small_en_default embd_e5_small_en_default
embd_gte_small_default fim_qwen_1_5b_default fim_qwen_3b_default fim_qwen_7b_default
fim_qwen_7b_spec fim_qwen_14b_spec
"""
LLAMA_CPP_FIELDS = LLAMA_CPP_FIELDS_TEXT.split()

LIST_FIELDS = {
    "override_tensor",
    "override_kv",
    "lora",
    "lora_scaled",
    "control_vector",
    "control_vector_scaled",
    "dry_sequence_breaker",
    "logit_bias",
}

EXPECTED_ALIASES = {
    "t": "threads",
    "tb": "threads_batch",
    "C": "cpu_mask",
    "Cr": "cpu_range",
    "Cb": "cpu_mask_batch",
    "Crb": "cpu_range_batch",
    "c": "ctx_size",
    "n": "predict",
    "n_predict": "predict",
    "b": "batch_size",
    "ub": "ubatch_size",
    "fa": "flash_attn",
    "e": "escape",
    "dkvc": "dump_kv_cache",
    "nkvo": "no_kv_offload",
    "ctk": "cache_type_k",
    "ctv": "cache_type_v",
    "dt": "defrag_thold",
    "np": "parallel",
    "dev": "device",
    "ot": "override_tensor",
    "cmoe": "cpu_moe",
    "ncmoe": "n_cpu_moe",
    "ngl": "gpu_layers",
    "n_gpu_layers": "gpu_layers",
    "sm": "split_mode",
    "ts": "tensor_split",
    "mg": "main_gpu",
    "fitt": "fit_target",
    "fitc": "fit_ctx",
    "m": "model",
    "mu": "model_url",
    "hf": "hf_repo",
    "hfr": "hf_repo",
    "hfd": "hf_repo_draft",
    "hfrd": "hf_repo_draft",
    "hff": "hf_file",
    "hfv": "hf_repo_v",
    "hfrv": "hf_repo_v",
    "hffv": "hf_file_v",
    "hft": "hf_token",
    "v": "verbose",
    "log_verbose": "verbose",
    "lv": "verbosity",
    "log_verbosity": "verbosity",
    "s": "seed",
    "sampler_seq": "sampling_seq",
    "l": "logit_bias",
    "j": "json_schema",
    "jf": "json_schema_file",
    "sp": "special",
    "cb": "cont_batching",
    "nocb": "no_cont_batching",
    "mm": "mmproj",
    "mmu": "mmproj_url",
    "rea": "reasoning",
    "a": "alias",
    "embeddings": "embedding",
    "rerank": "reranking",
    "to": "timeout",
    "sps": "slot_prompt_similarity",
    "draft": "draft_max",
    "draft_n": "draft_max",
    "draft_n_min": "draft_min",
    "cd": "ctx_size_draft",
    "devd": "device_draft",
    "ngld": "gpu_layers_draft",
    "n_gpu_layers_draft": "gpu_layers_draft",
    "spec_draft_ngl": "gpu_layers_draft",
    "cmoed": "cpu_moe_draft",
    "spec_draft_cpu_moe": "cpu_moe_draft",
    "ncmoed": "n_cpu_moe_draft",
    "spec_draft_ncmoe": "n_cpu_moe_draft",
    "spec_draft_n_cpu_moe": "n_cpu_moe_draft",
    "md": "model_draft",
    "ctkd": "cache_type_k_draft",
    "ctvd": "cache_type_v_draft",
    "mv": "model_vocoder",
}


def parse(data: dict[str, object]) -> LlamaCppOptions:
    options = parse_backend_options(BackendType.LLAMA_CPP, data)
    assert isinstance(options, LlamaCppOptions)
    return options


# -- inventory -------------------------------------------------------------------------------


def test_fields_are_the_164_llama_server_options_in_command_line_order() -> None:
    assert len(LLAMA_CPP_FIELDS) == 164
    assert list(LlamaCppOptions.FIELD_ORDER) == LLAMA_CPP_FIELDS
    assert set(LlamaCppOptions.model_fields) == {*LLAMA_CPP_FIELDS, "extra_args"}


@pytest.mark.parametrize(
    ("field", "kind"),
    [
        ("gpu_layers", FieldKind.INT),
        ("gpu_layers_draft", FieldKind.INT),
        ("n_cpu_moe", FieldKind.INT),
        ("cpu_moe", FieldKind.BOOL),
        ("fit", FieldKind.STR),
        ("reasoning", FieldKind.STR),
        ("ctx_size", FieldKind.INT),
        ("temp", FieldKind.FLOAT),
        ("defrag_thold", FieldKind.FLOAT),
        ("flash_attn", FieldKind.STR),
        ("log_colors", FieldKind.STR),
        ("tensor_split", FieldKind.STR),
        ("mlock", FieldKind.BOOL),
        ("fim_qwen_14b_spec", FieldKind.BOOL),
        ("lora", FieldKind.LIST),
    ],
)
def test_field_kinds(field: str, kind: FieldKind) -> None:
    assert LlamaCppOptions.FIELD_KINDS[field] is kind


def test_list_fields_are_exactly_the_multi_valued_ones() -> None:
    kinds = LlamaCppOptions.FIELD_KINDS
    assert {name for name, kind in kinds.items() if kind is FieldKind.LIST} == LIST_FIELDS
    assert LIST_FIELDS == LlamaCppOptions.MULTI_VALUED
    assert frozenset() == LlamaCppOptions.VARIADIC


def test_kind_counts() -> None:
    counts = {kind: 0 for kind in FieldKind}
    for kind in LlamaCppOptions.FIELD_KINDS.values():
        counts[kind] += 1
    assert counts == {
        FieldKind.BOOL: 43,
        FieldKind.INT: 36,
        FieldKind.FLOAT: 25,
        FieldKind.STR: 52,
        FieldKind.LIST: 8,
    }


def test_flag_names() -> None:
    assert LlamaCppOptions.flag_name("gpu_layers") == "--gpu-layers"
    assert LlamaCppOptions.flag_name("fim_qwen_1_5b_default") == "--fim-qwen-1.5b-default"


# -- aliases ---------------------------------------------------------------------------------


def test_alias_table_is_complete() -> None:
    assert dict(LLAMA_CPP_ALIASES) == EXPECTED_ALIASES
    assert set(EXPECTED_ALIASES.values()) <= set(LLAMA_CPP_FIELDS)
    assert not set(EXPECTED_ALIASES) & set(LLAMA_CPP_FIELDS)


@pytest.mark.parametrize(("alias", "field"), sorted(EXPECTED_ALIASES.items()))
def test_alias_sets_its_field(alias: str, field: str) -> None:
    value = field_value(LlamaCppOptions, field)

    options = parse({alias: value})

    assert getattr(options, field) == value
    assert options.extra_args == {}
    assert options.to_json() == {field: value}


@pytest.mark.parametrize(("alias", "field"), sorted(EXPECTED_ALIASES.items()))
def test_alias_bad_type_names_the_alias(alias: str, field: str) -> None:
    is_str = LlamaCppOptions.FIELD_KINDS[field] is FieldKind.STR
    bad: object = ["lots"] if is_str else "lots"

    with pytest.raises(InvalidOptions) as caught:
        parse({alias: bad})

    assert caught.value.field == alias
    assert caught.value.message.startswith(f"{alias}: expected ")


@pytest.mark.parametrize(
    "data",
    [
        {"gpu_layers": 10, "ngl": 20},
        {"ngl": 20, "gpu_layers": 10},
        {"n_gpu_layers": 20, "gpu_layers": 10},
    ],
)
def test_alias_overrides_canonical_key(data: dict[str, object]) -> None:
    assert parse(data).gpu_layers == 20


def test_null_alias_does_not_unset_the_canonical_value() -> None:
    assert parse({"ctx_size": 4096, "c": None}).ctx_size == 4096


# -- llama-specific values -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "stored"),
    [("on", "on"), ("off", "off"), ("auto", "auto"), (True, "on"), (False, "off")],
)
def test_flash_attn_takes_a_mode_or_a_legacy_boolean(value: object, stored: str) -> None:
    assert parse({"flash_attn": value}).flash_attn == stored
    assert parse({"fa": value}).flash_attn == stored


def test_flash_attn_rejects_numbers() -> None:
    with pytest.raises(InvalidOptions, match=r"^flash_attn: expected a string, got 1$"):
        parse({"flash_attn": 1})


def test_list_fields_keep_order_and_duplicates() -> None:
    options = parse({"lora": ["b.gguf", "a.gguf", "b.gguf"], "override_kv": ["k=int:1"]})

    assert options.lora == ["b.gguf", "a.gguf", "b.gguf"]
    assert options.override_kv == ["k=int:1"]


def test_reference_example_options() -> None:
    options = parse({"model": "/m.gguf", "ctx_size": 4096, "gpu_layers": 99, "port": 8000})

    assert options.set_fields() == [
        ("ctx_size", 4096),
        ("gpu_layers", 99),
        ("model", "/m.gguf"),
        ("port", 8000),
    ]


@pytest.mark.parametrize("field", ["flash_attn", "log_colors"])
def test_switches_take_only_on_off_auto(field: str) -> None:
    assert getattr(parse({field: "auto"}), field) == "auto"
    assert getattr(parse({field: False}), field) == "off"
    with pytest.raises(InvalidOptions, match=f"{field}.*one of on, off, auto.*maybe"):
        parse({field: "maybe"})

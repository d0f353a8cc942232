"""Typed options of llama.cpp's ``llama-server``.

Fields are the server's long options, keyed by their JSON (snake_case) names and declared
in command-line order. Short and alternative spellings (``ngl``, ``c``, ``m``, ...) are
accepted on input through ``ALIASES`` and never written back. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

from llamactl.backends.base import BackendOptionsBase, BackendType
from llamactl.backends.spec import ArgvStyle, BackendSpec

__all__ = ["LLAMA_CPP_ALIASES", "SPEC", "LlamaCppOptions"]

# Alternative input keys → the field they set. A value under an alias overrides the
# value under the canonical key; when several aliases of one field are given, the one
# listed last here wins.
LLAMA_CPP_ALIASES = MappingProxyType(
    {
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
)


class LlamaCppOptions(BackendOptionsBase):
    """Options of ``llama-server``; every field is unset (``None``) unless given."""

    BACKEND_TYPE: ClassVar[BackendType] = BackendType.LLAMA_CPP
    ALIASES: ClassVar[Mapping[str, str]] = LLAMA_CPP_ALIASES
    MULTI_VALUED: ClassVar[frozenset[str]] = frozenset(
        {
            "override_tensor",
            "override_kv",
            "lora",
            "lora_scaled",
            "control_vector",
            "control_vector_scaled",
            "dry_sequence_breaker",
            "logit_bias",
        }
    )
    # llama-server takes these words here; older records stored a boolean.
    SWITCHES: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType(
        {
            "flash_attn": ("on", "off", "auto"),
            "fit": ("on", "off"),
            "log_colors": ("on", "off", "auto"),
            "reasoning": ("on", "off", "auto"),
        }
    )
    # Layer counts that also take "auto" (llama-server's default) or "all".
    INT_WORDS: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType(
        {"gpu_layers": ("auto", "all"), "gpu_layers_draft": ("auto", "all")}
    )
    # Sizes whose help text has no negative value (0 means "from the model" or "off").
    COUNTS: ClassVar[frozenset[str]] = frozenset(
        {"ctx_size", "ctx_size_draft", "batch_size", "ubatch_size", "draft_max", "draft_min"}
    )
    FLAG_OVERRIDES: ClassVar[Mapping[str, str]] = MappingProxyType(
        {"fim_qwen_1_5b_default": "--fim-qwen-1.5b-default"}
    )

    # common
    verbose_prompt: bool | None = None
    threads: int | None = None
    threads_batch: int | None = None
    cpu_mask: str | None = None
    cpu_range: str | None = None
    cpu_strict: int | None = None
    prio: int | None = None
    poll: int | None = None
    cpu_mask_batch: str | None = None
    cpu_range_batch: str | None = None
    cpu_strict_batch: int | None = None
    prio_batch: int | None = None
    poll_batch: int | None = None
    ctx_size: int | None = None
    predict: int | None = None
    batch_size: int | None = None
    ubatch_size: int | None = None
    keep: int | None = None
    flash_attn: str | None = None
    no_perf: bool | None = None
    escape: bool | None = None
    no_escape: bool | None = None
    rope_scaling: str | None = None
    rope_scale: float | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    yarn_orig_ctx: int | None = None
    yarn_ext_factor: float | None = None
    yarn_attn_factor: float | None = None
    yarn_beta_slow: float | None = None
    yarn_beta_fast: float | None = None
    dump_kv_cache: bool | None = None
    no_kv_offload: bool | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    defrag_thold: float | None = None
    parallel: int | None = None
    mlock: bool | None = None
    no_mmap: bool | None = None
    numa: str | None = None
    device: str | None = None
    override_tensor: list[str] | None = None
    cpu_moe: bool | None = None
    n_cpu_moe: int | None = None
    gpu_layers: int | str | None = None
    split_mode: str | None = None
    tensor_split: str | None = None
    main_gpu: int | None = None
    fit: str | None = None
    fit_target: str | None = None
    fit_ctx: int | None = None
    check_tensors: bool | None = None
    override_kv: list[str] | None = None
    lora: list[str] | None = None
    lora_scaled: list[str] | None = None
    control_vector: list[str] | None = None
    control_vector_scaled: list[str] | None = None
    control_vector_layer_range: str | None = None
    model: str | None = None
    model_url: str | None = None
    hf_repo: str | None = None
    hf_repo_draft: str | None = None
    hf_file: str | None = None
    hf_repo_v: str | None = None
    hf_file_v: str | None = None
    hf_token: str | None = None
    log_disable: bool | None = None
    log_file: str | None = None
    log_colors: str | None = None
    verbose: bool | None = None
    verbosity: int | None = None
    log_prefix: bool | None = None
    log_timestamps: bool | None = None

    # sampling
    samplers: str | None = None
    seed: int | None = None
    sampling_seq: str | None = None
    ignore_eos: bool | None = None
    temp: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    xtc_probability: float | None = None
    xtc_threshold: float | None = None
    typical: float | None = None
    repeat_last_n: int | None = None
    repeat_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_penalty_last_n: int | None = None
    dry_sequence_breaker: list[str] | None = None
    dynatemp_range: float | None = None
    dynatemp_exp: float | None = None
    mirostat: int | None = None
    mirostat_lr: float | None = None
    mirostat_ent: float | None = None
    logit_bias: list[str] | None = None
    grammar: str | None = None
    grammar_file: str | None = None
    json_schema: str | None = None
    json_schema_file: str | None = None

    # server
    no_context_shift: bool | None = None
    special: bool | None = None
    no_warmup: bool | None = None
    spm_infill: bool | None = None
    pooling: str | None = None
    cont_batching: bool | None = None
    no_cont_batching: bool | None = None
    mmproj: str | None = None
    mmproj_url: str | None = None
    no_mmproj: bool | None = None
    no_mmproj_offload: bool | None = None
    alias: str | None = None
    host: str | None = None
    port: int | None = None
    path: str | None = None
    no_webui: bool | None = None
    embedding: bool | None = None
    reranking: bool | None = None
    api_key: str | None = None
    api_key_file: str | None = None
    ssl_key_file: str | None = None
    ssl_cert_file: str | None = None
    chat_template_kwargs: str | None = None
    timeout: int | None = None
    threads_http: int | None = None
    cache_reuse: int | None = None
    metrics: bool | None = None
    slots: bool | None = None
    props: bool | None = None
    no_slots: bool | None = None
    slot_save_path: str | None = None
    jinja: bool | None = None
    reasoning_format: str | None = None
    reasoning: str | None = None
    reasoning_budget: int | None = None
    chat_template: str | None = None
    chat_template_file: str | None = None
    no_prefill_assistant: bool | None = None
    slot_prompt_similarity: float | None = None
    lora_init_without_apply: bool | None = None
    draft_max: int | None = None
    draft_min: int | None = None
    draft_p_min: float | None = None
    ctx_size_draft: int | None = None
    device_draft: str | None = None
    gpu_layers_draft: int | str | None = None
    cpu_moe_draft: bool | None = None
    n_cpu_moe_draft: int | None = None
    model_draft: str | None = None
    cache_type_k_draft: str | None = None
    cache_type_v_draft: str | None = None

    # audio
    model_vocoder: str | None = None
    tts_use_guide_tokens: bool | None = None

    # built-in model presets
    embd_bge_small_en_default: bool | None = None
    embd_e5_small_en_default: bool | None = None
    embd_gte_small_default: bool | None = None
    fim_qwen_1_5b_default: bool | None = None
    fim_qwen_3b_default: bool | None = None
    fim_qwen_7b_default: bool | None = None
    fim_qwen_7b_spec: bool | None = None
    fim_qwen_14b_spec: bool | None = None


def _api_key(options: BackendOptionsBase) -> str | None:
    assert isinstance(options, LlamaCppOptions)
    return options.api_key


def _served_model_name(options: BackendOptionsBase) -> str | None:
    assert isinstance(options, LlamaCppOptions)
    return options.alias


SPEC = BackendSpec(
    backend_type=BackendType.LLAMA_CPP,
    config_key="llama-cpp",
    label="llama.cpp (llama-server)",
    executables=frozenset({"llama-server", "llama-server.exe"}),
    options_class=LlamaCppOptions,
    argv_style=ArgvStyle.SEPARATE,
    positional_model=False,
    supports_docker=True,
    rewrites_model=False,  # it serves one model and answers to any name
    messages_api=True,  # since ggml-org/llama.cpp#17570 (November 2025)
    health_path="/health",
    api_key=_api_key,
    served_model_name=_served_model_name,
    # Without --alias, llama-server answers with the model's file path in "model".
    served_name_field="alias",
    top_fields=("model", "ctx_size", "gpu_layers", "threads", "flash_attn", "alias"),
)

"""Typed options of ``vllm serve``. Pure: no I/O.

The model is a positional argument of ``vllm serve`` when run natively and ``--model``
inside the container image; building argv decides which. ``lora_modules`` and
``prompt_adapters`` are single strings here (one flag, the value as given).
"""

from __future__ import annotations

from typing import ClassVar

from llamactl.backends.base import BackendOptionsBase, BackendType
from llamactl.backends.spec import ArgvStyle, BackendSpec

__all__ = ["SPEC", "VllmOptions"]


class VllmOptions(BackendOptionsBase):
    """Options of ``vllm serve``; every field is unset (``None``) unless given."""

    BACKEND_TYPE: ClassVar[BackendType] = BackendType.VLLM
    MULTI_VALUED: ClassVar[frozenset[str]] = frozenset(
        {"api_key", "allowed_origins", "allowed_methods", "allowed_headers", "middleware"}
    )
    # vllm reads these as ``--flag a b c`` (one flag, then every value).
    VARIADIC: ClassVar[frozenset[str]] = frozenset({"served_model_name"})
    COUNTS: ClassVar[frozenset[str]] = frozenset(
        {"tensor_parallel_size", "pipeline_parallel_size", "max_num_seqs", "max_num_batched_tokens"}
    )

    # connection
    host: str | None = None
    port: int | None = None

    # model and engine
    model: str | None = None
    tokenizer: str | None = None
    skip_tokenizer_init: bool | None = None
    revision: str | None = None
    code_revision: str | None = None
    tokenizer_revision: str | None = None
    tokenizer_mode: str | None = None
    trust_remote_code: bool | None = None
    download_dir: str | None = None
    load_format: str | None = None
    config_format: str | None = None
    dtype: str | None = None
    kv_cache_dtype: str | None = None
    quantization_param_path: str | None = None
    seed: int | None = None
    max_model_len: int | None = None
    guided_decoding_backend: str | None = None
    distributed_executor_backend: str | None = None
    worker_use_ray: bool | None = None
    ray_workers_use_nsight: bool | None = None

    # performance and serving
    block_size: int | None = None
    enable_prefix_caching: bool | None = None
    disable_sliding_window: bool | None = None
    use_v2_block_manager: bool | None = None
    num_lookahead_slots: int | None = None
    swap_space: int | None = None
    cpu_offload_gb: int | None = None
    gpu_memory_utilization: float | None = None
    num_gpu_blocks_override: int | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    max_logprobs: int | None = None
    disable_log_stats: bool | None = None
    quantization: str | None = None
    rope_scaling: str | None = None
    rope_theta: float | None = None
    enforce_eager: bool | None = None
    max_context_len_to_capture: int | None = None
    max_seq_len_to_capture: int | None = None
    disable_custom_all_reduce: bool | None = None
    tokenizer_pool_size: int | None = None
    tokenizer_pool_type: str | None = None
    tokenizer_pool_extra_config: str | None = None
    enable_lora_bias: bool | None = None
    lora_extra_vocab_size: int | None = None
    lora_rank: int | None = None
    prompt_lookback_distance: int | None = None
    preemption_mode: str | None = None

    # distributed and parallel processing
    tensor_parallel_size: int | None = None
    pipeline_parallel_size: int | None = None
    max_parallel_loading_workers: int | None = None
    disable_async_output_proc: bool | None = None
    worker_class: str | None = None
    enabled_lora_modules: str | None = None
    max_lora_rank: int | None = None
    fully_sharded_loras: bool | None = None
    lora_modules: str | None = None
    prompt_adapters: str | None = None
    max_prompt_adapter_token: int | None = None
    device: str | None = None
    scheduler_delay: float | None = None
    enable_chunked_prefill: bool | None = None
    speculative_model: str | None = None
    speculative_model_quantization: str | None = None
    speculative_revision: str | None = None
    speculative_max_model_len: int | None = None
    speculative_disable_by_batch_size: int | None = None
    ngpt_speculative_length: int | None = None
    speculative_disable_mqa: bool | None = None
    model_loader_extra_config: str | None = None
    ignore_patterns: str | None = None
    preloaded_lora_modules: str | None = None

    # OpenAI-compatible server
    uds: str | None = None
    uvicorn_log_level: str | None = None
    response_role: str | None = None
    ssl_keyfile: str | None = None
    ssl_certfile: str | None = None
    ssl_ca_certs: str | None = None
    ssl_cert_reqs: int | None = None
    root_path: str | None = None
    middleware: list[str] | None = None
    return_tokens_as_token_ids: bool | None = None
    disable_frontend_multiprocessing: bool | None = None
    enable_auto_tool_choice: bool | None = None
    tool_call_parser: str | None = None
    tool_server: str | None = None
    chat_template: str | None = None
    chat_template_content_format: str | None = None
    allow_credentials: bool | None = None
    allowed_origins: list[str] | None = None
    allowed_methods: list[str] | None = None
    allowed_headers: list[str] | None = None
    api_key: list[str] | None = None
    enable_log_outputs: bool | None = None
    enable_token_usage: bool | None = None
    enable_async_engine_debug: bool | None = None
    engine_use_ray: bool | None = None
    disable_log_requests: bool | None = None
    max_log_len: int | None = None

    # further engine configuration
    task: str | None = None
    multi_modal_config: str | None = None
    limit_mm_per_prompt: str | None = None
    enable_sleep_mode: bool | None = None
    enable_chunking_request: bool | None = None
    compilation_config: str | None = None
    disable_sliding_window_mask: bool | None = None
    enable_trtllm_engine_latency: bool | None = None
    override_pooling_config: str | None = None
    override_neuron_config: str | None = None
    override_kv_cache_align_size: int | None = None

    # newer vllm options
    served_model_name: list[str] | None = None
    reasoning_parser: str | None = None


def _api_key(options: BackendOptionsBase) -> str | None:
    """None: ``--api-key`` may be given several times, and llamactl sends no guess."""
    return None


def _served_model_name(options: BackendOptionsBase) -> str | None:
    assert isinstance(options, VllmOptions)
    if options.served_model_name:
        return options.served_model_name[0]
    return options.model


SPEC = BackendSpec(
    backend_type=BackendType.VLLM,
    config_key="vllm",
    label="vLLM (vllm serve)",
    executables=frozenset({"vllm"}),
    options_class=VllmOptions,
    argv_style=ArgvStyle.ARGPARSE,
    positional_model=True,  # natively; the container image takes --model
    supports_docker=True,
    rewrites_model=True,
    messages_api=True,  # vllm serve answers /v1/messages (vllm-project/vllm#21313)
    health_path="/health",
    api_key=_api_key,
    served_model_name=_served_model_name,
    subcommand="serve",
    top_fields=("model", "tensor_parallel_size", "gpu_memory_utilization", "max_model_len"),
)

"""vLLM options: inventory (including the newer options added here) and list handling."""

from __future__ import annotations

from llamactl.backends import BackendType, FieldKind, VllmOptions, parse_backend_options

VLLM_FIELDS_TEXT = """
host port model tokenizer skip_tokenizer_init revision code_revision tokenizer_revision
tokenizer_mode trust_remote_code download_dir load_format config_format dtype kv_cache_dtype
quantization_param_path seed max_model_len guided_decoding_backend
distributed_executor_backend worker_use_ray ray_workers_use_nsight block_size
enable_prefix_caching disable_sliding_window use_v2_block_manager num_lookahead_slots
swap_space cpu_offload_gb gpu_memory_utilization num_gpu_blocks_override
max_num_batched_tokens max_num_seqs max_logprobs disable_log_stats quantization rope_scaling
rope_theta enforce_eager max_context_len_to_capture max_seq_len_to_capture
disable_custom_all_reduce tokenizer_pool_size tokenizer_pool_type tokenizer_pool_extra_config
enable_lora_bias lora_extra_vocab_size lora_rank prompt_lookback_distance preemption_mode
tensor_parallel_size pipeline_parallel_size max_parallel_loading_workers
disable_async_output_proc worker_class enabled_lora_modules max_lora_rank fully_sharded_loras
lora_modules prompt_adapters max_prompt_adapter_token device scheduler_delay
enable_chunked_prefill speculative_model speculative_model_quantization speculative_revision
speculative_max_model_len speculative_disable_by_batch_size ngpt_speculative_length
speculative_disable_mqa model_loader_extra_config ignore_patterns preloaded_lora_modules uds
uvicorn_log_level response_role ssl_keyfile ssl_certfile ssl_ca_certs ssl_cert_reqs root_path
middleware return_tokens_as_token_ids disable_frontend_multiprocessing
enable_auto_tool_choice tool_call_parser tool_server chat_template
chat_template_content_format allow_credentials allowed_origins allowed_methods
allowed_headers api_key enable_log_outputs enable_token_usage enable_async_engine_debug
engine_use_ray disable_log_requests max_log_len task multi_modal_config limit_mm_per_prompt
enable_sleep_mode enable_chunking_request compilation_config disable_sliding_window_mask
enable_trtllm_engine_latency override_pooling_config override_neuron_config
override_kv_cache_align_size
"""
VLLM_FIELDS = VLLM_FIELDS_TEXT.split()

# Options of current vllm releases that the original inventory lacks, appended at the end.
ADDED_FIELDS = ["served_model_name", "reasoning_parser"]


def test_fields_are_the_112_vllm_options_plus_the_added_ones() -> None:
    assert len(VLLM_FIELDS) == 112
    assert list(VllmOptions.FIELD_ORDER) == VLLM_FIELDS + ADDED_FIELDS
    assert set(VllmOptions.model_fields) == {*VLLM_FIELDS, *ADDED_FIELDS, "extra_args"}


def test_list_fields() -> None:
    kinds = VllmOptions.FIELD_KINDS
    lists = {name for name, kind in kinds.items() if kind is FieldKind.LIST}
    assert lists == {
        "middleware",
        "allowed_origins",
        "allowed_methods",
        "allowed_headers",
        "api_key",
        "served_model_name",
    }
    assert lists == VllmOptions.MULTI_VALUED | VllmOptions.VARIADIC
    assert frozenset({"served_model_name"}) == VllmOptions.VARIADIC
    assert kinds["lora_modules"] is FieldKind.STR
    assert kinds["prompt_adapters"] is FieldKind.STR


def test_field_kind_samples() -> None:
    kinds = VllmOptions.FIELD_KINDS
    assert kinds["gpu_memory_utilization"] is FieldKind.FLOAT
    assert kinds["tensor_parallel_size"] is FieldKind.INT
    assert kinds["ssl_cert_reqs"] is FieldKind.INT
    assert kinds["enforce_eager"] is FieldKind.BOOL
    assert kinds["reasoning_parser"] is FieldKind.STR


def test_typical_options() -> None:
    data = {
        "model": "Qwen/Qwen3-8B",
        "served_model_name": ["qwen3", "qwen"],
        "api_key": ["k1", "k2"],
        "gpu_memory_utilization": 0.9,
        "tensor_parallel_size": 2,
    }

    options = parse_backend_options(BackendType.VLLM, data)

    assert isinstance(options, VllmOptions)
    assert options.served_model_name == ["qwen3", "qwen"]
    assert options.api_key == ["k1", "k2"]
    assert options.to_json() == dict(sorted(data.items()))


def test_no_aliases() -> None:
    assert dict(VllmOptions.ALIASES) == {}
    assert parse_backend_options(BackendType.VLLM, {"tp": 2}).extra_args == {"tp": "2"}

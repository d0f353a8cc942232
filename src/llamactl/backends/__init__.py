"""Typed options of the supported inference servers: llama.cpp, MLX-LM, vLLM and custom ones.

Pure: this package validates and converts option values; it starts no process, opens no
socket and touches no file.
"""

from llamactl.backends.base import BackendOptionsBase, BackendType, FieldKind
from llamactl.backends.command import Command, backend_args, build_command, render
from llamactl.backends.llama_cpp import LLAMA_CPP_ALIASES, LlamaCppOptions
from llamactl.backends.mlx_lm import MlxLmOptions
from llamactl.backends.parse import CommandParseError, parse_command, split_command
from llamactl.backends.registry import (
    OPTIONS_CLASSES,
    SPECS,
    BackendOptions,
    instance_section,
    options_class,
    parse_backend_options,
    parse_backend_type,
    section_key,
    spec_for,
    spec_for_config_key,
    to_json,
)
from llamactl.backends.spec import ArgvStyle, BackendSpec
from llamactl.backends.vllm import VllmOptions

__all__ = [
    "LLAMA_CPP_ALIASES",
    "OPTIONS_CLASSES",
    "SPECS",
    "ArgvStyle",
    "BackendOptions",
    "BackendOptionsBase",
    "BackendSpec",
    "BackendType",
    "Command",
    "CommandParseError",
    "FieldKind",
    "LlamaCppOptions",
    "MlxLmOptions",
    "VllmOptions",
    "backend_args",
    "build_command",
    "instance_section",
    "options_class",
    "parse_backend_options",
    "parse_backend_type",
    "parse_command",
    "render",
    "section_key",
    "spec_for",
    "spec_for_config_key",
    "split_command",
    "to_json",
]

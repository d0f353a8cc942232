"""Configuration: typed settings loaded from defaults, ``.env``, YAML and ``LLAMACTL_*``.

This package owns reading and validating configuration, and nothing else: it performs no
writes, creates no directories and never modifies ``os.environ``. ``registry.SETTINGS``
is the single list of settings; the loader, ``describe_config``, ``public_config`` and
``docs/configuration.md`` are all derived from it.
"""

from __future__ import annotations

from llamactl.config.describe import ConfigRow, describe_config, public_config
from llamactl.config.durations import format_duration, parse_duration
from llamactl.config.loader import load_config
from llamactl.config.models import (
    ActivityConfig,
    AppConfig,
    AuthConfig,
    BackendConfig,
    BackendsConfig,
    DatabaseConfig,
    DockerConfig,
    InstancesConfig,
    LlamaCppConfig,
    MetricsConfig,
    NodeConfig,
    ServerConfig,
)
from llamactl.config.platform import config_search_paths, default_data_dir
from llamactl.config.registry import CONFIG_PATH_ENV, SETTINGS, Setting

__all__ = [
    "CONFIG_PATH_ENV",
    "SETTINGS",
    "ActivityConfig",
    "AppConfig",
    "AuthConfig",
    "BackendConfig",
    "BackendsConfig",
    "ConfigRow",
    "DatabaseConfig",
    "DockerConfig",
    "InstancesConfig",
    "LlamaCppConfig",
    "MetricsConfig",
    "NodeConfig",
    "ServerConfig",
    "Setting",
    "config_search_paths",
    "default_data_dir",
    "describe_config",
    "format_duration",
    "load_config",
    "parse_duration",
    "public_config",
]

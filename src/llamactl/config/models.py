"""The typed, validated configuration: what the rest of llamactl reads.

Instances are built only by ``load_config`` (or by tests); values arrive here already
parsed and range-checked, so these models only fix the shape and the types.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from llamactl.config.kinds import mask_password

__all__ = [
    "ActivityConfig",
    "AppConfig",
    "AuthConfig",
    "BackendConfig",
    "BackendsConfig",
    "DatabaseConfig",
    "DockerConfig",
    "InstancesConfig",
    "LlamaCppConfig",
    "MetricsConfig",
    "NodeConfig",
    "ServerConfig",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ServerConfig(_Frozen):
    """The management and inference API server."""

    host: str = "0.0.0.0"
    port: int = 8080
    allowed_origins: list[str] = Field(default_factory=lambda: ["*"])
    allowed_headers: list[str] = Field(default_factory=lambda: ["*"])
    enable_swagger: bool = False
    response_headers: dict[str, str] = Field(default_factory=dict)
    max_request_body_mb: int = 256
    log_level: str = "info"
    access_log: bool = False


class DockerConfig(_Frozen):
    """How a backend runs inside Docker when an instance asks for it."""

    enabled: bool = False
    image: str = ""
    args: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)


class BackendConfig(_Frozen):
    """How one backend's server process is started.

    ``health_path`` is the readiness endpoint when the section names one; ``None`` means
    the backend's own (its spec's).
    """

    command: str
    args: list[str] = Field(default_factory=list)
    environment: dict[str, str] = Field(default_factory=dict)
    docker: DockerConfig | None = None
    response_headers: dict[str, str] = Field(default_factory=dict)
    health_path: str | None = None


class LlamaCppConfig(BackendConfig):
    """llama-server, which also has a model download cache."""

    cache_dir: Path


# What stands for the one section of a backend whose instances each name an entry.
_NO_SHARED_SECTION = BackendConfig(command="")


class BackendsConfig(_Frozen):
    """The three built-in backends, and the named entries of the custom one."""

    llama_cpp: LlamaCppConfig = Field(alias="llama-cpp")
    vllm: BackendConfig
    mlx: BackendConfig
    custom: dict[str, BackendConfig] = Field(default_factory=dict)

    def section(self, key: str) -> BackendConfig:
        """The section ``backends.<key>``, by its configuration key (``llama-cpp``).

        For a backend whose instances each name an entry (a field holding a mapping of
        sections), an empty section: no docker default, no response headers; an
        instance's own section is its entry.
        """
        for name, info in type(self).model_fields.items():
            if key in (name, info.alias):
                section = getattr(self, name)
                if isinstance(section, dict):
                    return _NO_SHARED_SECTION
                assert isinstance(section, BackendConfig)
                return section
        raise KeyError(f"no backends.{key} section")


class InstancesConfig(_Frozen):
    """Defaults and limits for instances, and where their files live."""

    port_range: tuple[int, int]
    instances_dir: Path
    logs_dir: Path
    auto_create_dirs: bool
    max_instances: int
    max_running_instances: int
    enable_lru_eviction: bool
    default_auto_restart: bool
    default_max_restarts: int
    default_restart_delay: int
    default_on_demand_start: bool
    default_idle_timeout: int
    on_demand_start_timeout: int
    response_header_timeout: int
    max_queued_requests: int
    loading_progress: bool
    loading_progress_interval: int
    timeout_check_interval: int
    log_rotation_enabled: bool
    log_rotation_max_size: int
    log_rotation_compress: bool


class DatabaseConfig(_Frozen):
    """The database location and connection pool.

    ``path`` is an absolute file path, ``:memory:``, or an SQLAlchemy URL; ``url``, when
    set, is an SQLAlchemy URL that wins over ``path``.
    """

    path: str
    url: str | None = None
    max_open_connections: int
    max_idle_connections: int
    connection_max_lifetime: datetime.timedelta
    stale_after: datetime.timedelta = datetime.timedelta(minutes=5)

    @property
    def location(self) -> str:
        """Where llamactl connects: ``url`` if set, else ``path``."""
        return self.url or self.path

    @property
    def shown(self) -> str:
        """``location`` as it may be shown (a URL's password masked)."""
        return mask_password(self.location)


class AuthConfig(_Frozen):
    """API keys for the inference (``/v1``) and management (``/api``) planes."""

    require_inference_auth: bool
    inference_keys: list[SecretStr]
    require_management_auth: bool
    management_keys: list[SecretStr]
    key_secret_file: str = ""


class NodeConfig(_Frozen):
    """A llamactl host; the local one has an empty address."""

    address: str = ""
    api_key: SecretStr | None = None
    ca_file: str = ""


class MetricsConfig(_Frozen):
    """The Prometheus metrics at ``/metrics``."""

    enabled: bool = True
    require_auth: bool = True


class ActivityConfig(_Frozen):
    """The request log in the database."""

    enabled: bool = True
    max_age: datetime.timedelta = datetime.timedelta(hours=168)
    max_rows: int = 100_000
    flush_interval: datetime.timedelta = datetime.timedelta(seconds=2)


class AppConfig(_Frozen):
    """The whole effective configuration, with where each value came from.

    ``sources`` maps a dotted key (``database.path``) to ``"default"``, ``"<file>:<line>"``,
    ``".env <file>:<line>"``, ``"env LLAMACTL_…"`` or ``"derived from data_dir"``.
    """

    data_dir: Path
    server: ServerConfig
    backends: BackendsConfig
    instances: InstancesConfig
    database: DatabaseConfig
    auth: AuthConfig
    local_node: str
    nodes: dict[str, NodeConfig]
    node_check_interval: datetime.timedelta
    node_connect_timeout: datetime.timedelta
    node_request_timeout: datetime.timedelta
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    activity: ActivityConfig = Field(default_factory=ActivityConfig)
    config_path: Path | None = None
    sources: dict[str, str] = Field(default_factory=dict)

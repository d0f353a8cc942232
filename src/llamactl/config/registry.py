"""The one registry of settings.

Each ``Setting`` names its YAML key, its environment variables, its kind (parser), its
default and one line of documentation. The loader, ``describe_config`` and the settings
table of ``docs/configuration.md`` are all driven from ``SETTINGS``; nothing else lists
keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from llamactl.config import kinds
from llamactl.config.durations import parse_duration
from llamactl.config.platform import default_cache_dir, default_data_dir

__all__ = [
    "ALIASES",
    "CONFIG_PATH_ENV",
    "SETTINGS",
    "WILDCARD",
    "DefaultContext",
    "Key",
    "Setting",
    "dotted",
    "find_setting",
    "is_section",
    "matches",
    "section_children",
]

CONFIG_PATH_ENV = "LLAMACTL_CONFIG_PATH"
WILDCARD = "*"

Key = tuple[str, ...]


@dataclass(frozen=True)
class DefaultContext:
    """What platform-dependent defaults are computed from."""

    platform: str
    environ: Mapping[str, str]
    home: Path

    def data_dir(self) -> Path:
        return default_data_dir(self.platform, self.environ, self.home)


@dataclass(frozen=True)
class Setting:
    """One configuration setting: where it lives, how it is read and what it defaults to.

    ``default`` is a value, or a callable of the ``DefaultContext`` for defaults that
    depend on the platform. ``None`` for a path means "derived from data_dir".
    """

    key: Key
    kind: kinds.Kind
    default: object
    doc: str
    env: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    default_doc: str = ""
    secret: bool = False

    @property
    def name(self) -> str:
        return dotted(self.key)

    def default_value(self, context: DefaultContext) -> object:
        if callable(self.default):
            factory: Callable[[DefaultContext], object] = self.default
            return factory(context)
        if isinstance(self.default, list | dict):
            return self.default.copy()
        return self.default


def dotted(key: Key) -> str:
    """The dotted form of a key path, as used in messages and ``sources``."""
    return ".".join(key)


def _llama_docker_args(context: DefaultContext) -> list[str]:
    volume = f"{context.data_dir()}/llama.cpp:/root/.cache/llama.cpp"
    return ["run", "--rm", "--network", "host", "--gpus", "all", "-v", volume]


def _vllm_docker_args(context: DefaultContext) -> list[str]:
    volume = f"{context.data_dir()}/huggingface:/root/.cache/huggingface"
    return ["run", "--rm", "--network", "host", "--gpus", "all", "--shm-size", "1g", "-v", volume]


def _data_dir(context: DefaultContext) -> str:
    return str(context.data_dir())


def _cache_dir(context: DefaultContext) -> str:
    return str(default_cache_dir(context.platform, context.environ, context.home))


def _backend(
    yaml_name: str, env_name: str, command: str, args: list[str], doc_name: str
) -> list[Setting]:
    key = ("backends", yaml_name)
    prefix = f"LLAMACTL_{env_name}"
    return [
        Setting((*key, "command"), kinds.STR, command, f"{doc_name} executable",
                (f"{prefix}_COMMAND",)),
        Setting((*key, "args"), kinds.ARGS, args, f"arguments put before the {doc_name} options",
                (f"{prefix}_ARGS",)),
        Setting((*key, "environment"), kinds.MAP, {}, f"environment of every {doc_name} process",
                (f"{prefix}_ENV",)),
    ]  # fmt: skip


def _docker(yaml_name: str, env_name: str, image: str, args: object) -> list[Setting]:
    key = ("backends", yaml_name, "docker")
    prefix = f"LLAMACTL_{env_name}_DOCKER"
    return [
        Setting((*key, "enabled"), kinds.BOOL, False, "run instances in Docker by default",
                (f"{prefix}_ENABLED",)),
        Setting((*key, "image"), kinds.STR, image, "Docker image", (f"{prefix}_IMAGE",)),
        Setting((*key, "args"), kinds.ARGS, args, "arguments of `docker` before the image",
                (f"{prefix}_ARGS",), default_doc="see below"),
        Setting((*key, "environment"), kinds.MAP, {}, "environment passed to the container",
                (f"{prefix}_ENV",)),
    ]  # fmt: skip


def _headers(yaml_name: str, env_name: str) -> Setting:
    return Setting(
        ("backends", yaml_name, "response_headers"), kinds.HEADERS, {},
        "headers added to every proxied response", (f"LLAMACTL_{env_name}_RESPONSE_HEADERS",),
    )  # fmt: skip


def _s(
    key: str,
    kind: kinds.Kind,
    default: object,
    doc: str,
    *env: str,
    minimum: int | None = None,
    maximum: int | None = None,
    default_doc: str = "",
    secret: bool = False,
) -> Setting:
    """Shorthand for a setting whose key is written dotted."""
    key_path = tuple(key.split("."))
    return Setting(key_path, kind, default, doc, env, minimum, maximum, default_doc, secret)


_SERVER = [
    _s("server.host", kinds.STR, "0.0.0.0", "address the API listens on", "LLAMACTL_HOST"),
    _s("server.port", kinds.INT, 8080, "port the API listens on", "LLAMACTL_PORT",
       minimum=1, maximum=65535),
    _s("server.allowed_origins", kinds.LIST, ["*"],
       "CORS allowed origins; with management auth off, the only other origins that may"
       " use the management API (`*` does not count)",
       "LLAMACTL_ALLOWED_ORIGINS"),
    _s("server.allowed_headers", kinds.LIST, ["*"], "CORS allowed headers"),
    _s("server.enable_swagger", kinds.BOOL, False,
       "serve `/docs` (Swagger UI, from the package) and `/openapi.json`",
       "LLAMACTL_ENABLE_SWAGGER"),
    _s("server.response_headers", kinds.HEADERS, {}, "headers added to every API response"),
    _s("server.log_level", kinds.LOG_LEVEL, "info",
       "level of llamactl's own log (reloaded on SIGHUP)", "LLAMACTL_LOG_LEVEL"),
    _s("server.access_log", kinds.BOOL, False,
       "log one line per HTTP request (costs throughput)", "LLAMACTL_ACCESS_LOG"),
    _s("server.max_request_body_mb", kinds.INT, 256,
       "largest request body accepted, in MB (413 beyond it)", "LLAMACTL_MAX_REQUEST_BODY_MB",
       minimum=1),
]  # fmt: skip

_BACKENDS = [
    *_backend("llama-cpp", "LLAMACPP", "llama-server", [], "llama-server"),
    *_docker("llama-cpp", "LLAMACPP", "ghcr.io/ggml-org/llama.cpp:server", _llama_docker_args),
    _headers("llama-cpp", "LLAMACPP"),
    _s("backends.llama-cpp.cache_dir", kinds.PATH, _cache_dir, "llama.cpp model download cache",
       "LLAMACTL_LLAMACPP_CACHE_DIR", default_doc="platform cache dir (see below)"),
    *_backend("vllm", "VLLM", "vllm", ["serve"], "vLLM"),
    *_docker("vllm", "VLLM", "vllm/vllm-openai:latest", _vllm_docker_args),
    _headers("vllm", "VLLM"),
    *_backend("mlx", "MLX", "mlx_lm.server", [], "mlx_lm.server"),
    _headers("mlx", "MLX"),
    _s("backends.custom.*.command", kinds.STR, "",
       "program of a custom backend (any OpenAI-compatible server)"),
    _s("backends.custom.*.args", kinds.ARGS, [],
       "its arguments, before the instance's; `{port}` (required in one of them), `{host}`"
       " and `{model}` are replaced"),
    _s("backends.custom.*.environment", kinds.MAP, {}, "environment of its processes"),
    _s("backends.custom.*.health_path", kinds.STR, "/health",
       "its readiness endpoint: any 2xx answer means ready"),
    _s("backends.custom.*.docker.image", kinds.STR, "",
       "Docker image, for instances with `docker_enabled: true`"),
    _s("backends.custom.*.docker.args", kinds.ARGS, [], "arguments of `docker` before the image"),
    _s("backends.custom.*.docker.environment", kinds.MAP, {},
       "environment passed to the container"),
]  # fmt: skip

_INSTANCES = [
    _s("instances.port_range", kinds.PORT_RANGE, (8000, 9000),
       "ports given to instances (inclusive)", "LLAMACTL_INSTANCE_PORT_RANGE"),
    _s("instances.instances_dir", kinds.PATH, None,
       "legacy `*.json` instance files (imported once into the database)",
       "LLAMACTL_INSTANCES_DIR", default_doc="`<data_dir>/instances`"),
    _s("instances.logs_dir", kinds.PATH, None, "instance log files", "LLAMACTL_LOGS_DIR",
       default_doc="`<data_dir>/logs`"),
    _s("instances.auto_create_dirs", kinds.BOOL, True, "create missing directories at startup",
       "LLAMACTL_AUTO_CREATE_DATA_DIR"),
    _s("instances.max_instances", kinds.INT, -1, "most instances that may exist (-1: no limit)",
       "LLAMACTL_MAX_INSTANCES", minimum=-1),
    _s("instances.max_running_instances", kinds.INT, -1,
       "most instances running at once (-1: no limit)", "LLAMACTL_MAX_RUNNING_INSTANCES",
       minimum=-1),
    _s("instances.enable_lru_eviction", kinds.BOOL, True,
       "stop the least recently used instance when the running limit is hit",
       "LLAMACTL_ENABLE_LRU_EVICTION"),
    _s("instances.default_auto_restart", kinds.BOOL, True, "restart crashed instances",
       "LLAMACTL_DEFAULT_AUTO_RESTART"),
    _s("instances.default_max_restarts", kinds.INT, 3,
       "consecutive restarts before giving up (-1: no limit)", "LLAMACTL_DEFAULT_MAX_RESTARTS",
       minimum=-1),
    _s("instances.default_restart_delay", kinds.INT, 5, "seconds to wait before a restart",
       "LLAMACTL_DEFAULT_RESTART_DELAY", minimum=0),
    _s("instances.default_on_demand_start", kinds.BOOL, True,
       "start a stopped instance when a request names it", "LLAMACTL_DEFAULT_ON_DEMAND_START"),
    _s("instances.default_idle_timeout", kinds.INT, 0,
       "minutes without requests before an instance is stopped (0: never)",
       "LLAMACTL_DEFAULT_IDLE_TIMEOUT", minimum=0),
    _s("instances.on_demand_start_timeout", kinds.INT, 120,
       "seconds to wait for an on-demand start", "LLAMACTL_ON_DEMAND_START_TIMEOUT", minimum=0),
    _s("instances.response_header_timeout", kinds.INT, 600,
       "seconds the proxy waits for a backend's response headers (504 beyond it; 0: no limit)",
       "LLAMACTL_RESPONSE_HEADER_TIMEOUT", minimum=0),
    _s("instances.loading_progress", kinds.BOOL, True,
       "a streamed request waiting for a start gets SSE `: loading` comments meanwhile "
       "(an instance's `loading_progress` overrides it)", "LLAMACTL_LOADING_PROGRESS"),
    _s("instances.loading_progress_interval", kinds.INT, 3,
       "seconds between two loading comments; the first (with the response head) comes "
       "after one", "LLAMACTL_LOADING_PROGRESS_INTERVAL", minimum=1, maximum=3600),
    _s("instances.max_queued_requests", kinds.INT, 100,
       "requests that may wait for an instance to become ready (503 beyond it)",
       "LLAMACTL_MAX_QUEUED_REQUESTS", minimum=1),
    _s("instances.timeout_check_interval", kinds.INT, 5,
       "accepted for compatibility; idle instances are checked every 2 s",
       "LLAMACTL_TIMEOUT_CHECK_INTERVAL", minimum=1),
    _s("instances.log_rotation_enabled", kinds.BOOL, True, "rotate instance logs by size",
       "LLAMACTL_LOG_ROTATION_ENABLED"),
    _s("instances.log_rotation_max_size", kinds.INT, 100, "size in MB at which a log rotates",
       "LLAMACTL_LOG_ROTATION_MAX_SIZE", minimum=1),
    _s("instances.log_rotation_compress", kinds.BOOL, False, "gzip rotated logs",
       "LLAMACTL_LOG_ROTATION_COMPRESS"),
]  # fmt: skip

_DATABASE = [
    _s("database.path", kinds.PATH, "llamactl.db",
       "SQLite file (relative to data_dir, or absolute), `:memory:`, or an SQLAlchemy URL",
       "LLAMACTL_DATABASE_PATH"),
    _s("database.url", kinds.DATABASE_URL, None,
       "a database URL (`postgresql://user:password@host:5432/llamactl`, with "
       "`pip install 'llamactl[postgres]'`); when set it wins over `database.path`",
       "LLAMACTL_DATABASE_URL"),
    _s("database.max_open_connections", kinds.INT, 25, "most open connections",
       "LLAMACTL_DATABASE_MAX_OPEN_CONNECTIONS", minimum=1),
    _s("database.max_idle_connections", kinds.INT, 5,
       "connections kept open while idle (at most max_open_connections)",
       "LLAMACTL_DATABASE_MAX_IDLE_CONNECTIONS", minimum=0),
    _s("database.connection_max_lifetime", kinds.DURATION, parse_duration("5m"),
       "a connection older than this is replaced", "LLAMACTL_DATABASE_CONN_MAX_LIFETIME"),
    _s("database.stale_after", kinds.DURATION, parse_duration("5m"),
       "with a shared (PostgreSQL) database: how long a router serves `/v1` from what it "
       "knew once the database is unreachable; then 503 until it is back (`0`: no bound)",
       "LLAMACTL_DATABASE_STALE_AFTER"),
]  # fmt: skip

_AUTH = [
    _s("auth.require_inference_auth", kinds.BOOL, True, "require a key on `/v1/*`",
       "LLAMACTL_REQUIRE_INFERENCE_AUTH"),
    _s("auth.inference_keys", kinds.SECRET_LIST, [], "keys accepted on `/v1/*`",
       "LLAMACTL_INFERENCE_KEYS", secret=True),
    _s("auth.require_management_auth", kinds.BOOL, True, "require a key on `/api/*`",
       "LLAMACTL_REQUIRE_MANAGEMENT_AUTH"),
    _s("auth.management_keys", kinds.SECRET_LIST, [], "keys accepted on `/api/*` and `/v1/*`",
       "LLAMACTL_MANAGEMENT_KEYS", secret=True),
    _s("auth.key_secret_file", kinds.STR, "",
       "the secret stored keys are hashed with (made, mode 0600, if missing); relative to "
       "data_dir; empty: `keys.secret` in data_dir. Replicas over one database share it",
       "LLAMACTL_KEY_SECRET_FILE"),
]  # fmt: skip

_NODES = [
    _s("local_node", kinds.STR, "main", "name of this llamactl in `nodes`",
       "LLAMACTL_LOCAL_NODE"),
    _s("nodes.*.address", kinds.STR, "", "base URL of another llamactl (empty for this one)"),
    _s("nodes.*.api_key", kinds.SECRET, None, "management key of that llamactl", secret=True),
    _s("nodes.*.ca_file", kinds.STR, "",
       "PEM file of the certificates to trust for that node's https address "
       "(empty: the system's)"),
    _s("node_check_interval", kinds.DURATION, parse_duration("5s"),
       "how often every other node's health is checked", "LLAMACTL_NODE_CHECK_INTERVAL"),
    _s("node_connect_timeout", kinds.DURATION, parse_duration("3s"),
       "wait for a connection to another node; longer: it is unreachable",
       "LLAMACTL_NODE_CONNECT_TIMEOUT"),
    _s("node_request_timeout", kinds.DURATION, parse_duration("30s"),
       "wait for another node to answer a management call",
       "LLAMACTL_NODE_REQUEST_TIMEOUT"),
]  # fmt: skip

_OBSERVING = [
    _s("metrics.enabled", kinds.BOOL, True,
       "serve Prometheus metrics at `/metrics` and count for them", "LLAMACTL_METRICS_ENABLED"),
    _s("metrics.require_auth", kinds.BOOL, True,
       "`/metrics` and `/metrics/targets` need a management key (false: open to a local "
       "Prometheus)", "LLAMACTL_METRICS_REQUIRE_AUTH"),
    _s("activity.enabled", kinds.BOOL, True,
       "log every `/v1` request in the database (`GET /api/v1/activity`)",
       "LLAMACTL_ACTIVITY_ENABLED"),
    _s("activity.max_age", kinds.DURATION, parse_duration("168h"),
       "requests older than this leave the log", "LLAMACTL_ACTIVITY_MAX_AGE"),
    _s("activity.max_rows", kinds.INT, 100_000, "the log keeps at most this many requests",
       "LLAMACTL_ACTIVITY_MAX_ROWS", minimum=1),
    _s("activity.flush_interval", kinds.DURATION, parse_duration("2s"),
       "how often the requests logged meanwhile are written, in one transaction",
       "LLAMACTL_ACTIVITY_FLUSH_INTERVAL"),
]  # fmt: skip

SETTINGS: tuple[Setting, ...] = (
    _s("data_dir", kinds.PATH, _data_dir, "base of every relative or derived path",
       "LLAMACTL_DATA_DIRECTORY", default_doc="platform data dir (see below)"),
    *_SERVER, *_BACKENDS, *_INSTANCES, *_DATABASE, *_AUTH, *_NODES, *_OBSERVING,
)  # fmt: skip

ALIASES: dict[Key, Key] = {
    ("instances", "configs_dir"): ("instances", "instances_dir"),
    ("instances", "data_dir"): ("data_dir",),
}

_BY_KEY = {setting.key: setting for setting in SETTINGS}
_SECTIONS = {setting.key[:end] for setting in SETTINGS for end in range(1, len(setting.key))}


def matches(pattern: Key, key: Key) -> bool:
    """Whether a concrete key fits a registry pattern (``*`` matches any one part)."""
    if len(pattern) != len(key):
        return False
    return all(part in (WILDCARD, actual) for part, actual in zip(pattern, key, strict=True))


def _pattern_of(key: Key, patterns: set[Key] | dict[Key, Setting]) -> Key | None:
    if key in patterns:
        return key
    return next((pattern for pattern in patterns if matches(pattern, key)), None)


def find_setting(key: Key) -> Setting | None:
    """The setting a concrete key (``("nodes", "gpu1", "address")``) belongs to."""
    pattern = _pattern_of(key, _BY_KEY)
    return None if pattern is None else _BY_KEY[pattern]


def is_section(key: Key) -> bool:
    """Whether the key names a mapping of settings (``server``, ``nodes.gpu1``)."""
    return _pattern_of(key, _SECTIONS) is not None


def section_children(key: Key) -> list[str]:
    """The names allowed directly under a section, for "did you mean" hints."""
    pattern = _pattern_of(key, _SECTIONS) or key
    names = {
        candidate[len(pattern)]
        for candidate in (*_BY_KEY, *_SECTIONS)
        if len(candidate) > len(pattern) and candidate[: len(pattern)] == pattern
    }
    return sorted(names - {WILDCARD})

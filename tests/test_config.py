"""Tests of llamactl.config: loading, precedence, validation, description and docs."""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from pydantic import Field, SecretStr

from llamactl.config import (
    CONFIG_PATH_ENV,
    SETTINGS,
    AppConfig,
    config_search_paths,
    default_data_dir,
    describe_config,
    format_duration,
    load_config,
    parse_duration,
    public_config,
)
from llamactl.config.describe import settings_markdown
from llamactl.config.models import BackendConfig, BackendsConfig
from llamactl.errors import ConfigError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

Loader = Callable[..., AppConfig]


@pytest.fixture
def cwd(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def load(cwd: Path, home: Path) -> Loader:
    def run(
        environ: Mapping[str, str] | None = None,
        path: str | Path | None = None,
        platform: str = "linux",
    ) -> AppConfig:
        return load_config(path, environ or {}, cwd=cwd, home=home, platform=platform)

    return run


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def error_of(load: Loader, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("invalid configuration: ")
    return info.value


# --- defaults ------------------------------------------------------------------------


def test_defaults(load: Loader, home: Path) -> None:
    config = load()
    data = home / ".local" / "share" / "llamactl"
    assert config.data_dir == data
    assert config.server.host == "0.0.0.0"
    assert config.server.port == 8080
    assert config.server.allowed_origins == ["*"]
    assert config.instances.port_range == (8000, 9000)
    assert config.instances.instances_dir == data / "instances"
    assert config.instances.logs_dir == data / "logs"
    assert config.instances.default_idle_timeout == 0
    assert config.instances.timeout_check_interval == 5
    assert config.instances.max_instances == -1
    assert config.instances.default_max_restarts == 3
    assert config.database.path == str(data / "llamactl.db")
    assert config.database.max_open_connections == 25
    assert config.database.max_idle_connections == 5
    assert config.database.connection_max_lifetime == datetime.timedelta(minutes=5)
    assert config.auth.require_inference_auth is True
    assert config.auth.management_keys == []
    assert config.backends.vllm.args == ["serve"]
    assert config.backends.mlx.docker is None
    assert config.backends.llama_cpp.cache_dir == home / ".cache" / "llama.cpp"
    llama_docker = config.backends.llama_cpp.docker
    assert llama_docker is not None
    assert llama_docker.image == "ghcr.io/ggml-org/llama.cpp:server"
    assert llama_docker.args[-1] == f"{data}/llama.cpp:/root/.cache/llama.cpp"
    assert config.local_node == "main"
    assert list(config.nodes) == ["main"]
    assert config.nodes["main"].address == ""
    assert config.config_path is None
    assert config.sources["server.port"] == "default"
    assert config.sources["database.path"] == "derived from data_dir"


def test_load_is_pure(load: Loader, cwd: Path) -> None:
    before = dict(os.environ)
    write(cwd / ".env", "LLAMACTL_PORT=9999\nSOME_OTHER=1\n")
    config = load({"LLAMACTL_DATA_DIRECTORY": "data"})
    assert dict(os.environ) == before
    assert config.data_dir == cwd / "data"
    assert not (cwd / "data").exists()


@pytest.mark.parametrize(
    ("platform", "environ", "expected"),
    [
        ("linux", {}, "HOME/.local/share/llamactl"),
        ("darwin", {}, "HOME/Library/Application Support/llamactl"),
        ("win32", {"PROGRAMDATA": "P", "LOCALAPPDATA": "L"}, "P/llamactl"),
        ("win32", {"LOCALAPPDATA": "L"}, "L/llamactl"),
        ("win32", {}, "C:\\ProgramData/llamactl"),
    ],
)
def test_default_data_dir(
    platform: str, environ: dict[str, str], expected: str, home: Path
) -> None:
    result = default_data_dir(platform, environ, home)
    assert str(result) == expected.replace("HOME", str(home))


# --- precedence ----------------------------------------------------------------------


def test_precedence_default_dotenv_yaml_env(load: Loader, cwd: Path) -> None:
    write(cwd / ".env", "LLAMACTL_PORT=1111\nLLAMACTL_HOST=from-dotenv\n")
    write(cwd / "llamactl.yaml", "server:\n  port: 2222\n")
    config = load()
    assert config.server.port == 2222  # YAML beats .env
    assert config.sources["server.port"] == f"{cwd / 'llamactl.yaml'}:2"
    assert config.server.host == "from-dotenv"  # .env beats the default
    assert config.sources["server.host"] == f".env {cwd / '.env'}:2"
    assert config.sources["server.allowed_origins"] == "default"
    config = load({"LLAMACTL_PORT": "3333"})
    assert config.server.port == 3333  # the real environment beats YAML
    assert config.sources["server.port"] == "env LLAMACTL_PORT"


def test_dotenv_never_overrides_environment(load: Loader, cwd: Path) -> None:
    write(cwd / ".env", "LLAMACTL_HOST=from-dotenv\n")
    config = load({"LLAMACTL_HOST": "from-env"})
    assert config.server.host == "from-env"
    assert config.sources["server.host"] == "env LLAMACTL_HOST"


def test_dotenv_syntax(load: Loader, cwd: Path) -> None:
    text = (
        "# a comment\n\nexport LLAMACTL_HOST='quoted host'\n"
        'LLAMACTL_LLAMACPP_COMMAND = "/opt/llama server"\n'
        "LLAMACTL_VLLM_COMMAND=vllm-bin # trailing comment\n"
    )
    write(cwd / ".env", text)
    config = load()
    assert config.server.host == "quoted host"
    assert config.backends.llama_cpp.command == "/opt/llama server"
    assert config.backends.vllm.command == "vllm-bin"


def test_dotenv_bad_line(load: Loader, cwd: Path) -> None:
    dotenv = write(cwd / ".env", "LLAMACTL_PORT=1\nnot a pair\n")
    error = error_of(load)
    assert f"{dotenv}:2" in str(error)
    assert "'not a pair'" in str(error)


def test_dotenv_search_order(load: Loader, cwd: Path, home: Path, tmp_path: Path) -> None:
    write(home / ".config" / "llamactl" / ".env", "LLAMACTL_HOST=user-dir\n")
    assert load().server.host == "user-dir"
    write(cwd / ".env", "LLAMACTL_HOST=cwd\n")
    assert load().server.host == "cwd"
    config_file = write(tmp_path / "etc" / "llamactl.yaml", "{}\n")
    write(tmp_path / "etc" / ".env", "LLAMACTL_HOST=next-to-config\n")
    assert load(path=config_file).server.host == "next-to-config"


def test_config_path_from_dotenv(load: Loader, cwd: Path, tmp_path: Path) -> None:
    config_file = write(tmp_path / "elsewhere.yaml", "server:\n  port: 4444\n")
    write(cwd / ".env", f"LLAMACTL_CONFIG_PATH={config_file}\n")
    config = load()
    assert config.config_path == config_file
    assert config.server.port == 4444


def test_unknown_llamactl_variable_is_not_an_error(load: Loader) -> None:
    config = load({"LLAMACTL_URL": "http://x", "LLAMACTL_PORT": "8081"})
    assert config.server.port == 8081


def test_empty_variable_counts_as_unset(load: Loader) -> None:
    config = load({"LLAMACTL_PORT": "", "LLAMACTL_HOST": "  "})
    assert config.server.port == 8080
    assert config.server.host == "0.0.0.0"


# --- ${VAR} expansion ----------------------------------------------------------------


def test_variable_expansion(load: Loader, cwd: Path) -> None:
    write(cwd / ".env", "FROM_DOTENV=dotenv-image\n")
    write(
        cwd / "llamactl.yaml",
        "server:\n"
        "  host: ${MY_HOST}\n"
        "  port: ${MY_PORT:-8123}\n"
        "backends:\n"
        "  llama-cpp:\n"
        "    command: ${UNSET_VAR}\n"
        "    docker:\n"
        "      image: ${FROM_DOTENV}\n"
        "  vllm:\n"
        "    command: ${EMPTY_VAR:-fallback}\n",
    )
    config = load({"MY_HOST": "127.0.0.1", "EMPTY_VAR": ""})
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8123
    assert config.backends.llama_cpp.command == "${UNSET_VAR}"
    assert config.backends.vllm.command == "fallback"
    docker = config.backends.llama_cpp.docker
    assert docker is not None and docker.image == "dotenv-image"


# --- database ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "attribute", "expected"),
    [
        ("LLAMACTL_DATABASE_PATH", "/srv/db.sqlite", "path", "/srv/db.sqlite"),
        ("LLAMACTL_DATABASE_MAX_OPEN_CONNECTIONS", "40", "max_open_connections", 40),
        ("LLAMACTL_DATABASE_MAX_IDLE_CONNECTIONS", "0", "max_idle_connections", 0),
        (
            "LLAMACTL_DATABASE_CONN_MAX_LIFETIME",
            "1h30m",
            "connection_max_lifetime",
            datetime.timedelta(hours=1, minutes=30),
        ),
    ],
)
def test_database_variables(
    load: Loader, variable: str, raw: str, attribute: str, expected: object
) -> None:
    config = load({variable: raw})
    assert getattr(config.database, attribute) == expected
    assert config.sources[f"database.{attribute}"] == f"env {variable}"


def test_database_section_from_yaml(load: Loader, cwd: Path) -> None:
    write(
        cwd / "llamactl.yaml",
        "database:\n  path: ':memory:'\n  max_open_connections: 3\n"
        "  max_idle_connections: 3\n  connection_max_lifetime: 90s\n",
    )
    database = load().database
    assert database.path == ":memory:"
    assert database.max_open_connections == 3
    assert database.max_idle_connections == 3
    assert database.connection_max_lifetime == datetime.timedelta(seconds=90)


# --- paths ---------------------------------------------------------------------------


def test_relative_paths_resolve(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "data_dir: state\ndatabase:\n  path: db/main.db\n")
    config = load()
    assert config.data_dir == cwd / "state"
    assert config.database.path == str(cwd / "state" / "db" / "main.db")
    assert config.instances.instances_dir == cwd / "state" / "instances"
    assert config.instances.logs_dir == cwd / "state" / "logs"
    assert config.sources["instances.logs_dir"] == "derived from data_dir"
    assert config.sources["database.path"] == f"{cwd / 'llamactl.yaml'}:3"


@pytest.mark.parametrize(
    "database_path",
    [":memory:", "/abs/llamactl.db", "postgresql+psycopg://u:p@db/llamactl"],
)
def test_database_path_kept(load: Loader, database_path: str) -> None:
    config = load({"LLAMACTL_DATABASE_PATH": database_path, "LLAMACTL_DATA_DIRECTORY": "/d"})
    assert config.database.path == database_path


def test_explicit_dirs(load: Loader, cwd: Path, home: Path) -> None:
    write(
        cwd / "llamactl.yaml",
        "data_dir: ~/llm\ninstances:\n  instances_dir: json\n  logs_dir: /var/log/llamactl\n",
    )
    config = load()
    assert config.data_dir == home / "llm"
    assert config.instances.instances_dir == cwd / "json"
    assert config.instances.logs_dir == Path("/var/log/llamactl")


def test_legacy_keys(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "instances:\n  data_dir: /legacy\n  configs_dir: /old/json\n")
    config = load()
    assert config.data_dir == Path("/legacy")
    assert config.instances.instances_dir == Path("/old/json")
    assert config.sources["data_dir"] == f"{cwd / 'llamactl.yaml'}:2"


def test_top_level_data_dir_beats_legacy(load: Loader, cwd: Path) -> None:
    write(
        cwd / "llamactl.yaml",
        "instances:\n  data_dir: /legacy\n  instances_dir: /new\n  configs_dir: /old\n"
        "data_dir: /top\n",
    )
    config = load()
    assert config.data_dir == Path("/top")
    assert config.instances.instances_dir == Path("/new")


# --- config file discovery -----------------------------------------------------------


def test_search_order(load: Loader, cwd: Path, home: Path) -> None:
    assert load().config_path is None
    user = write(home / ".config" / "llamactl" / "config.yaml", "server:\n  port: 1001\n")
    assert load().config_path == user
    local_config = write(cwd / "config.yaml", "server:\n  port: 1002\n")
    assert load().config_path == local_config
    local_llamactl = write(cwd / "llamactl.yaml", "server:\n  port: 1003\n")
    config = load()
    assert config.config_path == local_llamactl
    assert config.server.port == 1003


def test_explicit_path_wins_over_search(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "server:\n  port: 1003\n")
    write(cwd / "custom.yaml", "server:\n  port: 1004\n")
    assert load(path="custom.yaml").server.port == 1004
    assert load({CONFIG_PATH_ENV: str(cwd / "custom.yaml")}).server.port == 1004


@pytest.mark.parametrize(
    ("platform", "environ", "expected_tail"),
    [
        ("linux", {}, ["HOME/.config/llamactl/config.yaml", "/etc/llamactl/config.yaml"]),
        (
            "darwin",
            {},
            [
                "HOME/Library/Application Support/llamactl/config.yaml",
                "/Library/Application Support/llamactl/config.yaml",
            ],
        ),
        (
            "win32",
            {"APPDATA": "A", "PROGRAMDATA": "P"},
            ["A/llamactl/config.yaml", "P/llamactl/config.yaml"],
        ),
        ("win32", {"USERPROFILE": "U"}, ["U/llamactl/config.yaml"]),
    ],
)
def test_search_paths(
    platform: str, environ: dict[str, str], expected_tail: list[str], home: Path, cwd: Path
) -> None:
    paths = [str(path) for path in config_search_paths(platform, environ, home, cwd)]
    assert paths[:2] == [str(cwd / "llamactl.yaml"), str(cwd / "config.yaml")]
    assert paths[2:] == [item.replace("HOME", str(home)) for item in expected_tail]


def test_explicit_missing_path(load: Loader, cwd: Path) -> None:
    error = error_of(load, path="nope.yaml")
    assert str(cwd / "nope.yaml") in str(error)
    assert "does not exist" in str(error)
    error = error_of(load, environ={CONFIG_PATH_ENV: "/no/such.yaml"})
    assert "/no/such.yaml" in str(error)
    assert f"env {CONFIG_PATH_ENV}" in str(error)


def test_yaml_syntax_error(load: Loader, cwd: Path) -> None:
    path = write(cwd / "llamactl.yaml", "server:\n  port: 1\n  host: [unclosed\n")
    error = error_of(load)
    assert re.search(rf"{re.escape(str(path))}:\d+", str(error))
    assert "YAML syntax error" in str(error)


# --- bad input -----------------------------------------------------------------------

ENV_CASES = [
    ("LLAMACTL_DATABASE_MAX_OPEN_CONNECTIONS", "lots", "database.max_open_connections",
     "expected an integer"),
    ("LLAMACTL_DATABASE_MAX_IDLE_CONNECTIONS", "-2", "database.max_idle_connections",
     "must be at least 0"),
    ("LLAMACTL_DATABASE_CONN_MAX_LIFETIME", "forever", "database.connection_max_lifetime",
     "duration"),
    ("LLAMACTL_DATABASE_CONN_MAX_LIFETIME", "-5m", "database.connection_max_lifetime",
     "negative"),
    ("LLAMACTL_INSTANCE_PORT_RANGE", "9000-8000", "instances.port_range", "start < end"),
    ("LLAMACTL_INSTANCE_PORT_RANGE", "8000", "instances.port_range", "START-END"),
    ("LLAMACTL_INSTANCE_PORT_RANGE", "a-b", "instances.port_range", "integers"),
    ("LLAMACTL_INSTANCE_PORT_RANGE", "1-2-3", "instances.port_range", "START-END"),
    ("LLAMACTL_INSTANCE_PORT_RANGE", "0-100", "instances.port_range", "0 < start"),
    ("LLAMACTL_INSTANCE_PORT_RANGE", "1000-70000", "instances.port_range", "65535"),
    ("LLAMACTL_PORT", "0", "server.port", "must be at least 1"),
    ("LLAMACTL_PORT", "65536", "server.port", "must be at most 65535"),
    ("LLAMACTL_PORT", "1_000", "server.port", "expected an integer"),
    ("LLAMACTL_PORT", "80.5", "server.port", "expected an integer"),
    ("LLAMACTL_ENABLE_SWAGGER", "yes", "server.enable_swagger", "expected a boolean"),
    ("LLAMACTL_MAX_INSTANCES", "-2", "instances.max_instances", "must be at least -1"),
    ("LLAMACTL_DEFAULT_MAX_RESTARTS", "-5", "instances.default_max_restarts", "at least -1"),
    ("LLAMACTL_DEFAULT_RESTART_DELAY", "-1", "instances.default_restart_delay", "at least 0"),
    ("LLAMACTL_TIMEOUT_CHECK_INTERVAL", "0", "instances.timeout_check_interval", "at least 1"),
    ("LLAMACTL_LLAMACPP_ENV", "NOVALUE", "backends.llama-cpp.environment", "KEY=VALUE"),
    ("LLAMACTL_VLLM_ARGS", "--x 'open", "backends.vllm.args", "cannot split"),
]  # fmt: skip


@pytest.mark.parametrize(("variable", "raw", "key", "reason"), ENV_CASES)
def test_bad_environment_value(
    load: Loader, variable: str, raw: str, key: str, reason: str
) -> None:
    error = error_of(load, environ={variable: raw})
    message = str(error)
    assert f"{key} = {raw!r} (env {variable})" in message
    assert reason in message
    assert (error.key, error.source) == (key, f"env {variable}")


def test_idle_above_open_from_environment(load: Loader, cwd: Path) -> None:
    path = write(cwd / "llamactl.yaml", "database:\n  max_open_connections: 10\n")
    message = str(error_of(load, environ={"LLAMACTL_DATABASE_MAX_IDLE_CONNECTIONS": "26"}))
    assert "database.max_idle_connections = 26 (env LLAMACTL_DATABASE_MAX_IDLE_CONNECTIONS)" in (
        message
    )
    assert f"must not exceed database.max_open_connections = 10 ({path}:2)" in message


def test_bad_value_in_dotenv_names_the_file(load: Loader, cwd: Path) -> None:
    write(cwd / ".env", "# pool\nLLAMACTL_DATABASE_MAX_OPEN_CONNECTIONS=lots\n")
    message = str(error_of(load))
    assert f"database.max_open_connections = 'lots' (.env {cwd / '.env'}:2)" in message


YAML_CASES = [
    ("database:\n  max_open_connections: lots\n", "database.max_open_connections", "'lots'",
     2, "expected an integer"),
    ("database:\n\n  max_open_connections: -3\n", "database.max_open_connections", "-3", 3,
     "must be at least 1"),
    ("database:\n  max_idle_connections: -1\n", "database.max_idle_connections", "-1", 2,
     "must be at least 0"),
    ("database:\n  max_open_connections: 4\n  max_idle_connections: 9\n",
     "database.max_idle_connections", "9", 3, "must not exceed"),
    ("database:\n  connection_max_lifetime: forever\n", "database.connection_max_lifetime",
     "'forever'", 2, "duration"),
    ("database:\n  connection_max_lifetime: 300\n", "database.connection_max_lifetime",
     "300", 2, "duration"),
    ("instances:\n  port_range: [9000, 8000]\n", "instances.port_range", "[9000, 8000]", 2,
     "start < end"),
    ("instances:\n  port_range: '8000-9000'\n", "instances.port_range", "'8000-9000'", 2,
     "list of two"),
    ("instances:\n  port_range: [8000, 8500, 9000]\n", "instances.port_range",
     "[8000, 8500, 9000]", 2, "list of two"),
    ("bogus: 1\n", "bogus", "1", 1, "unknown key"),
    ("server:\n  host: x\n  prot: 8080\n", "server.prot", "8080", 3, "did you mean 'port'"),
    ("backends:\n  llama-cpp:\n    docker:\n      imgae: x\n",
     "backends.llama-cpp.docker.imgae", "'x'", 4, "unknown key"),
    ("nodes:\n  w1:\n    adress: http://w1\n", "nodes.w1.adress", "'http://w1'", 3,
     "unknown key"),
    ("server:\n  port: 1\n  port: 2\n", "server.port", "2", 3, "duplicate key"),
    ("server: 5\n", "server", "5", 1, "expected a mapping"),
    ("server:\n  enable_swagger: 'true'\n", "server.enable_swagger", "'true'", 2,
     "expected a boolean"),
    ("server:\n  port: '8080'\n", "server.port", "'8080'", 2, "expected an integer"),
    ("server:\n  port: true\n", "server.port", "True", 2, "expected an integer"),
    ("server:\n  host:\n", "server.host", "None", 2, "expected a string"),
    ("server:\n  allowed_origins: '*'\n", "server.allowed_origins", "'*'", 2, "list"),
    ("data_dir: ''\n", "data_dir", "''", 1, "must not be empty"),
    ("instances:\n  configs_dir: [1]\n", "instances.configs_dir", "[1]", 2,
     "expected a string"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "key", "shown", "line", "reason"), YAML_CASES)
def test_bad_yaml_value(
    load: Loader, cwd: Path, text: str, key: str, shown: str, line: int, reason: str
) -> None:
    path = write(cwd / "llamactl.yaml", text)
    error = error_of(load)
    assert f"{key} = {shown} ({path}:{line})" in str(error)
    assert reason in str(error)
    assert error.source == f"{path}:{line}"


def test_secret_values_are_masked_in_errors(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "auth:\n  management_keys: sk-not-a-list\n")
    message = str(error_of(load))
    assert "auth.management_keys = '********'" in message
    assert "sk-not-a-list" not in message
    write(cwd / "llamactl.yaml", "nodes:\n  w:\n    apikey: sk-misspelt\n")
    message = str(error_of(load))
    assert "nodes.w.apikey = '********'" in message and "unknown key" in message
    assert "sk-misspelt" not in message


def test_top_level_must_be_a_mapping(load: Loader, cwd: Path) -> None:
    path = write(cwd / "llamactl.yaml", "- server\n- port\n")
    assert f"(top level) = ['server', 'port'] ({path}:1)" in str(error_of(load))


def test_empty_file_means_defaults(load: Loader, cwd: Path) -> None:
    path = write(cwd / "llamactl.yaml", "# nothing yet\n")
    config = load()
    assert config.config_path == path
    assert config.server.port == 8080


# --- value syntax --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(s, True) for s in ("1", "t", "T", "TRUE", "true", "True")]
    + [(s, False) for s in ("0", "f", "F", "FALSE", "false", "False")],
)
def test_bool_spellings(load: Loader, raw: str, expected: bool) -> None:
    config = load({"LLAMACTL_ENABLE_SWAGGER": raw, "LLAMACTL_REQUIRE_INFERENCE_AUTH": raw})
    assert config.server.enable_swagger is expected
    assert config.auth.require_inference_auth is expected


def test_yaml_booleans(load: Loader, cwd: Path) -> None:
    write(
        cwd / "llamactl.yaml",
        "server:\n  enable_swagger: yes\ninstances:\n  auto_create_dirs: off\n",
    )
    config = load()
    assert config.server.enable_swagger is True
    assert config.instances.auto_create_dirs is False


@pytest.mark.parametrize("raw", ["8000-9000", "8000,9000", " 8000 - 9000 ", "8000, 9000"])
def test_port_range_environment_formats(load: Loader, raw: str) -> None:
    assert load({"LLAMACTL_INSTANCE_PORT_RANGE": raw}).instances.port_range == (8000, 9000)


def test_port_range_yaml(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "instances:\n  port_range: [10000, 10010]\n")
    assert load().instances.port_range == (10000, 10010)


def test_maps_merge(load: Loader, cwd: Path) -> None:
    write(
        cwd / "llamactl.yaml",
        "backends:\n"
        "  llama-cpp:\n"
        "    environment: {A: one, B: two}\n"
        "    response_headers:\n"
        "      X-Accel-Buffering: no\n",
    )
    environ = {
        "LLAMACTL_LLAMACPP_ENV": "B=three,C=http://h:1/?q=x",
        "LLAMACTL_LLAMACPP_RESPONSE_HEADERS": "X-One=1; X-Two=a=b",
        "LLAMACTL_VLLM_DOCKER_ENV": "HF_HOME=/cache:/x",
    }
    config = load(environ)
    llama = config.backends.llama_cpp
    assert llama.environment == {"A": "one", "B": "three", "C": "http://h:1/?q=x"}
    assert llama.response_headers == {"X-Accel-Buffering": "no", "X-One": "1", "X-Two": "a=b"}
    vllm_docker = config.backends.vllm.docker
    assert vllm_docker is not None and vllm_docker.environment == {"HF_HOME": "/cache:/x"}
    assert config.sources["backends.llama-cpp.environment"] == (
        f"{cwd / 'llamactl.yaml'}:3 + env LLAMACTL_LLAMACPP_ENV"
    )


def test_lists(load: Loader) -> None:
    environ = {
        "LLAMACTL_LLAMACPP_ARGS": "--chat-template 'my template' --ctx-size 4096",
        "LLAMACTL_ALLOWED_ORIGINS": "http://a, http://b,",
        "LLAMACTL_MANAGEMENT_KEYS": "k1,k2",
    }
    config = load(environ)
    assert config.backends.llama_cpp.args == [
        "--chat-template", "my template", "--ctx-size", "4096",
    ]  # fmt: skip
    assert config.server.allowed_origins == ["http://a", "http://b"]
    assert [key.get_secret_value() for key in config.auth.management_keys] == ["k1", "k2"]


def test_yaml_list_items_keep_their_text(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "backends:\n  mlx:\n    args: [--port, 8080, --flag, on]\n")
    assert load().backends.mlx.args == ["--port", "8080", "--flag", "on"]


# --- nodes ---------------------------------------------------------------------------


def test_local_node_added(load: Loader, cwd: Path) -> None:
    write(
        cwd / "llamactl.yaml",
        "local_node: gpu\nnodes:\n  worker:\n    address: http://w:8080/\n    api_key: sk-w\n"
        "  keyless:\n    address: https://k\n",
    )
    config = load()
    assert sorted(config.nodes) == ["gpu", "keyless", "worker"]
    assert config.nodes["gpu"].address == ""
    assert config.nodes["worker"].address == "http://w:8080"  # no trailing slash
    worker_key = config.nodes["worker"].api_key
    assert isinstance(worker_key, SecretStr) and worker_key.get_secret_value() == "sk-w"
    assert config.nodes["keyless"].api_key is None


@pytest.mark.parametrize(
    ("entry", "shown", "reason"),
    [
        ("  empty:\n", "''", "needs the base URL of its llamactl"),
        ("  w:\n    address: gpu-box:8080\n", "'gpu-box:8080'", "expected an http:// or https://"),
        ("  w:\n    address: ftp://w\n", "'ftp://w'", "expected an http:// or https://"),
        ("  w:\n    address: http://\n", "'http://'", "with a host"),
        ("  w:\n    address: http://w:99999\n", "'http://w:99999'", "the port is not a number"),
        ("  w:\n    address: http://u:p@w\n", "'http://u:p@w'", "give the key in api_key"),
        (
            "  w:\n    address: https://w\n    ca_file: /nowhere/ca.pem\n",
            "'/nowhere/ca.pem'",
            "no such file",
        ),
    ],
)
def test_another_node_without_a_usable_address_is_refused(
    load: Loader, cwd: Path, entry: str, shown: str, reason: str
) -> None:
    write(cwd / "llamactl.yaml", "nodes:\n" + entry)
    with pytest.raises(ConfigError) as caught:
        load()
    key = "nodes.empty.address" if "empty" in entry else "nodes.w.address"
    key = "nodes.w.ca_file" if "ca_file" in entry else key
    assert f"{key} = {shown}" in caught.value.message
    assert reason in caught.value.message


def test_local_node_listed_is_kept(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "nodes:\n  main:\n    address: http://self\n")
    config = load({"LLAMACTL_LOCAL_NODE": "main"})
    assert list(config.nodes) == ["main"]
    assert config.nodes["main"].address == "http://self"


def test_local_node_from_environment(load: Loader) -> None:
    config = load({"LLAMACTL_LOCAL_NODE": "box"})
    assert config.local_node == "box"
    assert list(config.nodes) == ["box"]


# --- describe and public view --------------------------------------------------------


def test_describe_config(load: Loader, cwd: Path) -> None:
    path = write(
        cwd / "llamactl.yaml",
        "auth:\n  management_keys: [sk-secret]\nnodes:\n  w:\n    address: http://w\n"
        "    api_key: sk-node\n",
    )
    config = load({"LLAMACTL_PORT": "9090"})
    rows = {row.key: row for row in describe_config(config)}
    assert rows["server.port"].value == "9090"
    assert rows["server.port"].source == "env LLAMACTL_PORT"
    assert rows["auth.management_keys"].value == "********"
    assert rows["auth.management_keys"].source == f"{path}:2"
    assert rows["auth.inference_keys"].value == ""
    assert rows["nodes.w.api_key"].value == "********"
    assert rows["database.connection_max_lifetime"].value == "5m"
    assert rows["instances.port_range"].value == "8000-9000"
    assert "sk-secret" not in repr(describe_config(config))
    keys = [row.key for row in describe_config(config)]
    assert keys[:3] == ["data_dir", "server.host", "server.port"]
    assert keys[-6:] == [
        "nodes.w.address", "nodes.w.api_key", "nodes.w.ca_file",
        "nodes.main.address", "nodes.main.api_key", "nodes.main.ca_file",
    ]  # fmt: skip


def test_public_config_has_no_secret(load: Loader, cwd: Path) -> None:
    write(
        cwd / "llamactl.yaml",
        "auth:\n  management_keys: [sk-secret]\n  inference_keys: [sk-inf]\n"
        "nodes:\n  w:\n    address: http://w\n    api_key: sk-node\n",
    )
    public = public_config(load())
    text = json.dumps(public)
    assert "sk-" not in text
    auth = public["auth"]
    assert isinstance(auth, dict)
    assert auth["management_keys"] == [] and auth["inference_keys"] == []
    assert public["nodes"] == {
        "w": {"address": "http://w", "ca_file": ""},
        "main": {"address": "", "ca_file": ""},
    }
    database = public["database"]
    assert isinstance(database, dict) and database["connection_max_lifetime"] == "5m"
    backends = public["backends"]
    assert isinstance(backends, dict) and "docker" not in backends["mlx"]


def test_custom_backend_entries_are_described_each_with_its_own_parts(
    load: Loader, cwd: Path
) -> None:
    path = write(
        cwd / "llamactl.yaml",
        "backends:\n  custom:\n    plain:\n      command: srv\n      args: [--port, '{port}']\n"
        "    boxed:\n      command: srv\n      docker:\n        image: example/srv\n",
    )
    config = load()
    assert list(config.backends.custom) == ["plain", "boxed"]
    assert config.backends.custom["plain"].docker is None
    keys = [row.key for row in describe_config(config) if row.key.startswith("backends.custom.")]
    assert keys == [
        "backends.custom.plain.command", "backends.custom.plain.args",
        "backends.custom.plain.environment", "backends.custom.plain.health_path",
        "backends.custom.boxed.command", "backends.custom.boxed.args",
        "backends.custom.boxed.environment", "backends.custom.boxed.health_path",
        "backends.custom.boxed.docker.image", "backends.custom.boxed.docker.args",
        "backends.custom.boxed.docker.environment",
    ]  # fmt: skip
    rows = {row.key: row for row in describe_config(config)}
    assert rows["backends.custom.plain.args"].source == f"{path}:5"
    backends = public_config(config)["backends"]
    assert isinstance(backends, dict)
    assert backends["custom"]["plain"] == {
        "command": "srv", "args": ["--port", "{port}"], "environment": {},
        "health_path": "/health",
    }  # fmt: skip
    assert backends["custom"]["boxed"]["docker"]["image"] == "example/srv"


def test_a_misspelt_key_of_a_custom_entry_is_refused(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "backends:\n  custom:\n    x:\n      comand: srv\n")
    error = error_of(load)
    assert "backends.custom.x.comand" in str(error)
    assert "did you mean 'command'?" in str(error)


class _WithEntries(BackendsConfig):
    """Backends with one whose instances each name an entry of their own."""

    named: dict[str, BackendConfig] = Field(default_factory=dict)


def test_a_backend_of_named_entries_has_an_empty_shared_section(load: Loader) -> None:
    backends = load().backends
    document = {**backends.model_dump(by_alias=True), "named": {"a": {"command": "srv"}}}
    extended = _WithEntries.model_validate(document)
    shared = extended.section("named")
    assert (shared.command, shared.args, shared.docker, shared.response_headers) == (
        "",
        [],
        None,
        {},
    )
    assert extended.named["a"].command == "srv"
    assert extended.section("llama-cpp") == backends.llama_cpp


# --- durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", datetime.timedelta(0)),
        ("300ms", datetime.timedelta(milliseconds=300)),
        ("90s", datetime.timedelta(seconds=90)),
        ("5m", datetime.timedelta(minutes=5)),
        ("1h30m", datetime.timedelta(hours=1, minutes=30)),
        ("1.5h", datetime.timedelta(minutes=90)),
        ("2us", datetime.timedelta(microseconds=2)),
        ("2µs", datetime.timedelta(microseconds=2)),
        ("1500ns", datetime.timedelta(microseconds=2)),
        ("1m0.5s", datetime.timedelta(seconds=60.5)),
    ],
)
def test_parse_duration(text: str, expected: datetime.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "forever", "-5m", "5 m", "1d", "m5", "1h-3m"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime.timedelta(0), "0s"),
        (datetime.timedelta(minutes=5), "5m"),
        (datetime.timedelta(hours=1, minutes=30), "1h30m"),
        (datetime.timedelta(milliseconds=300), "300ms"),
        (datetime.timedelta(microseconds=7), "7us"),
        (datetime.timedelta(seconds=61.25), "1m1.25s"),
        (datetime.timedelta(days=1), "24h"),
    ],
)
def test_format_duration(value: datetime.timedelta, text: str) -> None:
    assert format_duration(value) == text
    assert parse_duration(text) == value


# --- docs ----------------------------------------------------------------------------


def test_docs_list_every_setting_and_variable() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in docs]
    missing += [env for s in SETTINGS for env in s.env if f"`{env}`" not in docs]
    missing += [] if f"`{CONFIG_PATH_ENV}`" in docs else [CONFIG_PATH_ENV]
    assert missing == []


def test_docs_table_is_generated_from_the_registry() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    assert settings_markdown() in docs, (
        "regenerate the table: python -c 'from llamactl.config.describe import "
        'settings_markdown as s; print(s(), end="")\''
    )


def test_registry_has_unique_keys_and_variables() -> None:
    keys = [s.name for s in SETTINGS]
    variables = [env for s in SETTINGS for env in s.env]
    assert len(keys) == len(set(keys))
    assert len(variables) == len(set(variables))
    assert all(env.startswith("LLAMACTL_") for env in variables)


def test_docs_example_loads(load: Loader, cwd: Path) -> None:
    docs = DOCS.read_text(encoding="utf-8")
    example = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    write(cwd / "llamactl.yaml", example)
    config = load({"LLAMACTL_ADMIN_KEY": "sk-admin", "GPU_BOX_KEY": "sk-gpu"})
    assert [key.get_secret_value() for key in config.auth.management_keys] == ["sk-admin"]
    assert sorted(config.nodes) == ["gpu-box", "main"]
    assert config.backends.llama_cpp.response_headers == {"X-Accel-Buffering": "no"}


# --- database.url ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("postgresql://u:pw@db:5432/llamactl", "postgresql+psycopg://u:pw@db:5432/llamactl"),
        ("postgres://u@db/llamactl", "postgresql+psycopg://u@db/llamactl"),
        ("postgresql+psycopg://db/x?sslmode=require", "postgresql+psycopg://db/x?sslmode=require"),
        ("sqlite:////srv/llamactl.db", "sqlite+pysqlite:////srv/llamactl.db"),
    ],
)
def test_database_url_names_the_driver(load: Loader, given: str, stored: str) -> None:
    config = load({"LLAMACTL_DATABASE_URL": given})
    assert config.database.url == stored
    assert config.database.location == stored


def test_database_url_wins_over_the_path(load: Loader, cwd: Path) -> None:
    write(cwd / "llamactl.yaml", "database:\n  path: other.db\n  url: postgresql://db/llamactl\n")
    config = load()
    assert config.database.location == "postgresql+psycopg://db/llamactl"
    assert load({}).database.url == "postgresql+psycopg://db/llamactl"
    write(cwd / "llamactl.yaml", "database:\n  path: other.db\n")
    assert load().database.location.endswith("other.db")


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://u:hunter2@db/x", "unsupported database 'mysql'"),
        ("db.example:5432/llamactl", "expected a URL"),
        ("postgresql:///llamactl", "needs a host"),
    ],
)
def test_a_bad_database_url_is_refused_by_name(load: Loader, given: str, reason: str) -> None:
    message = str(error_of(load, environ={"LLAMACTL_DATABASE_URL": given}))
    assert "database.url" in message and "LLAMACTL_DATABASE_URL" in message
    assert reason in message
    assert "hunter2" not in message


def test_the_database_password_is_masked_where_config_is_shown(load: Loader) -> None:
    config = load({"LLAMACTL_DATABASE_URL": "postgresql://llamactl:hunter2@db:5432/llamactl"})
    assert config.database.shown == "postgresql+psycopg://llamactl:********@db:5432/llamactl"
    public = public_config(config)
    assert "hunter2" not in json.dumps(public)
    database = public["database"]
    assert isinstance(database, dict)
    assert database["url"] == "postgresql+psycopg://llamactl:********@db:5432/llamactl"

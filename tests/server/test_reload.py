"""Which settings a reload applies, and that the others keep their running values."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamactl import auth
from llamactl.config import AppConfig, load_config
from llamactl.errors import ConfigError
from llamactl.server.reload import Change, Effect, Reloader, changes, effective

pytestmark = pytest.mark.anyio


def config(home: Path, **environ: str) -> AppConfig:
    return load_config(None, {"HOME": str(home), **environ}, cwd=home, home=home)


def test_changes_name_each_setting_and_when_it_applies(tmp_path: Path) -> None:
    old = config(tmp_path)
    new = config(
        tmp_path,
        LLAMACTL_PORT="9999",
        LLAMACTL_INFERENCE_KEYS="sk-new",
        LLAMACTL_MAX_RUNNING_INSTANCES="2",
        LLAMACTL_LLAMACPP_COMMAND="/opt/llama-server",
    )
    assert changes(old, new) == [
        Change("server.port", Effect.RESTART),
        Change("backends.llama-cpp.command", Effect.NEXT_START),
        Change("instances.max_running_instances", Effect.NOW),
        Change("auth.inference_keys", Effect.NOW),
    ]
    assert changes(old, config(tmp_path)) == []


def custom_entries(home: Path, entries: str) -> AppConfig:
    path = home / "custom.yaml"
    path.write_text(f"backends:\n  custom:\n{entries}")
    return load_config(path, {"HOME": str(home)}, cwd=home, home=home)


def test_custom_entries_added_edited_and_removed_are_each_named(tmp_path: Path) -> None:
    old = custom_entries(
        tmp_path,
        "    kept: {command: /bin/kept}\n"
        "    edited: {command: /bin/one}\n"
        "    removed: {command: /bin/gone}\n",
    )
    new = custom_entries(
        tmp_path,
        "    kept: {command: /bin/kept}\n"
        "    edited: {command: /bin/one, health_path: /ready}\n"
        "    added: {command: /bin/new}\n",
    )
    found = changes(old, new)
    assert found == [
        Change("backends.custom.added", Effect.NEXT_START),
        Change("backends.custom.edited", Effect.NEXT_START),
        Change("backends.custom.removed", Effect.NEXT_START),
    ]
    assert effective(old, new, found).backends.custom == new.backends.custom


def test_settings_that_need_a_restart_keep_their_running_values(tmp_path: Path) -> None:
    old = config(tmp_path)
    new = config(tmp_path, LLAMACTL_PORT="9999", LLAMACTL_MAX_RUNNING_INSTANCES="2")
    kept = effective(old, new, changes(old, new))
    assert kept.server.port == old.server.port
    assert kept.sources["server.port"] == "default"
    assert kept.instances.max_running_instances == 2
    assert kept.sources["instances.max_running_instances"] == "env LLAMACTL_MAX_RUNNING_INSTANCES"


class Target:
    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.keys: auth.Keys | None = None

    def reconfigure(self, config: AppConfig, keys: auth.Keys) -> None:
        self.config, self.keys = config, keys


async def test_a_bad_configuration_is_refused_and_the_running_one_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = config(tmp_path)
    target = Target(running)

    def load() -> AppConfig:
        return config(tmp_path, LLAMACTL_MAX_RUNNING_INSTANCES="lots")

    with pytest.raises(ConfigError):
        load()
    assert await Reloader(load, lambda: target.config, target).reload() is None
    assert target.config is running and target.keys is None
    assert "configuration not reloaded, the running one is kept" in caplog.text
    assert "LLAMACTL_MAX_RUNNING_INSTANCES" in caplog.text


async def test_a_reload_hands_over_new_keys_and_never_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = config(tmp_path, LLAMACTL_INFERENCE_KEYS="sk-old", LLAMACTL_MANAGEMENT_KEYS="sk-m")
    target = Target(running)
    new = config(tmp_path, LLAMACTL_INFERENCE_KEYS="sk-fresh", LLAMACTL_MANAGEMENT_KEYS="sk-m")
    caplog.set_level("INFO", logger="llamactl")
    found = await Reloader(lambda: new, lambda: target.config, target).reload()
    assert found == [Change("auth.inference_keys", Effect.NOW)]
    assert target.keys == auth.Keys.of(management=["sk-m"], inference=["sk-fresh"])
    assert "configuration: auth.inference_keys changed: applied" in caplog.text
    assert "sk-fresh" not in caplog.text and "sk-old" not in caplog.text


def test_the_log_level_is_a_setting_that_a_reload_applies(tmp_path: Path) -> None:
    import logging

    from llamactl.server.lifecycle import apply_log_level

    old = config(tmp_path)
    new = config(tmp_path, LLAMACTL_LOG_LEVEL="WARNING")
    assert (old.server.log_level, new.server.log_level) == ("info", "warning")
    assert changes(old, new) == [Change("server.log_level", Effect.NOW)]
    logger = logging.getLogger("llamactl")
    before = logger.level
    try:
        apply_log_level(new)
        assert logger.level == logging.WARNING
        apply_log_level(old)
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(before)


def test_a_bad_log_level_names_the_setting_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, LLAMACTL_LOG_LEVEL="loud")
    message = caught.value.message
    assert "server.log_level" in message and "loud" in message
    assert "debug, info, warning, error" in message

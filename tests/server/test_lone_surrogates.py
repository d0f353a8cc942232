"""A lone surrogate (``"\\ud800"`` in JSON) is refused wherever text comes in, naming the key.

Such a string decodes in Python but cannot be encoded as UTF-8: stored, it made every
later ``GET /api/v1/instances`` (so the dashboard) a 500, across restarts.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from llamactl import database
from llamactl.backends import BackendType
from llamactl.cli import main
from llamactl.database.json_import import import_json
from llamactl.errors import InvalidOptions, JsonImportError
from llamactl.instance import InstanceDefaults, Options
from llamactl.instance.text import lone_surrogate
from tests.support.cli import launch
from tests.support.server_process import stop
from tests.support.services import Api, serving

LONE = "\\ud800"  # as it is spelled in JSON text

# A create body with the lone surrogate at one place, and the key the error must name.
CASES = {
    "model": ('{"backend_options": {"model": "/m/%s.gguf"}}', "backend_options.model"),
    "extra argument": ('{"backend_options": {"x-flag": "%s"}}', "backend_options.x-flag"),
    "extra key": ('{"backend_options": {"x%s": "1"}}', "backend_options"),
    "environment value": ('{"environment": {"HF_TOKEN": "%s"}}', "environment.HF_TOKEN"),
    "environment name": ('{"environment": {"A%s": "1"}}', "environment"),
    "command_override": ('{"command_override": "llama-server %s"}', "command_override"),
    "nodes": ('{"nodes": ["main", "%s"]}', "nodes[1]"),
    "list value": ('{"backend_options": {"lora": ["a", "%s"]}}', "backend_options.lora[1]"),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(CASES))
async def test_the_api_refuses_a_lone_surrogate_and_keeps_listing(api: Api, case: str) -> None:
    template, key = CASES[case]
    body = template.replace("%s", LONE).encode()
    body = body[:-1] + b', "backend_type": "llama_cpp"}'
    if b'"backend_options"' not in body:
        body = body[:-1] + b', "backend_options": {}}'
    headers = {"Content-Type": "application/json"}
    for method in ("POST", "PUT"):
        response = await api.client.request(
            method, "/api/v1/instances/broken", content=body, headers=headers
        )
        assert response.status_code in {400, 404}, response.text
        if method == "POST":
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["code"] == "invalid_request"
            assert error["message"].startswith(f"{key}: "), error["message"]
            assert "lone surrogate" in error["message"]
    listed = await api.client.get("/api/v1/instances")
    assert listed.status_code == 200
    assert listed.json() == []


@pytest.mark.anyio
async def test_an_update_and_parse_command_refuse_it_too(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    created = await api.client.post(
        "/api/v1/instances/fine",
        json={"backend_type": "llama_cpp", "backend_options": {"model": "/m"}},
    )
    assert created.status_code == 201
    update = b'{"backend_type": "llama_cpp", "backend_options": {"model": "/m/\\udfff"}}'
    response = await api.client.put("/api/v1/instances/fine", content=update, headers=headers)
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("backend_options.model: ")
    parse = b'{"command": "llama-server -m \\ud83d"}'
    response = await api.client.post(
        "/api/v1/backends/llama-cpp/parse-command", content=parse, headers=headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("command: ")
    got = await api.client.get("/api/v1/instances/fine")
    assert got.json()["options"]["backend_options"]["model"] == "/m"


def test_options_refuse_it_naming_the_key() -> None:
    with pytest.raises(InvalidOptions) as raised:
        Options.from_json(
            {"backend_type": "llama_cpp", "backend_options": {}, "environment": {"T": "\ud800"}}
        )
    assert raised.value.field == "environment.T"
    assert raised.value.message.startswith("environment.T: not valid Unicode text")
    assert "\\ud800" in raised.value.message
    raised.value.message.encode("utf-8")  # the message itself can be sent


def test_a_pair_of_surrogates_and_other_text_are_fine() -> None:
    value = json.loads('{"a": ["\\ud83d\\ude00", "é", {"b\\u00e9": "\\u4e2d"}]}')
    assert lone_surrogate(value) is None
    deep: list[object] = []
    nested = deep
    for _ in range(50_000):
        inner: list[object] = []
        nested.append(inner)
        nested = inner
    nested.append("\ud800")
    found = lone_surrogate(deep)
    assert found is not None and found[0].endswith("[0][0]")


def legacy_file(folder: Path, name: str, environment_text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    options = '{"backend_type": "llama_cpp", "backend_options": {"model": "/m"}, '
    options += f'"environment": {{"HF_TOKEN": "{environment_text}"}}}}'
    head = f'"name": "{name}", "status": "stopped", "created": 1'
    path.write_text(f'{{{head}, "options": {options}}}')
    return path


def test_the_legacy_import_refuses_it(tmp_path: Path) -> None:
    folder = tmp_path / "instances"
    legacy_file(folder, "good", "hf_ok")
    bad = legacy_file(folder, "bad", LONE)
    db = database.open(database.DatabaseSettings(path=str(tmp_path / "llamactl.db")))
    try:
        database.run_migrations(db)
        defaults = InstanceDefaults(
            auto_restart=False,
            max_restarts=0,
            restart_delay=0,
            on_demand_start=True,
            idle_timeout=0,
            docker_enabled=False,
        )

        def defaults_for(_backend_type: BackendType) -> InstanceDefaults:
            return defaults

        with pytest.raises(JsonImportError) as raised:
            import_json(db, folder, defaults_for)
        assert str(bad) in raised.value.message
        assert "options.environment.HF_TOKEN: not valid Unicode text" in raised.value.message
        assert db.get_all() == []
    finally:
        db.close()


def test_the_cli_json_import_refuses_it(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    legacy_file(folder, "bad", LONE)
    env = {"LLAMACTL_DATA_DIRECTORY": str(tmp_path / "data"), "HOME": str(tmp_path)}
    result = CliRunner().invoke(main, ["db", "import-json", str(folder)], env=env)
    assert result.exit_code == 1, result.output
    assert "options.environment.HF_TOKEN: not valid Unicode text" in result.output
    assert (folder / "bad.json").exists()


def test_the_cli_sends_it_and_reports_the_server_s_refusal(tmp_path: Path) -> None:
    """``--set``/``--env`` values may hold one: from JSON, or from a non-UTF-8 argument."""
    process, server = launch(tmp_path)
    try:
        for option in (["--set", f'model="{LONE}"'], ["--env", "A=\udc80"]):
            result = server.run("instances", "create", "x", "--backend", "llama_cpp", *option)
            assert result.exit_code == 1, result.output
            assert "not valid Unicode text" in result.output
            assert "Traceback" not in result.output
        result = server.run("instances", "list", "--json")
        assert result.exit_code == 0 and json.loads(result.output) == []
    finally:
        stop(process)


@pytest.mark.anyio
async def test_a_surrogate_stored_before_it_was_refused_is_listed_escaped(
    tmp_path: Path,
) -> None:
    """A database written before lone surrogates were refused still lists (no 500), with
    the bad value escaped, so it can be seen and replaced."""
    async with serving(tmp_path) as api:
        created = await api.client.post(
            "/api/v1/instances/old",
            json={"backend_type": "llama_cpp", "backend_options": {"model": "/m/o.gguf"}},
        )
        assert created.status_code == 201, created.text
    with sqlite3.connect(tmp_path / "data" / "llamactl.db") as connection:
        connection.execute("UPDATE instances SET environment = ?", ('{"A": "\\ud800"}',))
    connection.close()
    async with serving(tmp_path) as api:
        listed = await api.client.get("/api/v1/instances")
        assert listed.status_code == 200, listed.text
        assert b'"A":"\\ud800"' in listed.content
        assert json.loads(listed.content)[0]["options"]["environment"] == {"A": "\ud800"}
        one = await api.client.get("/api/v1/instances/old")
        assert one.status_code == 200, one.text

"""The management API end to end: real manager, real database, the fake llama-server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, HTTPException

from llamactl import __version__
from llamactl.errors import DatabaseError
from llamactl.server import routes_backends
from tests.support.config import SESSION_PORTS, fake_options
from tests.support.services import Api, serving

pytestmark = pytest.mark.anyio

BODY_KEYS = [
    "name",
    "status",
    "created",
    "options",
    "readiness",
    "failure",
    "restarts",
    "in_flight",
    "queued",
    "held",
    "idle_seconds",
    "pid",
    "id",
    "node",
]
SLOW_LOAD = {"FAKE_LLAMA_LOAD_SECONDS": "0.3"}


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """Assert an error response in the management shape; return its message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code, body
    message = body["error"]["message"]
    assert isinstance(message, str)
    return message


async def create(api: Api, name: str, **overrides: object) -> dict[str, object]:
    response = await api.client.post(f"/api/v1/instances/{name}", json=fake_options(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


# -- instances: the happy path ---------------------------------------------------------------


async def test_instance_lifecycle_through_the_api(api: Api) -> None:
    created = await create(api, "alpha", environment=SLOW_LOAD)
    assert list(created) == BODY_KEYS
    assert created["status"] == "stopped"
    assert created["readiness"] is None
    assert created["failure"] is None
    assert created["pid"] is None
    assert (created["restarts"], created["in_flight"], created["queued"]) == (0, 0, 0)
    assert isinstance(created["created"], int)
    options = created["options"]
    assert isinstance(options, dict)
    assert options["backend_options"]["model"] == "/models/fake.gguf"
    assert options["environment"] == SLOW_LOAD

    listed = await api.client.get("/api/v1/instances")
    assert listed.status_code == 200
    assert listed.json() == [created]

    fetched = await api.client.get("/api/v1/instances/alpha")
    assert fetched.status_code == 200
    assert fetched.json() == created

    backend = {"model": "/models/fake.gguf", "ctx_size": 2048}
    updated = await api.client.put(
        "/api/v1/instances/alpha",
        json=fake_options(backend_options=backend, environment=SLOW_LOAD),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["options"]["backend_options"]["ctx_size"] == 2048

    started = await api.client.post("/api/v1/instances/alpha/start")
    assert started.status_code == 200, started.text
    body = started.json()
    assert (body["status"], body["readiness"]) == ("running", "starting")
    assert isinstance(body["pid"], int)

    ready = await api.client.post("/api/v1/instances/alpha/start", params={"wait": "true"})
    assert ready.status_code == 200, ready.text
    assert (ready.json()["status"], ready.json()["readiness"]) == ("running", "ready")
    assert ready.json()["pid"] == body["pid"]

    tail = await api.client.get("/api/v1/instances/alpha/logs", params={"lines": "2"})
    assert tail.status_code == 200
    assert tail.headers["content-type"].startswith("text/plain")
    assert len(tail.text.splitlines()) == 2
    whole = await api.client.get("/api/v1/instances/alpha/logs")
    assert "=== Instance alpha started at " in whole.text
    assert "--ctx-size 2048" in whole.text

    stopped = await api.client.post("/api/v1/instances/alpha/stop")
    assert stopped.status_code == 200
    assert (stopped.json()["status"], stopped.json()["readiness"]) == ("stopped", None)
    assert stopped.json()["pid"] is None

    deleted = await api.client.delete("/api/v1/instances/alpha")
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await api.client.get("/api/v1/instances/alpha")
    assert "alpha" in error_of(gone, 404, "instance_not_found")


async def test_list_is_sorted_by_name(api: Api) -> None:
    for name in ("charlie", "alpha", "bravo"):
        await create(api, name)
    listed = await api.client.get("/api/v1/instances")
    assert [item["name"] for item in listed.json()] == ["alpha", "bravo", "charlie"]
    assert all(list(item) == BODY_KEYS for item in listed.json())


async def test_list_is_empty_without_instances(api: Api) -> None:
    listed = await api.client.get("/api/v1/instances")
    assert (listed.status_code, listed.json()) == (200, [])


async def test_crud_routes_accept_a_trailing_slash(api: Api) -> None:
    created = await api.client.post("/api/v1/instances/slash/", json=fake_options())
    assert created.status_code == 201
    assert (await api.client.get("/api/v1/instances/slash/")).json()["name"] == "slash"
    updated = await api.client.put("/api/v1/instances/slash/", json=fake_options(max_restarts=7))
    assert updated.json()["options"]["max_restarts"] == 7
    assert (await api.client.delete("/api/v1/instances/slash/")).status_code == 204


async def test_update_keeps_the_port_when_the_body_leaves_it_out(api: Api) -> None:
    created = await create(api, "ported")
    port = created["options"]["backend_options"]["port"]  # type: ignore[index]
    updated = await api.client.put("/api/v1/instances/ported", json=fake_options())
    assert updated.json()["options"]["backend_options"]["port"] == port


async def test_restart_runs_the_backend_again(api: Api) -> None:
    await create(api, "again")
    first = (await api.client.post("/api/v1/instances/again/start")).json()
    restarted = await api.client.post("/api/v1/instances/again/restart")
    assert restarted.status_code == 200
    assert restarted.json()["status"] == "running"
    assert restarted.json()["pid"] != first["pid"]
    assert (await api.client.post("/api/v1/instances/again/stop")).status_code == 200


async def test_stop_of_a_stopped_instance_is_a_no_op(api: Api) -> None:
    await create(api, "idle")
    stopped = await api.client.post("/api/v1/instances/idle/stop")
    assert (stopped.status_code, stopped.json()["status"]) == (200, "stopped")


# -- instances: errors -----------------------------------------------------------------------


async def test_create_duplicate_is_409(api: Api) -> None:
    await create(api, "twice")
    again = await api.client.post("/api/v1/instances/twice", json=fake_options())
    assert "twice" in error_of(again, 409, "instance_exists")


@pytest.mark.parametrize("segment", ["bad%20name", ".hidden", "x" * 51, "caf%C3%A9"])
async def test_invalid_name_in_the_path_is_400(api: Api, segment: str) -> None:
    created = await api.client.post(f"/api/v1/instances/{segment}", json=fake_options())
    message = error_of(created, 400, "invalid_instance_name")
    assert "Invalid instance name" in message
    fetched = await api.client.get(f"/api/v1/instances/{segment}")
    error_of(fetched, 400, "invalid_instance_name")
    started = await api.client.post(f"/api/v1/instances/{segment}/start")
    error_of(started, 400, "invalid_instance_name")


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_malformed_json_is_400(api: Api, method: str) -> None:
    await create(api, "target")
    name = "fresh" if method == "POST" else "target"
    response = await api.client.request(
        method, f"/api/v1/instances/{name}", content=b'{"backend_type": '
    )
    assert "not valid JSON" in error_of(response, 400, "invalid_json")
    empty = await api.client.request(method, f"/api/v1/instances/{name}", content=b"")
    assert "empty" in error_of(empty, 400, "invalid_json")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too deeply"),
        (b'{"backend_type": "llama_cpp", "max_restarts": ' + b"9" * 5000 + b"}", "4300 digits"),
    ],
)
async def test_json_that_python_cannot_read_is_400(api: Api, content: bytes, says: str) -> None:
    response = await api.client.post("/api/v1/instances/fresh", content=content)
    assert says in error_of(response, 400, "invalid_json")
    assert (await api.client.get("/api/v1/instances")).json() == []


@pytest.mark.parametrize(
    ("body", "kind"), [([1, 2], "an array"), ("text", "a string"), (3, "a number")]
)
async def test_json_that_is_not_an_object_is_400(api: Api, body: object, kind: str) -> None:
    response = await api.client.post("/api/v1/instances/shape", json=body)
    assert kind in error_of(response, 400, "invalid_request")


async def test_invalid_options_name_the_field(api: Api) -> None:
    bad = fake_options(backend_options={"model": "/m.gguf", "gpu_layers": "many"})
    response = await api.client.post("/api/v1/instances/opts", json=bad)
    message = error_of(response, 400, "invalid_options")
    assert "gpu_layers" in message
    assert "'many'" in message
    missing = await api.client.post("/api/v1/instances/opts", json={"backend_options": {}})
    assert "backend_type" in error_of(missing, 400, "invalid_options")
    assert (await api.client.get("/api/v1/instances")).json() == []


async def test_settings_too_large_to_store_are_400(api: Api) -> None:
    body = fake_options(idle_timeout=2**63)
    response = await api.client.post("/api/v1/instances/huge", json=body)
    assert "idle_timeout" in error_of(response, 400, "invalid_options")
    parsed = await api.client.post(
        "/api/v1/backends/llama-cpp/parse-command",
        json={"command": f"llama-server -c {'9' * 5000}"},
    )
    assert parsed.status_code == 400 and "-c" in parsed.json()["error"]["message"]
    assert (await api.client.get("/api/v1/instances")).json() == []


async def test_invalid_options_on_update_leave_the_instance_alone(api: Api) -> None:
    created = await create(api, "steady")
    bad = fake_options(max_restarts="three")
    response = await api.client.put("/api/v1/instances/steady", json=bad)
    assert "max_restarts" in error_of(response, 400, "invalid_options")
    assert (await api.client.get("/api/v1/instances/steady")).json() == created


async def test_delete_of_a_running_instance_is_409(api: Api) -> None:
    await create(api, "busy")
    assert (await api.client.post("/api/v1/instances/busy/start")).status_code == 200
    refused = await api.client.delete("/api/v1/instances/busy")
    assert "stop it" in error_of(refused, 409, "conflict")
    assert (await api.client.post("/api/v1/instances/busy/stop")).status_code == 200
    assert (await api.client.delete("/api/v1/instances/busy")).status_code == 204


async def test_start_beyond_max_running_instances_is_409(tmp_path: Path) -> None:
    async with serving(tmp_path, environ={"LLAMACTL_MAX_RUNNING_INSTANCES": "1"}) as api:
        await create(api, "one")
        await create(api, "two")
        assert (await api.client.post("/api/v1/instances/one/start")).status_code == 200
        refused = await api.client.post("/api/v1/instances/two/start")
        assert "maximum number of running instances" in error_of(refused, 409, "limit_reached")
        assert (await api.client.get("/api/v1/instances/two")).json()["status"] == "stopped"


async def test_create_beyond_max_instances_is_409(tmp_path: Path) -> None:
    async with serving(tmp_path, environ={"LLAMACTL_MAX_INSTANCES": "1"}) as api:
        await create(api, "only")
        refused = await api.client.post("/api/v1/instances/extra", json=fake_options())
        error_of(refused, 409, "limit_reached")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/instances/ghost"),
        ("GET", "/api/v1/instances/ghost/"),
        ("PUT", "/api/v1/instances/ghost"),
        ("DELETE", "/api/v1/instances/ghost"),
        ("POST", "/api/v1/instances/ghost/start"),
        ("POST", "/api/v1/instances/ghost/start?wait=true"),
        ("POST", "/api/v1/instances/ghost/stop"),
        ("POST", "/api/v1/instances/ghost/restart"),
        ("GET", "/api/v1/instances/ghost/logs"),
        ("GET", "/api/v1/instances/ghost/logs?lines=5"),
    ],
)
async def test_unknown_instance_is_404_on_every_route(api: Api, method: str, path: str) -> None:
    body = json.dumps(fake_options()).encode() if method == "PUT" else None
    response = await api.client.request(method, path, content=body)
    assert error_of(response, 404, "instance_not_found") == "instance not found: ghost"


async def test_start_wait_reports_a_backend_that_fails_as_502(api: Api) -> None:
    await create(api, "broken", environment={"FAKE_LLAMA_EXIT_AT_START": "3"})
    response = await api.client.post("/api/v1/instances/broken/start", params={"wait": "true"})
    message = error_of(response, 502, "backend_failed")
    assert "broken" in message
    assert "3" in message
    body = (await api.client.get("/api/v1/instances/broken")).json()
    assert body["status"] == "failed"
    assert body["pid"] is None
    failure = body["failure"]
    assert set(failure) == {"reason", "last_lines"}
    assert "3" in failure["reason"]
    assert isinstance(failure["last_lines"], list)
    assert all(isinstance(line, str) for line in failure["last_lines"])


async def test_start_wait_gives_up_after_timeout(api: Api) -> None:
    await create(api, "slow", environment={"FAKE_LLAMA_LOAD_SECONDS": "30"})
    response = await api.client.post(
        "/api/v1/instances/slow/start", params={"wait": "true", "timeout": "0.2"}
    )
    assert "within 0.2 s" in error_of(response, 502, "backend_failed")
    body = (await api.client.get("/api/v1/instances/slow")).json()
    assert (body["status"], body["readiness"]) == ("running", "starting")
    assert (await api.client.post("/api/v1/instances/slow/stop")).status_code == 200


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"wait": "true", "timeout": "soon"}, "timeout"),
        ({"wait": "true", "timeout": "0"}, "timeout"),
        ({"wait": "true", "timeout": "inf"}, "timeout"),
        ({"wait": "maybe"}, "wait"),
        ({"timeout": "5"}, "timeout"),
    ],
)
async def test_start_rejects_bad_query_parameters(
    api: Api, query: dict[str, str], named: str
) -> None:
    await create(api, "params")
    response = await api.client.post("/api/v1/instances/params/start", params=query)
    assert named in error_of(response, 400, "invalid_request")
    assert (await api.client.get("/api/v1/instances/params")).json()["status"] == "stopped"


# -- logs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lines", ["abc", "-1", "1.5", "", " 3"])
async def test_logs_with_a_bad_lines_value_is_400(api: Api, lines: str) -> None:
    await create(api, "logged")
    response = await api.client.get("/api/v1/instances/logged/logs", params={"lines": lines})
    assert repr(lines) in error_of(response, 400, "invalid_request")


@pytest.mark.parametrize("path", ["logs", "logs/follow"])
async def test_logs_with_a_lines_value_too_long_for_int_is_400(api: Api, path: str) -> None:
    await create(api, "logged")
    response = await api.client.get(
        f"/api/v1/instances/logged/{path}", params={"lines": "9" * 5000}
    )
    assert error_of(response, 400, "invalid_request") == "lines is too large (5000 digits)"


async def test_logs_of_an_instance_that_never_ran_are_empty(api: Api) -> None:
    await create(api, "quiet")
    response = await api.client.get("/api/v1/instances/quiet/logs", params={"lines": "10"})
    assert (response.status_code, response.text) == (200, "")


async def test_logs_from_an_earlier_run_are_readable_after_a_restart(tmp_path: Path) -> None:
    async with serving(tmp_path) as first:
        await create(first, "kept")
        started = await first.client.post("/api/v1/instances/kept/start", params={"wait": "1"})
        assert started.status_code == 200
        assert (await first.client.post("/api/v1/instances/kept/stop")).status_code == 200
    async with serving(tmp_path) as second:
        assert second.manager.get("kept").status.value == "stopped"
        whole = await second.client.get("/api/v1/instances/kept/logs")
        assert whole.status_code == 200
        assert "=== Instance kept started at " in whole.text
        assert "=== Instance kept stopped at " in whole.text
        zero = await second.client.get("/api/v1/instances/kept/logs", params={"lines": "0"})
        assert zero.text == whole.text
        # The stop marker is followed by a blank line, which counts as a line.
        last = await second.client.get("/api/v1/instances/kept/logs", params={"lines": "2"})
        assert last.text == "\n".join(whole.text.splitlines()[-2:])
        assert last.text.startswith("=== Instance kept stopped at ")


# -- backends: parse-command -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "command", "backend_type", "expected"),
    [
        (
            "llama-cpp",
            "llama-server -m /models/a.gguf -c 4096 --gpu-layers 10 --custom-flag x",
            "llama_cpp",
            {
                "model": "/models/a.gguf",
                "ctx_size": 4096,
                "gpu_layers": 10,
                "extra_args": {"custom-flag": "x"},
            },
        ),
        (
            "mlx",
            "mlx_lm.server --model mlx-community/Qwen --port 8081",
            "mlx_lm",
            {"model": "mlx-community/Qwen", "port": 8081},
        ),
        (
            "vllm",
            "vllm serve org/model --tensor-parallel-size 2",
            "vllm",
            {"model": "org/model", "tensor_parallel_size": 2},
        ),
    ],
)
async def test_parse_command_for_each_backend(
    api: Api, segment: str, command: str, backend_type: str, expected: dict[str, object]
) -> None:
    response = await api.client.post(
        f"/api/v1/backends/{segment}/parse-command", json={"command": command}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"backend_type": backend_type, "backend_options": expected}


async def test_parsed_options_are_a_valid_create_body(api: Api) -> None:
    parsed = await api.client.post(
        "/api/v1/backends/llama-cpp/parse-command",
        json={"command": "llama-server -m /models/fake.gguf --ctx-size 1024"},
    )
    created = await api.client.post("/api/v1/instances/pasted", json=parsed.json())
    assert created.status_code == 201
    assert created.json()["options"]["backend_options"]["ctx_size"] == 1024


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({}, "invalid_request", "command is required"),
        ({"command": "   \n"}, "invalid_request", "command is empty"),
        ({"command": 42}, "invalid_request", "must be a string"),
        (["llama-server"], "invalid_request", "JSON object"),
        ({"command": 'llama-server -m "unterminated'}, "parse_error", "unterminated"),
        ({"command": "llama-server --ctx-size abc"}, "invalid_options", "--ctx-size"),
        ({"command": "llama-server stray"}, "parse_error", "'stray'"),
    ],
)
async def test_parse_command_errors_are_400(
    api: Api, body: object, code: str, fragment: str
) -> None:
    response = await api.client.post("/api/v1/backends/llama-cpp/parse-command", json=body)
    assert fragment in error_of(response, 400, code)


async def test_parse_command_with_malformed_json_is_400(api: Api) -> None:
    response = await api.client.post("/api/v1/backends/vllm/parse-command", content=b"{")
    error_of(response, 400, "invalid_json")


async def test_parse_command_for_an_unknown_backend_is_404(api: Api) -> None:
    response = await api.client.post(
        "/api/v1/backends/ollama/parse-command", json={"command": "ollama serve"}
    )
    assert "'ollama'" in error_of(response, 404, "not_found")


# -- backends: llama-server --help, --version, --list-devices ----------------------------------

FAKE_TOOL = """\
#!{python}
import os, sys, time
args = sys.argv[1:]
if "--fail" in args:
    print("error: no usable device")
    sys.exit(3)
if "--sleep" in args:
    with open(os.environ["PID_FILE"], "w") as out:
        out.write(str(os.getpid()))
    time.sleep(60)
flag = args[-1]
if flag == "--version":
    print("version: 4242 (deadbeef)", file=sys.stderr)
elif flag == "--help":
    print("usage: llama-server [options]")
elif flag == "--list-devices":
    print("Available devices:")
    print("  CPU: fake")
print("args: " + " ".join(args))
"""


def fake_tool(tmp_path: Path) -> Path:
    script = tmp_path / "bin" / "llama-server"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(FAKE_TOOL.replace("{python}", sys.executable))
    script.chmod(0o755)
    return script


@pytest.mark.parametrize(
    ("route", "flag", "expected"),
    [
        ("help", "--help", "usage: llama-server [options]\n"),
        ("version", "--version", "version: 4242 (deadbeef)\n"),
        ("devices", "--list-devices", "Available devices:\n  CPU: fake\n"),
    ],
)
async def test_llama_cpp_tool_routes_run_the_configured_command(
    tmp_path: Path, route: str, flag: str, expected: str
) -> None:
    script = fake_tool(tmp_path)
    environ = {"LLAMACTL_LLAMACPP_COMMAND": str(script), "LLAMACTL_LLAMACPP_ARGS": "--from-config"}
    async with serving(tmp_path, environ=environ) as api:
        response = await api.client.get(f"/api/v1/backends/llama-cpp/{route}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == f"{expected}args: --from-config {flag}\n"


async def test_llama_cpp_tool_routes_report_a_missing_executable_as_502(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "llama-server"
    async with serving(tmp_path, environ={"LLAMACTL_LLAMACPP_COMMAND": str(missing)}) as api:
        for route in ("help", "version", "devices"):
            response = await api.client.get(f"/api/v1/backends/llama-cpp/{route}")
            message = error_of(response, 502, "backend_failed")
            assert message == (f"{missing} not found: install it or set backends.llama-cpp.command")


async def test_llama_cpp_tool_routes_report_a_failing_command_as_502(tmp_path: Path) -> None:
    environ = {
        "LLAMACTL_LLAMACPP_COMMAND": str(fake_tool(tmp_path)),
        "LLAMACTL_LLAMACPP_ARGS": "--fail",
    }
    async with serving(tmp_path, environ=environ) as api:
        response = await api.client.get("/api/v1/backends/llama-cpp/version")
    message = error_of(response, 502, "backend_failed")
    assert "exited with status 3" in message
    assert "error: no usable device" in message


async def test_llama_cpp_tool_routes_kill_a_command_that_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes_backends, "COMMAND_TIMEOUT", 0.5)
    pid_file = tmp_path / "tool.pid"
    environ = {
        "LLAMACTL_LLAMACPP_COMMAND": str(fake_tool(tmp_path)),
        "LLAMACTL_LLAMACPP_ARGS": "--sleep",
        "LLAMACTL_LLAMACPP_ENV": f"PID_FILE={pid_file}",  # the backend's environment applies
    }
    async with serving(tmp_path, environ=environ) as api:
        response = await api.client.get("/api/v1/backends/llama-cpp/help")
    assert "did not finish within 0.5 s" in error_of(response, 502, "backend_failed")
    assert not Path(f"/proc/{pid_file.read_text()}").exists()


# -- version, config, nodes, healthz ---------------------------------------------------------


async def test_version_is_plain_text(api: Api) -> None:
    response = await api.client.get("/api/v1/version")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == f"Version: {__version__}\nCommit: unknown\nBuild Time: unknown\n"


async def test_config_shows_no_secret(tmp_path: Path) -> None:
    environ = {"LLAMACTL_MANAGEMENT_KEYS": "sk-secret", "LLAMACTL_INFERENCE_KEYS": "sk-infer"}
    async with serving(tmp_path, environ=environ) as api:
        response = await api.client.get("/api/v1/config")
    assert response.status_code == 200
    assert "sk-secret" not in response.text
    assert "sk-infer" not in response.text
    body = response.json()
    assert body["auth"]["management_keys"] == []
    assert body["auth"]["inference_keys"] == []
    assert body["instances"]["port_range"] == [SESSION_PORTS, SESSION_PORTS + 99]
    assert body["nodes"] == {"main": {"address": "", "ca_file": ""}}


async def test_nodes_list_the_local_node(api: Api) -> None:
    await create(api, "alpha")
    listed = await api.client.get("/api/v1/nodes")
    assert listed.status_code == 200 and list(listed.json()) == ["main"]
    one = await api.client.get("/api/v1/nodes/main")
    assert one.status_code == 200
    for body in (listed.json()["main"], one.json()):
        assert body["address"] == "" and body["local"] is True
        assert (body["status"], body["error"], body["version"]) == ("healthy", None, __version__)
        assert (body["instances"], body["running"]) == (1, 0)
    missing = await api.client.get("/api/v1/nodes/gpu9")
    assert "gpu9" in error_of(missing, 404, "not_found")


async def test_healthz_is_ok_while_the_database_answers(api: Api) -> None:
    response = await api.client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["version"]) == ("ok", __version__)
    database_report = body["database"]
    assert database_report["path"] == str(api.services.db.settings.path)
    assert database_report["writable"] is True
    assert database_report["unsaved_changes"] == 0
    assert database_report["free_bytes"] > 0


class _BrokenDatabase:
    def health(self) -> object:
        raise DatabaseError("database is locked")


async def test_healthz_is_503_when_the_database_fails(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.services, "db", _BrokenDatabase())
    response = await api.client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy", "error": "database is locked"}


# -- routing ---------------------------------------------------------------------------------


async def test_unknown_route_is_404_in_our_shape(api: Api) -> None:
    response = await api.client.get("/api/v1/nothing-here")
    assert error_of(response, 404, "not_found") == "no route matches GET /api/v1/nothing-here"


async def test_wrong_method_is_405_in_our_shape(api: Api) -> None:
    response = await api.client.delete("/api/v1/version")
    message = error_of(response, 405, "method_not_allowed")
    assert message == "method DELETE is not allowed on /api/v1/version; allowed: GET"
    assert response.headers["allow"] == "GET"


async def test_dependencies_guard_api_routes_but_not_healthz(tmp_path: Path) -> None:
    calls: list[str] = []

    def deny() -> None:
        calls.append("deny")
        raise HTTPException(401, "missing API key", headers={"WWW-Authenticate": "Bearer"})

    async with serving(tmp_path, dependencies=[Depends(deny)]) as api:
        for path in ("/api/v1/version", "/api/v1/instances", "/api/v1/nodes/main"):
            response = await api.client.get(path)
            assert error_of(response, 401, "unauthorized") == "missing API key"
            assert response.headers["www-authenticate"] == "Bearer"
        assert (await api.client.get("/healthz")).status_code == 200
    assert calls == ["deny"] * 3


async def test_openapi_documents_the_request_bodies(tmp_path: Path) -> None:
    async with serving(tmp_path, environ={"LLAMACTL_ENABLE_SWAGGER": "true"}) as api:
        await check_openapi(api)


async def check_openapi(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    assert schema["info"] == {
        "title": "llamactl",
        "version": __version__,
        "summary": "Manage local LLM inference servers.",
    }
    instance = schema["paths"]["/api/v1/instances/{name}"]
    assert set(instance) == {"get", "post", "put", "delete"}
    for method in ("post", "put"):
        body = instance[method]["requestBody"]["content"]["application/json"]["schema"]
        assert body["required"] == ["backend_type", "backend_options"]
    assert "/api/v1/instances/{name}/" not in schema["paths"]
    parse = schema["paths"]["/api/v1/backends/{backend}/parse-command"]["post"]
    assert "command" in parse["requestBody"]["content"]["application/json"]["schema"]["required"]
    # Errors are documented in their real shape; the 422 FastAPI assumes is never sent.
    responses = instance["get"]["responses"]
    assert set(responses) == {"200", "400", "401", "403", "404", "413", "415"}
    error = responses["404"]["content"]["application/json"]["schema"]
    assert error["required"] == ["error"]
    assert "HTTPValidationError" not in schema["components"].get("schemas", {})
    follow = schema["paths"]["/api/v1/instances/{name}/logs/follow"]["get"]["responses"]
    assert set(follow["200"]["content"]) == {"text/event-stream"}
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()

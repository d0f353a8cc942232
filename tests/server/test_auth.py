"""API keys: the route matrix through a real ASGI app, the transports, and the key files."""

from __future__ import annotations

import hmac
import json
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from llamactl.auth import (
    INVALID_KEY,
    MISSING_KEY,
    Keys,
    allows,
    load_keys,
    presented_key,
    reject,
    rejection,
)
from llamactl.config import AppConfig, load_config
from llamactl.errors import ConfigError, Unauthorized
from llamactl.server.auth import management_dependency, unauthorized_response

MANAGEMENT_KEY = "sk-management-test"
INFERENCE_KEY = "sk-inference-test"


def build_app(keys: Keys) -> FastAPI:
    """One management route behind the dependency, one bare ASGI inference app."""

    async def inference(scope: Scope, receive: Receive, send: Send) -> None:
        message = rejection(keys, scope, management=False)
        if message is not None:
            await reject(send, message)
            return
        await PlainTextResponse("inference ok")(scope, receive, send)

    app = FastAPI()

    async def on_unauthorized(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Unauthorized)
        return unauthorized_response(exc.message)

    app.add_exception_handler(Unauthorized, on_unauthorized)

    @app.api_route(
        "/api/v1/ping",
        methods=["GET", "OPTIONS"],
        dependencies=[Depends(management_dependency(keys))],
    )
    async def ping() -> PlainTextResponse:
        return PlainTextResponse("management ok")

    app.mount("/v1", inference)
    return app


def make_keys(*, require: bool = True) -> Keys:
    return Keys.of(
        management=[MANAGEMENT_KEY],
        inference=[INFERENCE_KEY],
        require_management=require,
        require_inference=require,
    )


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(make_keys()))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


MANAGEMENT = "/api/v1/ping"
INFERENCE = "/v1/chat/completions"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def expected_body(message: str) -> dict[str, object]:
    return {
        "error": {
            "message": message,
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }


# The HTTP matrix


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "key", "status"),
    [
        (MANAGEMENT, MANAGEMENT_KEY, 200),
        (MANAGEMENT, INFERENCE_KEY, 401),
        (INFERENCE, MANAGEMENT_KEY, 200),
        (INFERENCE, INFERENCE_KEY, 200),
    ],
)
async def test_key_classes(client: httpx.AsyncClient, path: str, key: str, status: int) -> None:
    response = await client.get(path, headers=bearer(key))
    assert response.status_code == status


@pytest.mark.anyio
@pytest.mark.parametrize("path", [MANAGEMENT, INFERENCE])
async def test_no_key_is_missing(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == expected_body(MISSING_KEY)


@pytest.mark.anyio
@pytest.mark.parametrize("path", [MANAGEMENT, INFERENCE])
async def test_wrong_key_is_invalid(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, headers=bearer("sk-wrong"))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == expected_body(INVALID_KEY)


@pytest.mark.anyio
async def test_inference_key_on_management_is_invalid(client: httpx.AsyncClient) -> None:
    response = await client.get(MANAGEMENT, headers=bearer(INFERENCE_KEY))
    assert response.json() == expected_body(INVALID_KEY)


@pytest.mark.anyio
async def test_body_is_exact_json_text(client: httpx.AsyncClient) -> None:
    response = await client.get(INFERENCE)
    assert response.content == (
        b'{"error": {"message": "Missing API key", "type": "authentication_error",'
        b' "param": null, "code": "invalid_api_key"}}'
    )
    assert response.headers["content-length"] == str(len(response.content))


@pytest.mark.anyio
@pytest.mark.parametrize("path", [MANAGEMENT, INFERENCE])
@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": f"Bearer {MANAGEMENT_KEY}"}, {}),
        ({"X-API-Key": MANAGEMENT_KEY}, {}),
        ({}, {"api_key": MANAGEMENT_KEY}),
    ],
    ids=["bearer", "x-api-key", "query"],
)
async def test_transports(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], params: dict[str, str]
) -> None:
    response = await client.get(path, headers=headers, params=params)
    assert response.status_code == 200


@pytest.mark.anyio
async def test_query_key_is_url_decoded() -> None:
    keys = Keys.of(inference=["a+b/c=d&e f"], require_management=False)
    transport = httpx.ASGITransport(app=build_app(keys))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(INFERENCE, params={"api_key": "a+b/c=d&e f"})
        assert response.status_code == 200
        response = await client.get(INFERENCE + "?api_key=a%2Bb%2Fc%3Dd%26e+f")
        assert response.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization",
    [
        f"bearer {MANAGEMENT_KEY}",
        f"BEARER {MANAGEMENT_KEY}",
        f"Token {MANAGEMENT_KEY}",
        f"Bearer{MANAGEMENT_KEY}",
        f"Basic {MANAGEMENT_KEY}",
        MANAGEMENT_KEY,
        "Bearer ",
    ],
)
async def test_bearer_prefix_must_be_exact(client: httpx.AsyncClient, authorization: str) -> None:
    response = await client.get(MANAGEMENT, headers={"Authorization": authorization})
    assert response.status_code == 401
    # Not a Bearer key, so nothing was presented.
    assert response.json() == expected_body(MISSING_KEY)


@pytest.mark.anyio
@pytest.mark.parametrize("path", [MANAGEMENT, INFERENCE])
async def test_options_needs_a_key_like_any_method(client: httpx.AsyncClient, path: str) -> None:
    # A CORS preflight is answered by the CORS layer before any route: see
    # test_unauthenticated_surface.py.
    response = await client.options(path)
    assert response.status_code == 401
    assert response.json() == expected_body(MISSING_KEY)
    key = MANAGEMENT_KEY
    assert (await client.options(path, headers=bearer(key))).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("path", [MANAGEMENT, INFERENCE])
@pytest.mark.parametrize("headers", [{}, bearer("sk-wrong"), bearer(INFERENCE_KEY)])
async def test_not_required_lets_everything_pass(path: str, headers: dict[str, str]) -> None:
    transport = httpx.ASGITransport(app=build_app(make_keys(require=False)))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(path, headers=headers)
    assert response.status_code == 200


# presented_key and allows, on raw scope data


def scope(
    headers: list[tuple[bytes, bytes]], query: bytes = b"", method: str = "GET"
) -> dict[str, object]:
    return {"type": "http", "method": method, "headers": headers, "query_string": query}


def test_bearer_wins_over_the_other_transports() -> None:
    headers = [(b"x-api-key", b"header"), (b"authorization", b"Bearer bearer")]
    assert presented_key(headers, b"api_key=query") == b"bearer"


def test_api_key_header_wins_over_query() -> None:
    headers = [(b"authorization", b"Token t"), (b"x-api-key", b"header")]
    assert presented_key(headers, b"api_key=query") == b"header"


def test_query_is_last() -> None:
    assert presented_key([(b"accept", b"*/*")], b"a=1&api_key=query&b=2") == b"query"
    assert presented_key([], b"xapi_key=nope") is None
    assert presented_key([], b"api_key=") is None
    assert presented_key([], b"") is None


def test_first_authorization_header_counts() -> None:
    headers = [(b"authorization", b"Basic abc"), (b"authorization", b"Bearer later")]
    assert presented_key(headers, b"") is None


def test_empty_api_key_header_presents_nothing() -> None:
    assert presented_key([(b"x-api-key", b"")], b"api_key=query") == b"query"


def test_every_key_is_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = Keys.of(management=["m1", "m2", "m3"], inference=["i1", "i2"])
    calls: list[bytes] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    # The first accepted key matches; the rest are compared all the same.
    assert allows(keys, scope([(b"x-api-key", b"m1")]), management=True)
    assert len(calls) == 3
    calls.clear()
    assert allows(keys, scope([(b"x-api-key", b"i1")]), management=False)
    assert len(calls) == 5
    calls.clear()
    assert not allows(keys, scope([(b"x-api-key", b"nope")]), management=False)
    assert len(calls) == 5


def test_allows_by_route_class() -> None:
    keys = make_keys()
    management = scope([(b"authorization", f"Bearer {MANAGEMENT_KEY}".encode())])
    inference = scope([(b"authorization", f"Bearer {INFERENCE_KEY}".encode())])
    assert allows(keys, management, management=True)
    assert allows(keys, management, management=False)
    assert allows(keys, inference, management=False)
    assert not allows(keys, inference, management=True)
    assert rejection(keys, scope([]), management=False) == MISSING_KEY
    assert rejection(keys, scope([(b"x-api-key", b"x")]), management=True) == INVALID_KEY
    assert rejection(keys, scope([], method="OPTIONS"), management=True) == MISSING_KEY
    assert rejection(keys, scope([], method="OPTIONS"), management=False) == MISSING_KEY


def test_keys_repr_hides_the_keys() -> None:
    text = repr(make_keys()) + str(make_keys())
    assert MANAGEMENT_KEY not in text
    assert INFERENCE_KEY not in text
    assert "1 keys" in text


# Key files


def config_for(home: Path, data_dir: Path, **env: str) -> AppConfig:
    environ = {"LLAMACTL_DATA_DIRECTORY": str(data_dir), **env}
    return load_config(None, environ, cwd=home, home=home)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_key(path: Path) -> str:
    return path.read_text().strip()


def test_generated_once_with_mode_0600_and_reused(home: Path, data_dir: Path) -> None:
    config = config_for(home, data_dir)
    first = load_keys(config)
    management_file = data_dir / "management.key"
    inference_file = data_dir / "inference.key"
    assert mode_of(management_file) == 0o600
    assert mode_of(inference_file) == 0o600
    management_key = read_key(management_file)
    inference_key = read_key(inference_file)
    assert management_key.startswith("sk-management-")
    assert len(management_key) == len("sk-management-") + 64
    assert inference_key.startswith("sk-inference-")
    assert len(inference_key) == len("sk-inference-") + 64
    assert first.messages == (
        f"management key: generated and stored in {management_file} (mode 0600)",
        f"inference key: generated and stored in {inference_file} (mode 0600)",
    )
    assert sorted(p.name for p in data_dir.iterdir()) == ["inference.key", "management.key"]

    second = load_keys(config)
    assert read_key(management_file) == management_key
    assert second.keys == first.keys
    assert second.messages == (
        f"management key: read from {management_file}",
        f"inference key: read from {inference_file}",
    )
    management = scope([(b"authorization", f"Bearer {management_key}".encode())])
    inference = scope([(b"x-api-key", inference_key.encode())])
    assert allows(second.keys, management, management=True)
    assert allows(second.keys, inference, management=False)
    assert not allows(second.keys, inference, management=True)


def test_generated_under_a_strict_umask_is_still_0600(home: Path, data_dir: Path) -> None:
    previous = os.umask(0o277)
    try:
        load_keys(config_for(home, data_dir))
    finally:
        os.umask(previous)
    assert mode_of(data_dir / "management.key") == 0o600


def test_different_data_dirs_get_different_keys(home: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = load_keys(config_for(home, tmp_path / "a"))
    b = load_keys(config_for(home, tmp_path / "b"))
    assert read_key(tmp_path / "a" / "management.key") != read_key(
        tmp_path / "b" / "management.key"
    )
    assert a.keys.management != b.keys.management
    assert a.keys.inference != b.keys.inference


def test_configured_keys_write_no_file(home: Path, data_dir: Path) -> None:
    loaded = load_keys(
        config_for(
            home,
            data_dir,
            LLAMACTL_MANAGEMENT_KEYS="m1,m2",
            LLAMACTL_INFERENCE_KEYS="i1",
        )
    )
    assert list(data_dir.iterdir()) == []
    assert loaded.messages == (
        "management keys: 2 from the configuration",
        "inference keys: 1 from the configuration",
    )
    assert loaded.keys == Keys.of(management=["m1", "m2"], inference=["i1"])


def test_only_the_unconfigured_class_gets_a_file(home: Path, data_dir: Path) -> None:
    load_keys(config_for(home, data_dir, LLAMACTL_MANAGEMENT_KEYS="m1"))
    assert [p.name for p in data_dir.iterdir()] == ["inference.key"]


def test_not_required_writes_no_file(home: Path, data_dir: Path) -> None:
    loaded = load_keys(
        config_for(
            home,
            data_dir,
            LLAMACTL_REQUIRE_MANAGEMENT_AUTH="false",
            LLAMACTL_REQUIRE_INFERENCE_AUTH="false",
        )
    )
    assert list(data_dir.iterdir()) == []
    assert loaded.messages == (
        "management auth: off, /api/v1 accepts requests without a key",
        "inference auth: off, /v1 and /llama-cpp accepts requests without a key",
    )
    assert allows(loaded.keys, scope([]), management=True)
    assert allows(loaded.keys, scope([]), management=False)


def test_messages_never_contain_the_key(home: Path, data_dir: Path) -> None:
    config = config_for(home, data_dir)
    messages = load_keys(config).messages + load_keys(config).messages
    for name in ("management.key", "inference.key"):
        key = read_key(data_dir / name)
        assert all(key not in message for message in messages)
        assert all(key.split("-")[-1][:16] not in message for message in messages)


def test_a_key_file_written_by_hand_is_used(home: Path, data_dir: Path) -> None:
    path = data_dir / "management.key"
    path.write_text("my-own-key\n")
    path.chmod(0o400)
    keys = load_keys(config_for(home, data_dir)).keys
    assert allows(keys, scope([(b"x-api-key", b"my-own-key")]), management=True)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o700])
def test_a_key_file_with_wide_mode_is_refused(home: Path, data_dir: Path, mode: int) -> None:
    path = data_dir / "management.key"
    path.write_text("sk-management-abc\n")
    path.chmod(mode)
    with pytest.raises(ConfigError, match=re.escape(str(path)) + f".*{mode:04o}"):
        load_keys(config_for(home, data_dir))


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
def test_an_empty_key_file_is_refused(home: Path, data_dir: Path, content: str) -> None:
    path = data_dir / "inference.key"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=re.escape(f"{path} is empty")):
        load_keys(config_for(home, data_dir))


def test_a_key_file_with_two_words_is_refused(home: Path, data_dir: Path) -> None:
    path = data_dir / "inference.key"
    path.write_text("one\ntwo\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match=re.escape(f"{path} must hold one key")):
        load_keys(config_for(home, data_dir))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key_file_is_refused(home: Path, data_dir: Path) -> None:
    path = data_dir / "management.key"
    path.write_text("sk-management-abc\n")
    path.chmod(0o000)
    with pytest.raises(ConfigError, match=re.escape(f"cannot read the key file {path}")):
        load_keys(config_for(home, data_dir))


def test_a_looping_link_is_refused(home: Path, data_dir: Path) -> None:
    path = data_dir / "management.key"
    path.symlink_to(path)
    with pytest.raises(ConfigError, match=re.escape(f"cannot read the key file {path}")):
        load_keys(config_for(home, data_dir))


def test_a_dangling_link_is_refused(home: Path, data_dir: Path) -> None:
    path = data_dir / "management.key"
    path.symlink_to(data_dir / "gone")
    with pytest.raises(ConfigError, match=re.escape(f"{path} is a link to a missing file")):
        load_keys(config_for(home, data_dir))
    assert not (data_dir / "gone").exists()


def test_a_folder_in_place_of_the_key_file_is_refused(home: Path, data_dir: Path) -> None:
    (data_dir / "management.key").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match=re.escape("management.key")):
        load_keys(config_for(home, data_dir))


def test_a_missing_data_dir_is_a_config_error(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(
        ConfigError, match=re.escape(f"cannot store the generated key in {missing}")
    ):
        load_keys(config_for(home, missing))
    assert not missing.exists()


def test_an_empty_configured_key_is_refused(home: Path, data_dir: Path) -> None:
    path = home / "config.yaml"
    path.write_text('auth:\n  inference_keys: ["ok", ""]\n')
    config = load_config(path, {"LLAMACTL_DATA_DIRECTORY": str(data_dir)}, cwd=home, home=home)
    with pytest.raises(ConfigError, match=r"auth\.inference_keys\[1\] is empty"):
        load_keys(config)


def test_unauthorized_error() -> None:
    error = Unauthorized(MISSING_KEY)
    assert (error.code, error.status, error.message) == ("unauthorized", 401, MISSING_KEY)
    response = unauthorized_response(INVALID_KEY)
    assert response.status_code == 401
    assert json.loads(bytes(response.body)) == expected_body(INVALID_KEY)


def test_a_start_that_loses_the_race_uses_the_winners_key(
    home: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = os.link

    def racing_link(source: Path, target: Path) -> None:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"sk-winner\n")
        os.close(fd)
        link(source, target)

    monkeypatch.setattr(os, "link", racing_link)
    loaded = load_keys(config_for(home, data_dir))
    path = data_dir / "management.key"
    assert read_key(path) == "sk-winner"
    assert loaded.messages[0] == f"management key: read from {path}"
    assert allows(loaded.keys, scope([(b"x-api-key", b"sk-winner")]), management=True)
    assert sorted(p.name for p in data_dir.iterdir()) == ["inference.key", "management.key"]


def test_without_hard_links_the_file_is_renamed(
    home: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_link(source: Path, target: Path) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    loaded = load_keys(config_for(home, data_dir))
    path = data_dir / "management.key"
    assert mode_of(path) == 0o600
    assert loaded.messages[0].startswith("management key: generated")
    assert sorted(p.name for p in data_dir.iterdir()) == ["inference.key", "management.key"]

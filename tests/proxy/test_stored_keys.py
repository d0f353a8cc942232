"""Inference keys stored in the database: the API that makes them, and what they open.

A real llamactl (``tests.support.live``) with fake backends; keys are made through
``/api/v1/auth/keys`` with the management key, then used through the ``openai`` client
and raw HTTP on every inference route.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from llamactl.database.keys import KeyChanges
from tests.support.live import INFERENCE_KEY, MANAGEMENT_KEY, Running, chat, headers

pytestmark = pytest.mark.anyio

KEYS = "/api/v1/auth/keys"


@pytest.fixture
async def server(serve: Any) -> Running:
    running: Running = await serve(LLAMACTL_MAX_RUNNING_INSTANCES="1")
    for name in ("alpha", "beta"):
        await running.create(name)
    return running


@pytest.fixture
async def api(server: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, headers=headers(MANAGEMENT_KEY)) as client:
        yield client


async def make(api: httpx.AsyncClient, **body: object) -> dict[str, Any]:
    response = await api.post(KEYS, json={"name": "test key", **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def refused(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    message: str = error["message"]
    return message


async def ids(api: httpx.AsyncClient) -> dict[str, int]:
    listed = (await api.get("/api/v1/instances")).json()
    return {body["name"]: body["id"] for body in listed}


# -- the API ---------------------------------------------------------------------------


async def test_a_key_is_shown_once_and_stored_only_as_a_hash(
    server: Running, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    created = await make(api, name="ci")
    key = created.pop("key")
    assert key.startswith("llamactl-") and len(key) == 73
    assert created["prefix"] == key[:17] and created["name"] == "ci"
    assert (created["permission_mode"], created["user_id"], created["disabled"]) == (
        "allow_all", "system", False,
    )  # fmt: skip
    listed = (await api.get(KEYS)).json()
    assert listed == [created]
    assert (await api.get(f"{KEYS}/{created['id']}")).json() == created
    async with httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.post("/v1/chat/completions", json=chat("alpha"), headers=headers(key))
        assert answer.status_code == 200, answer.text
    database = Path(server.services.config.database.path)
    for stored in (database, *database.parent.glob(database.name + "-*")):
        assert key.encode() not in stored.read_bytes()
    assert key not in caplog.text
    assert key not in json.dumps(listed)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "ok", "expires_at": 1000}, "expires_at"),
        ({"name": "ok", "permission_mode": "everything"}, "permission_mode"),
        ({"name": "ok", "permission_mode": "per_instance"}, "permissions"),
        ({"name": "ok", "permission_mode": "per_instance", "permissions": []}, "permissions"),
        ({"name": "ok", "permissions": [{"instance_id": 999}]}, "permissions[0].instance_id"),
        ({"name": "ok", "permissions": [{"instance": "nowhere"}]}, "permissions[0].instance"),
        ({"name": "ok", "permissions": [{"instance": "alpha", "can_start": "yes"}]},
         "permissions[0].can_start"),
        ({"name": "ok", "max_concurrent": 0}, "max_concurrent"),
        ({"name": "ok", "requests_per_minute": "60"}, "requests_per_minute"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ],
)  # fmt: skip
async def test_a_bad_key_is_refused_naming_the_field(
    api: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    message = refused(await api.post(KEYS, json=body), 400, "invalid_request")
    assert message.startswith(field), message
    assert (await api.get(KEYS)).json() == []


async def test_an_update_changes_what_it_names_and_a_delete_removes_the_key(
    api: httpx.AsyncClient,
) -> None:
    instance_ids = await ids(api)
    created = await make(api, expires_at=int(time.time()) + 3600, max_concurrent=2)
    key_id = created["id"]
    changed = await api.put(
        f"{KEYS}/{key_id}",
        json={
            "name": "renamed",
            "permission_mode": "per_instance",
            "permissions": [{"instance": "beta", "can_evict": False}],
            "expires_at": None,
            "disabled": True,
        },
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["disabled"], body["expires_at"], body["max_concurrent"]) == (
        "renamed", True, None, 2,
    )  # fmt: skip
    permissions = (await api.get(f"{KEYS}/{key_id}/permissions")).json()
    assert permissions == [
        {"instance_id": instance_ids["beta"], "instance_name": "beta", "can_start": True,
         "can_evict": False},
    ]  # fmt: skip
    refused(await api.put(f"{KEYS}/{key_id}", json={"name": ""}), 400, "invalid_request")
    assert (await api.get(f"{KEYS}/{key_id}")).json()["name"] == "renamed"
    assert (await api.delete(f"{KEYS}/{key_id}")).status_code == 204
    refused(await api.get(f"{KEYS}/{key_id}"), 404, "key_not_found")
    refused(await api.delete(f"{KEYS}/{key_id}"), 404, "key_not_found")


async def test_stored_keys_never_open_the_management_api(
    server: Running, api: httpx.AsyncClient
) -> None:
    key = (await make(api))["key"]
    async with httpx.AsyncClient(base_url=server.url, headers=headers(key)) as client:
        for path in ("/api/v1/instances", KEYS, "/api/v1/instances/alpha/proxy/health"):
            assert (await client.get(path)).status_code == 401


# -- what a key opens ------------------------------------------------------------------


async def test_an_allow_all_key_works_with_every_way_of_giving_it(
    server: Running, api: httpx.AsyncClient
) -> None:
    key = (await make(api))["key"]
    async with httpx.AsyncClient(base_url=server.url) as client:
        for given in (
            {"headers": {"Authorization": f"Bearer {key}"}},
            {"headers": {"X-API-Key": key}},
            {"params": {"api_key": key}},
        ):
            answer = await client.post("/v1/chat/completions", json=chat("alpha"), **given)
            assert answer.status_code == 200, answer.text
            models = await client.get("/v1/models", **given)
            assert [model["id"] for model in models.json()["data"]] == ["alpha", "beta"]
        props = await client.get("/llama-cpp/alpha/health", headers=headers(key))
        assert props.status_code == 200, props.text
        wrong = await client.get("/v1/models", headers=headers(key[:-1] + "0"))
        assert wrong.status_code == 401


async def test_a_per_instance_key_opens_its_instances_only(
    server: Running, api: httpx.AsyncClient
) -> None:
    key = (
        await make(api, permission_mode="per_instance", instance_ids=[(await ids(api))["beta"]])
    )["key"]
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    try:
        assert [model.id for model in (await client.models.list()).data] == ["beta"]
        answer = await client.chat.completions.create(
            model="beta", messages=[{"role": "user", "content": "x"}]
        )
        assert answer.choices[0].message.content
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await client.chat.completions.create(
                model="alpha", messages=[{"role": "user", "content": "x"}]
            )
        assert caught.value.code == "permission_denied"
        with pytest.raises(openai.NotFoundError):
            await client.models.retrieve("alpha")
    finally:
        await client.close()
    async with httpx.AsyncClient(base_url=server.url, headers=headers(key)) as raw:
        refused(await raw.get("/llama-cpp/alpha/health"), 403, "permission_denied")
        assert (await raw.get("/llama-cpp/beta/health")).status_code == 200


async def test_use_running_only_and_start_without_evicting(
    server: Running, api: httpx.AsyncClient
) -> None:
    instance_ids = await ids(api)
    running_only = (
        await make(
            api,
            permission_mode="per_instance",
            permissions=[{"instance": "alpha", "can_start": False, "can_evict": False}],
        )
    )["key"]
    no_evict = (
        await make(
            api,
            permission_mode="per_instance",
            permissions=[{"instance_id": instance_ids["beta"], "can_evict": False}],
        )
    )["key"]
    async with httpx.AsyncClient(base_url=server.url) as client:
        ask = chat("alpha")
        refused(
            await client.post("/v1/chat/completions", json=ask, headers=headers(running_only)),
            503,
            "instance_not_running",
        )
        assert (
            await client.post("/v1/chat/completions", json=ask, headers=headers(INFERENCE_KEY))
        ).status_code == 200
        assert (
            await client.post("/v1/chat/completions", json=ask, headers=headers(running_only))
        ).status_code == 200
        # alpha holds the one running slot: beta may be started, but not by evicting it
        answer = await client.post(
            "/v1/chat/completions", json=chat("beta"), headers=headers(no_evict)
        )
        message = refused(answer, 503, "capacity_reached")
        assert "max_running_instances = 1" in message
        assert answer.headers["retry-after"] == "10"
        assert server.manager.get("alpha").is_running


async def test_a_disabled_or_expired_key_is_refused_saying_so(
    server: Running, api: httpx.AsyncClient
) -> None:
    created = await make(api)
    key, key_id = created["key"], created["id"]
    assert (await api.put(f"{KEYS}/{key_id}", json={"disabled": True})).status_code == 200
    async with httpx.AsyncClient(base_url=server.url, headers=headers(key)) as client:
        message = refused(await client.get("/v1/models"), 401, "invalid_api_key")
        assert message == f"API key {created['prefix']}… is disabled"
        # A key whose expiry has come (written as the clock would find it).
        services = server.services
        record = services.db.update_key(
            key_id, KeyChanges(disabled=False, expires_at=int(time.time()) - 1)
        )
        assert services.book is not None
        services.book.put(record)
        message = refused(await client.get("/v1/models"), 401, "invalid_api_key")
        assert message == f"API key {created['prefix']}… expired"


async def test_deleting_an_instance_takes_its_permissions_with_it(
    server: Running, api: httpx.AsyncClient
) -> None:
    created = await make(api, permission_mode="per_instance", permissions=[{"instance": "alpha"}])
    assert (await api.delete("/api/v1/instances/alpha")).status_code == 204
    assert (await api.get(f"{KEYS}/{created['id']}/permissions")).json() == []
    await server.create("alpha")  # the same name, another instance
    async with httpx.AsyncClient(base_url=server.url, headers=headers(created["key"])) as client:
        answer = await client.post("/v1/chat/completions", json=chat("alpha"))
        refused(answer, 403, "permission_denied")


async def test_each_request_counts_towards_its_key_in_a_batched_write(
    server: Running, api: httpx.AsyncClient
) -> None:
    created = await make(api)
    async with httpx.AsyncClient(base_url=server.url, headers=headers(created["key"])) as client:
        for _ in range(3):
            assert (
                await client.post("/v1/chat/completions", json=chat("alpha"))
            ).status_code == 200
    # Written by the server's own batch, every few seconds, not per request.
    deadline = time.monotonic() + 15
    while (stored := (await api.get(f"{KEYS}/{created['id']}")).json())["requests"] == 0:
        assert time.monotonic() < deadline, "the batch of key uses was not written"
        await asyncio.sleep(0.1)
    assert stored["requests"] == 3 and stored["last_used_at"] >= created["created_at"]


async def test_a_key_with_two_at_once_gets_two_streams_and_429_for_the_rest(
    server: Running, api: httpx.AsyncClient
) -> None:
    await server.create(
        "slow",
        environment={"FAKE_LLAMA_STREAM_CHUNKS": "40", "FAKE_LLAMA_STREAM_INTERVAL": "0.05"},
    )
    started = await api.post("/api/v1/instances/slow/start", params={"wait": "true"})
    assert started.status_code == 200, started.text
    key = (await make(api, max_concurrent=2))["key"]
    body = chat("slow", stream=True)
    first_events = 0
    all_in = asyncio.Event()

    async def one(client: httpx.AsyncClient) -> tuple[int, str | None]:
        nonlocal first_events
        async with client.stream("POST", "/v1/chat/completions", json=body) as answer:
            if answer.status_code == 200:
                pieces = answer.aiter_raw()
                assert await anext(pieces)
                first_events += 1
                await all_in.wait()  # hold the stream open until every answer is in
                async for _piece in pieces:
                    pass
            else:
                await answer.aread()
            return answer.status_code, answer.headers.get("retry-after")

    async with httpx.AsyncClient(base_url=server.url, headers=headers(key), timeout=30) as client:
        tasks = [asyncio.create_task(one(client)) for _ in range(20)]

        while sum(task.done() for task in tasks) < 18:  # the refusals come at once
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=10)
        all_in.set()
        results = [await task for task in tasks]
    assert sorted(status for status, _ in results) == [200] * 2 + [429] * 18
    assert {after for status, after in results if status == 429} == {"1"}
    assert first_events == 2
    assert chat_requests(server, "slow") == 2  # the others never reached the backend


def chat_requests(server: Running, name: str) -> int:
    """How many chat requests reached the backend of ``name`` (its request log)."""
    return len(
        [
            entry
            for entry in server.backend_requests("/v1/chat/completions")
            if isinstance(entry.get("body"), dict) and entry["body"].get("model") == name
        ]
    )


async def test_a_key_with_three_a_minute_is_told_when_to_come_back(
    server: Running, api: httpx.AsyncClient
) -> None:
    key = (await make(api, requests_per_minute=3))["key"]
    async with httpx.AsyncClient(base_url=server.url, headers=headers(key)) as client:
        for _ in range(3):
            assert (
                await client.post("/v1/chat/completions", json=chat("alpha"))
            ).status_code == 200
        over = await client.post("/v1/chat/completions", json=chat("alpha"))
        message = refused(over, 429, "rate_limited")
        assert "requests_per_minute = 3" in message
        assert 1 <= int(over.headers["retry-after"]) <= 60


async def test_a_key_deleted_or_disabled_stops_working_on_a_kept_alive_connection(
    server: Running, api: httpx.AsyncClient
) -> None:
    for change in ("disable", "delete"):
        created = await make(api)
        async with httpx.AsyncClient(
            base_url=server.url, headers=headers(created["key"])
        ) as client:
            for _ in range(2):  # the second on the same connection, by the direct lane
                assert (
                    await client.post("/v1/chat/completions", json=chat("alpha"))
                ).status_code == 200
            if change == "disable":
                await api.put(f"{KEYS}/{created['id']}", json={"disabled": True})
            else:
                await api.delete(f"{KEYS}/{created['id']}")
            answer = await client.post("/v1/chat/completions", json=chat("alpha"))
            assert answer.status_code == 401, (change, answer.text)


# -- the matrix: every kind of key, on every route, given every way -----------------------

ROUTES = {
    "chat alpha": ("POST", "/v1/chat/completions", chat("alpha")),
    "chat beta": ("POST", "/v1/chat/completions", chat("beta")),
    "models": ("GET", "/v1/models", None),
    "llama-cpp alpha": ("GET", "/llama-cpp/alpha/health", None),
    "instance proxy": ("GET", "/api/v1/instances/alpha/proxy/health", None),
    "management": ("GET", "/api/v1/instances", None),
}
INFERENCE_ONLY = {"chat alpha": 200, "chat beta": 200, "models": 200, "llama-cpp alpha": 200,
                  "instance proxy": 401, "management": 401}  # fmt: skip
ALPHA_ONLY = {**INFERENCE_ONLY, "chat beta": 403}
NOTHING = dict.fromkeys(ROUTES, 401)
EXPECTED = {
    "config management": dict.fromkeys(ROUTES, 200),
    "config inference": INFERENCE_ONLY,
    "stored allow_all": INFERENCE_ONLY,
    "stored alpha, use running only": ALPHA_ONLY,
    "stored alpha, start": ALPHA_ONLY,
    "stored alpha, start and evict": ALPHA_ONLY,
    "stored, limited": INFERENCE_ONLY,
    "stored, expired": NOTHING,
    "stored, disabled": NOTHING,
}


async def matrix_keys(server: Running, api: httpx.AsyncClient) -> dict[str, str]:
    def level(can_start: bool, can_evict: bool) -> dict[str, object]:
        return {
            "permission_mode": "per_instance",
            "permissions": [{"instance": "alpha", "can_start": can_start, "can_evict": can_evict}],
        }

    keys = {"config management": MANAGEMENT_KEY, "config inference": INFERENCE_KEY}
    keys["stored allow_all"] = (await make(api))["key"]
    keys["stored alpha, use running only"] = (await make(api, **level(False, False)))["key"]
    keys["stored alpha, start"] = (await make(api, **level(True, False)))["key"]
    keys["stored alpha, start and evict"] = (await make(api, **level(True, True)))["key"]
    keys["stored, limited"] = (await make(api, max_concurrent=1, requests_per_minute=1000))["key"]
    expired = await make(api)
    keys["stored, expired"] = expired["key"]
    record = server.services.db.update_key(
        expired["id"], KeyChanges(expires_at=int(time.time()) - 1)
    )
    assert server.services.book is not None
    server.services.book.put(record)
    keys["stored, disabled"] = (await make(api, disabled=True))["key"]
    return keys


def given(key: str, way: str) -> dict[str, Any]:
    if way == "bearer":
        return {"headers": {"Authorization": f"Bearer {key}"}}
    if way == "x-api-key":
        return {"headers": {"X-API-Key": key}}
    return {"params": {"api_key": key}}


async def test_every_kind_of_key_on_every_route_given_every_way(serve: Any) -> None:
    server: Running = await serve()  # no running limit: both instances run throughout
    for name in ("alpha", "beta"):
        await server.create(name)
        await server.manager.start(name)
        await server.manager.wait_ready(name, 10)
    async with httpx.AsyncClient(base_url=server.url, headers=headers(MANAGEMENT_KEY)) as api:
        keys = await matrix_keys(server, api)
    wrong = []
    async with httpx.AsyncClient(base_url=server.url) as client:
        for kind, key in keys.items():
            for way in ("bearer", "x-api-key", "query"):
                for route, (method, path, body) in ROUTES.items():
                    answer = await client.request(method, path, json=body, **given(key, way))
                    if answer.status_code != EXPECTED[kind][route]:
                        wrong.append(f"{kind} / {way} / {route}: {answer.status_code}")
    assert wrong == [], "\n".join(wrong)


async def test_a_hundred_creates_and_deletes_at_once_leave_one_consistent_table(
    server: Running, api: httpx.AsyncClient
) -> None:
    doomed = [await make(api, name=f"doomed {index}") for index in range(50)]

    async def create(index: int) -> httpx.Response:
        return await api.post(KEYS, json={"name": f"kept {index}"})

    async def delete(key_id: int) -> httpx.Response:
        return await api.delete(f"{KEYS}/{key_id}")

    answers = await asyncio.gather(
        *(create(index) for index in range(50)), *(delete(key["id"]) for key in doomed)
    )
    assert sorted(answer.status_code for answer in answers) == [201] * 50 + [204] * 50
    listed = (await api.get(KEYS)).json()
    assert sorted(key["name"] for key in listed) == sorted(f"kept {i}" for i in range(50))
    stored = server.services.db.list_keys()
    assert [key.id for key in stored] == [key["id"] for key in listed]
    book = server.services.book
    assert book is not None and len(book) == 50
    made = [answer.json()["key"] for answer in answers if answer.status_code == 201]
    assert all(book.find(key.encode()) is not None for key in made)
    assert all(book.find(key["key"].encode()) is None for key in doomed)


async def test_a_refused_request_does_not_count_as_a_use_of_its_key(
    server: Running, api: httpx.AsyncClient
) -> None:
    created = await make(api, permission_mode="per_instance", permissions=[{"instance": "beta"}])
    async with httpx.AsyncClient(base_url=server.url, headers=headers(created["key"])) as client:
        refused(
            await client.post("/v1/chat/completions", json=chat("alpha")), 403, "permission_denied"
        )
        assert (await client.post("/v1/chat/completions", json=chat("beta"))).status_code == 200
    deadline = time.monotonic() + 15
    while (stored := (await api.get(f"{KEYS}/{created['id']}")).json())["requests"] == 0:
        assert time.monotonic() < deadline, "the batch of key uses was not written"
        await asyncio.sleep(0.1)
    assert stored["requests"] == 1  # the 403 was no use of the key

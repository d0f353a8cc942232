"""A reloaded configuration reaches every part of the running application."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llamactl.auth import Keys
from llamactl.errors import LimitReached
from llamactl.server.app import create_app
from tests.support.config import fake_config, fake_options
from tests.support.services import data_db, running_services

pytestmark = pytest.mark.anyio


async def test_new_keys_and_limits_apply_to_every_route(tmp_path: Path) -> None:
    keys = Keys.of(management=["m-old"], inference=["i-old"])
    async with running_services(fake_config(tmp_path), keys, data_db(tmp_path)) as services:
        manager = services.manager
        app = create_app(services)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def status(path: str, key: str) -> int:
                answer = await client.get(path, headers={"Authorization": f"Bearer {key}"})
                return answer.status_code

            assert await status("/api/v1/instances", "m-old") == 200
            assert await status("/v1/models", "i-old") == 200
            await manager.create("alpha", fake_options())
            reloaded = fake_config(tmp_path, LLAMACTL_MAX_RUNNING_INSTANCES="0")
            app.app.reconfigure(reloaded, Keys.of(management=["m-new"], inference=["i-new"]))
            assert await status("/api/v1/instances", "m-old") == 401
            assert await status("/api/v1/instances", "m-new") == 200
            assert await status("/v1/models", "i-old") == 401
            assert await status("/v1/models", "i-new") == 200
            assert services.config is reloaded
            with pytest.raises(LimitReached, match=r"running instances \(0\)"):
                await manager.start("alpha")
            refused = await client.post(
                "/v1/chat/completions",
                json={"model": "alpha", "messages": []},
                headers={"Authorization": "Bearer i-new"},
            )
            assert refused.status_code == 503, refused.text
            assert "max_running_instances (0)" in refused.json()["error"]["message"]


async def test_body_limit_and_origin_rule_follow_a_reload(tmp_path: Path) -> None:
    foreign = {"Origin": "http://evil.example", "Content-Type": "application/json"}
    big = b'{"backend_type": "llama_cpp", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    keys = Keys.of(management=["m"], inference=["i"])
    async with running_services(fake_config(tmp_path), keys, data_db(tmp_path)) as services:
        app = create_app(services)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # Auth on: a foreign origin with the key may pass the origin rule.
            answer = await client.get(
                "/api/v1/instances", headers={**foreign, "Authorization": "Bearer m"}
            )
            assert answer.status_code == 200, answer.text
            reloaded = fake_config(tmp_path, LLAMACTL_MAX_REQUEST_BODY_MB="1")
            app.app.reconfigure(reloaded, Keys.of(inference=["i"], require_management=False))
            answer = await client.get("/api/v1/instances", headers=foreign)
            assert answer.status_code == 403, answer.text
            answer = await client.post(
                "/api/v1/instances/big",
                content=big,
                headers={"Content-Type": "application/json"},
            )
            assert answer.status_code == 413, answer.text

"""A ``/`` in an instance name matches no route: the answer is the naming rule, not a 404."""

from __future__ import annotations

import pytest

from llamactl.instance import NAME_RULE
from tests.support.config import fake_options
from tests.support.services import Api

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("POST", "/api/v1/instances/a%2Fb", "a/b"),
        ("POST", "/api/v1/instances/a/b", "a/b"),
        ("GET", "/api/v1/instances/team/model/", "team/model"),
        ("POST", "/api/v1/instances/a%2Fb/start", "a/b"),
        ("GET", "/api/v1/instances/org/m/logs/follow", "org/m"),
        ("PUT", "/api/v1/instances/x/y/z", "x/y/z"),
    ],
)
async def test_a_name_with_a_slash_is_400_with_the_naming_rule(
    api: Api, method: str, path: str, name: str
) -> None:
    response = await api.client.request(method, path, json=fake_options())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_instance_name"
    rule = f"it cannot contain '/'; {NAME_RULE}."
    assert error["message"] == f"Invalid instance name {name!r}: {rule}"


async def test_other_unknown_routes_stay_404(api: Api) -> None:
    for path in ("/api/v1/nothing-here", "/api/v1/instances"):
        response = await api.client.post(path, json={})
        assert response.status_code in {404, 405}, (path, response.text)
        assert response.json()["error"]["code"] != "invalid_instance_name"
    missing = await api.client.get("/api/v1/instances/ghost/start")
    assert missing.status_code == 405

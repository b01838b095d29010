"""OAuth error JSON has one home, http/errors.py: every error answer is its renderer's.

The answers come from different corners (a grant, the router, the CORS middleware, a key
rotation asked too early, /readyz with the database gone); each must carry exactly the
renderer's members and headers, and no other module may write an error's JSON.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from authserver.http.errors import error_json
from tests._proxy import app_through_proxy
from tests.conftest import Clock, Registry, password_login

PACKAGE = Path(__file__).resolve().parents[2] / "authserver"
# Not JSON answers: the OpenAPI schema names the members; /authorize sends an error to the
# client's redirect URI as query parameters (RFC 6749 §4.1.2.1).
NOT_JSON = {"http/openapi.py", "actions/authorize.py"}


def assert_rendered(response: httpx.Response, status: int, code: str) -> None:
    """Exactly what http/errors.py's renderer answers for this code and status."""
    body = response.json()
    reference = error_json(code, body.get("error_description", ""), status)
    assert response.status_code == status, response.text
    assert body == {"error": code, "error_description": body["error_description"]}
    assert body["error_description"]
    for name in ("content-type", "cache-control", "pragma"):
        assert response.headers.get(name) == reference.headers[name], name
    assert response.content == reference.body


@pytest.mark.usefixtures("fresh_keys")
async def test_every_error_answer_is_the_renderers(
    client: httpx.AsyncClient, registry: Registry, spa: str, clock: Clock
) -> None:
    await registry.user("root", "correct horse", admin=True)
    login = await password_login(client, "root", scope="admin")
    root = {"Authorization": f"Bearer {login.json()['access_token']}"}

    assert_rendered(await password_login(client, "root", "wrong"), 400, "invalid_grant")
    assert_rendered(await client.get("/nothing-here"), 404, "not_found")
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    assert_rendered(await client.options("/refresh", headers=preflight), 400, "invalid_request")
    # /token's preflight, answered to any page, refuses what no page of a public client needs.
    secret = {**preflight, "Access-Control-Request-Headers": "authorization"}
    assert_rendered(await client.options("/token", headers=secret), 400, "invalid_request")

    clock.advance(1)
    too_early = await client.post("/admin/keys/rotate", headers=root)
    assert_rendered(too_early, 409, "key_not_ready")
    assert int(too_early.headers["retry-after"]) > 0  # as slow_down's: RFC 9110 §10.2.3


async def test_readyz_not_ready_is_the_renderers(database_url: str, tmp_path: Path) -> None:
    async with app_through_proxy(database_url, tmp_path / "keys") as (_, http, proxy):
        await proxy.cut()
        assert_rendered(await http.get("/readyz"), 503, "temporarily_unavailable")


def test_no_module_but_http_errors_writes_error_json() -> None:
    writers = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if '"error_description"' in path.read_text()
    }
    assert writers - NOT_JSON == {"http/errors.py"}

"""Strings no store can hold (a lone surrogate, NUL) refused as 4xx wherever they enter: in the
claims of a validly signed token, and in the admin API's JSON, as the token endpoint already
refuses them in its fields. Before, each reached a database driver and came back as a 500
(Postgres) or was stored (SQLite)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.http.routes import routes
from authserver.services import Services
from tests.conftest import Login, Registry, password_login
from tests.http.hostile import forge

BAD = {"lone_surrogate": "abc\ud800def", "nul": "abc\x00def"}


@pytest.fixture
async def rs(registry: Registry) -> tuple[str, str]:
    secret = await registry.client("rs")
    assert secret is not None
    return ("rs", secret)


@pytest.fixture
async def admin(client: httpx.AsyncClient, registry: Registry, spa: str) -> str:
    await registry.user("root", "root password", scopes=(), admin=True)
    response = await password_login(client, "root", "root password", scope="admin")
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def escaped_json(admin: str, body: dict[str, Any]) -> dict[str, Any]:
    """The request's keyword arguments: JSON with every non-ASCII character escaped, as an
    attacker would send a lone surrogate (httpx's `json=` cannot encode one)."""
    return {
        "content": json.dumps(body).encode("ascii"),
        "headers": {**bearer(admin), "Content-Type": "application/json"},
    }


@pytest.mark.parametrize("claim", ["jti", "sid"])
@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
async def test_a_signed_token_with_an_unstorable_claim_is_simply_not_valid(
    client: httpx.AsyncClient,
    services: Services,
    admin: str,
    rs: tuple[str, str],
    claim: str,
    bad: str,
) -> None:
    token = forge(services, admin, claims={claim: bad})
    control = forge(services, admin)

    introspected = await client.post("/introspect", data={"token": token}, auth=rs)
    assert introspected.status_code == 200, introspected.text
    assert introspected.json() == {"active": False}
    assert (await client.post("/introspect", data={"token": control}, auth=rs)).json()[
        "active"
    ] is True

    for method, path in [("POST", "/logout/all"), ("GET", "/admin/keys")]:
        response = await client.request(method, path, headers=bearer(token))
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_token"
    # Logout is quiet about a dead bearer token, and must not try to deny its jti.
    response = await client.post("/logout", headers=bearer(token))
    assert response.status_code == 204, response.text
    response = await client.post("/revoke", data={"token": token, "client_id": "spa"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("field", ["username", "password"])
@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
async def test_the_admin_api_refuses_unstorable_strings(
    client: httpx.AsyncClient, admin: str, engine: AsyncEngine, field: str, bad: str
) -> None:
    body: dict[str, Any] = {"username": "mallory", "password": "a long enough password"}
    body[field] = bad
    response = await client.post("/admin/users", **escaped_json(admin, body))
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert bad not in response.text
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM users"))).scalar_one()
    assert count == 1  # root alone: nothing half-written


@pytest.mark.parametrize("bad", BAD.values(), ids=BAD.keys())
async def test_the_admin_api_refuses_unstorable_client_ids_and_scopes(
    client: httpx.AsyncClient, admin: str, bad: str
) -> None:
    for body in ({"client_id": bad}, {"client_id": "svc", "scopes": [bad]}):
        response = await client.post("/admin/clients", **escaped_json(admin, body))
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"


async def test_the_forged_control_is_accepted(
    client: httpx.AsyncClient, services: Services, login: Login, rs: tuple[str, str]
) -> None:
    response = await client.post(
        "/introspect", data={"token": forge(services, login.access_token)}, auth=rs
    )
    assert response.json()["active"] is True


def _probes() -> list[tuple[str, str]]:
    """(method, url) of every route with NUL in each path parameter, and of every GET route
    with NUL in a query value (the admin lists' own parameter names among them)."""
    probes: list[tuple[str, str]] = []
    for route in routes:
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            path = route.path
            for name in route.param_convertors:
                # `{name}` or `{name:path}` (a parameter that may hold slashes).
                probes.append((method, re.sub(r"\{" + name + r"(:\w+)?\}", "%00", path, count=1)))
            if method == "GET":
                probes.append((method, re.sub(r"\{\w+(:\w+)?\}", "x", path) + "?after=%00"))
    probes += [
        ("GET", "/admin/users?username=%00"),
        ("GET", "/admin/users?after=a%00b&limit=5"),
        ("GET", "/admin/clients?%00=x"),
    ]
    return probes


@pytest.mark.parametrize(("method", "url"), _probes(), ids=lambda p: str(p))
async def test_nul_in_a_path_or_query_value_is_invalid_request(
    client: httpx.AsyncClient, admin: str, method: str, url: str
) -> None:
    """Every path and query value meets `storable` in one place (http/params.py), whatever
    the route does with it: before, `/admin/users/%00` or `?after=%00` reached Postgres as a
    500 with a traceback."""
    response = await client.request(method, url, headers=bearer(admin))
    assert response.status_code == 400, response.text
    if "json" in response.headers["content-type"]:
        assert response.json()["error"] == "invalid_request"


# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ): no whitespace, no controls.
BAD_SCOPES = ["profile\n", "profile\r\n", "pro\tfile", "profile\u202e", "profile\x7f"]


@pytest.mark.parametrize("scope", BAD_SCOPES, ids=repr)
async def test_a_scope_token_with_a_control_character_is_refused(
    client: httpx.AsyncClient, admin: str, engine: AsyncEngine, spa: str, scope: str
) -> None:
    """`profile\\n` matched the scope pattern (`$` matches before a final newline) and was
    stored as a user's or a client's scope, and asked for at /token."""
    for path, body in [
        ("/admin/users", {"username": "mallory", "password": "a long password", "scopes": [scope]}),
        ("/admin/clients", {"client_id": "svc", "scopes": [scope]}),
    ]:
        response = await client.post(path, **escaped_json(admin, body))
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
    response = await client.patch("/admin/clients/spa", **escaped_json(admin, {"scopes": [scope]}))
    assert response.status_code == 400, response.text
    asked = await password_login(client, "root", "root password", scope=scope)
    assert asked.status_code == 400, asked.text
    assert asked.json()["error"] == "invalid_scope"
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT scopes FROM clients"))).scalars().all()
    assert not any(scope in s for s in stored)

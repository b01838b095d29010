"""GET /revocations: the sessions and jtis a verifier working offline must refuse."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import Clock, Login, Registry

Credentials = tuple[str, str]


@pytest.fixture
async def rs(registry: Registry) -> Credentials:
    secret = await registry.client("orders-api")
    assert secret is not None
    return ("orders-api", secret)


async def feed(client: httpx.AsyncClient, rs: Credentials) -> dict[str, Any]:
    response = await client.get("/revocations", auth=rs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_empty_feed_is_cacheable_briefly_and_privately(
    client: httpx.AsyncClient, rs: Credentials
) -> None:
    response = await client.get("/revocations", auth=rs)

    assert response.status_code == 200
    assert response.json() == {"sids": [], "jtis": []}
    assert response.headers["cache-control"] == "private, max-age=5"
    assert response.headers["etag"].startswith('"')
    again = await client.get(
        "/revocations", auth=rs, headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_it_needs_a_confidential_client(
    client: httpx.AsyncClient, rs: Credentials, spa: str
) -> None:
    anonymous = await client.get("/revocations")
    wrong = await client.get("/revocations", auth=(rs[0], "wrong"))
    public = await client.get("/revocations", auth=(spa, ""))

    assert [r.status_code for r in (anonymous, wrong, public)] == [401, 401, 401]
    assert all(r.json()["error"] == "invalid_client" for r in (anonymous, wrong, public))


async def test_logout_lists_the_session_and_the_access_token(
    client: httpx.AsyncClient, rs: Credentials, login: Login
) -> None:
    before = await client.get("/revocations", auth=rs)
    response = await client.post(
        "/logout",
        data={"refresh_token": login.refresh_token},
        headers={"Authorization": f"Bearer {login.access_token}"},
    )
    assert response.status_code == 204

    after = await client.get(
        "/revocations", auth=rs, headers={"If-None-Match": before.headers["etag"]}
    )
    assert after.status_code == 200
    claims = jwt.decode(login.access_token, options={"verify_signature": False})
    assert after.json() == {"sids": [claims["sid"]], "jtis": [claims["jti"]]}


async def test_revocations_leave_the_feed_once_their_tokens_cannot_verify(
    client: httpx.AsyncClient, rs: Credentials, login: Login, clock: Clock
) -> None:
    await client.post(
        "/logout",
        data={"refresh_token": login.refresh_token},
        headers={"Authorization": f"Bearer {login.access_token}"},
    )
    clock.advance(900 + 30)  # access_token_ttl + clock_leeway
    assert (await feed(client, rs))["sids"] != []
    clock.advance(1)
    assert await feed(client, rs) == {"sids": [], "jtis": []}

"""`Authorization: DPoP` at the self-service endpoints (/sessions, /logout, /logout/all) and
the admin API (RFC 9449 §7): a bound token with a proof of its key (carrying `ath`, naming
the endpoint) is accepted; presented as Bearer, or with a proof that does not fit, refused
with a DPoP challenge, and nothing is ended."""

from __future__ import annotations

import httpx
import jwt

from tests._dpop import DPoPKey
from tests.conftest import Registry, assert_oauth_error


async def bound_login(
    http: httpx.AsyncClient, key: DPoPKey, username: str = "alice", scope: str = "profile"
) -> dict[str, str]:
    data = {"grant_type": "password", "username": username, "password": "correct horse",
            "client_id": "spa", "scope": scope}  # fmt: skip
    response = await http.post("/token", data=data, headers=key.header())
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def dpop(key: DPoPKey, token: str, path: str, method: str) -> dict[str, str]:
    proof = key.proof(path, method, access_token=token)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def refused(response: httpx.Response, code: str) -> None:
    assert_oauth_error(response, 401, code)
    assert response.headers["www-authenticate"].startswith(f'DPoP error="{code}"')


async def test_sessions_take_a_bound_token_with_a_proof_and_refuse_it_as_bearer(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    token = (await bound_login(client, key))["access_token"]
    listed = await client.get("/sessions", headers=dpop(key, token, "/sessions", "GET"))
    assert listed.status_code == 200, listed.text
    (session,) = listed.json()["sessions"]
    refused(
        await client.get("/sessions", headers={"Authorization": f"Bearer {token}"}),
        "invalid_token",
    )
    # A proof of another key, or naming another endpoint, or without ath.
    for headers in (
        dpop(DPoPKey(), token, "/sessions", "GET"),
        dpop(key, token, "/userinfo", "GET"),
        {"Authorization": f"DPoP {token}", "DPoP": key.proof("/sessions", "GET")},
    ):
        refused(await client.get("/sessions", headers=headers), "invalid_dpop_proof")
    path = f"/sessions/{session['sid']}"
    as_bearer = await client.delete(path, headers={"Authorization": f"Bearer {token}"})
    refused(as_bearer, "invalid_token")
    ended = await client.delete(path, headers=dpop(key, token, path, "DELETE"))
    assert ended.status_code == 204, ended.text


async def test_logout_all_takes_a_bound_token_with_a_proof(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    body = await bound_login(client, key)
    token = body["access_token"]
    as_bearer = await client.post("/logout/all", headers={"Authorization": f"Bearer {token}"})
    refused(as_bearer, "invalid_token")
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"],
               "client_id": "spa"}  # fmt: skip
    still = await client.post("/token", data=refresh, headers=key.header())
    assert still.status_code == 200, still.text  # nothing ended by the refused request
    response = await client.post("/logout/all", headers=dpop(key, token, "/logout/all", "POST"))
    assert response.status_code == 204, response.text
    refresh["refresh_token"] = still.json()["refresh_token"]
    after = await client.post("/token", data=refresh, headers=key.header())
    assert_oauth_error(after, 400, "invalid_grant")


async def test_logout_denies_a_bound_token_only_with_a_proof_of_its_key(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("alice", "correct horse")
    key = DPoPKey()
    body = await bound_login(client, key)
    token, rt = body["access_token"], body["refresh_token"]
    form = {"refresh_token": rt, "client_id": "spa"}
    stolen = await client.post("/logout", data=form, headers={"Authorization": f"Bearer {token}"})
    refused(stolen, "invalid_token")
    other = await client.post(
        "/logout", data=form, headers=dpop(DPoPKey(), token, "/logout", "POST")
    )
    refused(other, "invalid_dpop_proof")
    sessions = await client.get("/sessions", headers=dpop(key, token, "/sessions", "GET"))
    assert sessions.status_code == 200 and sessions.json()["sessions"]  # nothing ended
    response = await client.post("/logout", data=form, headers=dpop(key, token, "/logout", "POST"))
    assert response.status_code == 204, response.text
    after = await client.get("/sessions", headers=dpop(key, token, "/sessions", "GET"))
    refused(after, "invalid_token")  # the access token is denied now


async def test_the_revocation_feed_lists_a_bound_session_only_once_its_holder_ends_it(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    """A verifier working offline learns of a bound token's end as of any other's; a thief's
    Bearer or wrong-key /logout adds nothing to the feed (they ended nothing)."""
    await registry.user("alice", "correct horse")
    secret = await registry.client("orders-api")
    assert secret is not None
    key = DPoPKey()
    body = await bound_login(client, key)
    token, rt = body["access_token"], body["refresh_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["cnf"]["jkt"] == key.jkt
    form = {"refresh_token": rt, "client_id": "spa"}

    async def feed() -> dict[str, list[str]]:
        answer = await client.get("/revocations", auth=("orders-api", secret))
        assert answer.status_code == 200, answer.text
        listed: dict[str, list[str]] = answer.json()
        return listed

    for thief in ({"Authorization": f"Bearer {token}"}, dpop(DPoPKey(), token, "/logout", "POST")):
        assert (await client.post("/logout", data=form, headers=thief)).status_code == 401
    assert await feed() == {"sids": [], "jtis": []}
    ended = await client.post("/logout", data=form, headers=dpop(key, token, "/logout", "POST"))
    assert ended.status_code == 204, ended.text
    assert await feed() == {"sids": [claims["sid"]], "jtis": [claims["jti"]]}


async def test_the_admin_api_takes_a_bound_admin_token_with_a_proof(
    client: httpx.AsyncClient, registry: Registry, spa: str
) -> None:
    await registry.user("root", "correct horse", admin=True)
    key = DPoPKey()
    token = (await bound_login(client, key, "root", "admin"))["access_token"]
    response = await client.get("/admin/clients", headers=dpop(key, token, "/admin/clients", "GET"))
    assert response.status_code == 200, response.text
    as_bearer = await client.get("/admin/clients", headers={"Authorization": f"Bearer {token}"})
    refused(as_bearer, "invalid_token")
    wrong = dpop(key, token, "/admin/users", "GET")
    refused(await client.get("/admin/clients", headers=wrong), "invalid_dpop_proof")

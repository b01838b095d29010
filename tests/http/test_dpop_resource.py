"""DPoP-bound tokens at this server's protected endpoints (RFC 9449 §7): /userinfo takes
`Authorization: DPoP` with a proof carrying `ath`, refuses a bound token sent as Bearer, and
challenges with `WWW-Authenticate: DPoP`; introspection shows `cnf`; discovery the algs."""

from __future__ import annotations

import httpx

from tests._dpop import DPoPKey
from tests.conftest import Registry, assert_oauth_error

LOGIN = {"grant_type": "password", "username": "alice", "password": "correct horse",
         "client_id": "app", "scope": "openid profile"}  # fmt: skip


async def bound_token(http: httpx.AsyncClient, registry: Registry, key: DPoPKey) -> str:
    await registry.user("alice", "correct horse")
    await registry.client(
        "app", public=True, grant_types=("password", "refresh_token"), scopes=("openid", "profile")
    )
    response = await http.post("/token", data=LOGIN, headers=key.header())
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def dpop_auth(key: DPoPKey, token: str, method: str = "GET", **claims: object) -> dict[str, str]:
    proof = key.proof("/userinfo", method, access_token=token, **claims)
    return {"Authorization": f"DPoP {token}", "DPoP": proof}


def challenge(response: httpx.Response, code: str) -> None:
    assert_oauth_error(response, 401, code)
    assert response.headers["www-authenticate"] == f'DPoP error="{code}", algs="ES256 EdDSA"'


async def test_userinfo_answers_a_bound_token_with_a_proof_of_its_key(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    key = DPoPKey()
    token = await bound_token(client, registry, key)
    response = await client.get("/userinfo", headers=dpop_auth(key, token))
    assert response.status_code == 200, response.text
    response = await client.post("/userinfo", headers=dpop_auth(key, token, "POST"))
    assert response.status_code == 200, response.text


async def test_userinfo_refuses_a_bound_token_as_bearer(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    token = await bound_token(client, registry, DPoPKey())
    response = await client.get("/userinfo", headers={"Authorization": f"Bearer {token}"})
    challenge(response, "invalid_token")


async def test_userinfo_refuses_proofs_that_do_not_fit(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    key = DPoPKey()
    token = await bound_token(client, registry, key)
    other = DPoPKey()
    cases = {
        "another key": dpop_auth(other, token),
        "no ath": {"Authorization": f"DPoP {token}", "DPoP": key.proof("/userinfo", "GET")},
        "ath of another token": {
            "Authorization": f"DPoP {token}",
            "DPoP": key.proof("/userinfo", "GET", access_token=token + "x"),
        },
        "no proof": {"Authorization": f"DPoP {token}"},
        "the token endpoint's": {
            "Authorization": f"DPoP {token}",
            "DPoP": key.proof("/token", "GET", access_token=token),
        },
    }
    for name, headers in cases.items():
        response = await client.get("/userinfo", headers=headers)
        assert response.status_code == 401, name
        challenge(response, "invalid_dpop_proof")
    # A proof replayed: accepted once only.
    headers = dpop_auth(key, token)
    assert (await client.get("/userinfo", headers=headers)).status_code == 200
    challenge(await client.get("/userinfo", headers=headers), "invalid_dpop_proof")


async def test_an_unbound_token_with_the_dpop_scheme_is_refused(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.user("alice", "correct horse")
    await registry.client(
        "app", public=True, grant_types=("password",), scopes=("openid", "profile")
    )
    token = (await client.post("/token", data=LOGIN)).json()["access_token"]
    key = DPoPKey()
    challenge(await client.get("/userinfo", headers=dpop_auth(key, token)), "invalid_token")
    challenge(
        await client.get("/userinfo", headers={"Authorization": "DPoP not.a.token"}),
        "invalid_token",
    )


async def test_introspection_shows_cnf_and_the_dpop_type(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    key = DPoPKey()
    token = await bound_token(client, registry, key)
    secret = await registry.client("rs")
    assert secret is not None
    response = await client.post("/introspect", data={"token": token}, auth=("rs", secret))
    body = response.json()
    assert body["active"] is True and body["token_type"] == "DPoP"
    assert body["cnf"] == {"jkt": key.jkt}


async def test_discovery_names_the_proof_algorithms(client: httpx.AsyncClient) -> None:
    metadata = (await client.get("/.well-known/openid-configuration")).json()
    assert metadata["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]

"""Server nonces for DPoP (RFC 9449 §8, §9) with AUTHSERVER_DPOP_NONCE=on: a proof without a
valid nonce is answered `use_dpop_nonce` with a `DPoP-Nonce` header (400 at /token, 401 with a
DPoP challenge at /userinfo), every answer to a request with a proof carries a fresh one, a
nonce holds 60 to 120 s on every instance and no longer; forged, garbled and future ones are
refused. The clock is the app's (tests/conftest.Clock), moved rather than waited for."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from authserver.app import create_app
from authserver.config import Settings
from authserver_verify.dpop import Nonces
from tests._dpop import DPoPKey
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error

LOGIN = {"grant_type": "password", "username": "alice", "password": "correct horse",
         "client_id": "app", "scope": "openid profile"}  # fmt: skip


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {"dpop_nonce": "on"}


@pytest.fixture
async def alice(registry: Registry) -> None:
    await registry.user("alice", "correct horse")
    await registry.client(
        "app", public=True, grant_types=("password", "refresh_token"), scopes=("openid", "profile")
    )


def proof(key: DPoPKey, clock: Clock, nonce: str | None, path: str = "/token", **kw: object) -> str:
    claims: dict[str, object] = {"iat": clock.now, **kw}
    if nonce is not None:
        claims["nonce"] = nonce
    return key.proof(path, **claims)  # type: ignore[arg-type]


def use_nonce(response: httpx.Response) -> str:
    """A §8 refusal: 400 use_dpop_nonce with the nonce to use."""
    assert_oauth_error(response, 400, "use_dpop_nonce")
    return response.headers["dpop-nonce"]


async def login(http: httpx.AsyncClient, dpop: str) -> httpx.Response:
    return await http.post("/token", data=LOGIN, headers={"DPoP": dpop})


async def test_token_asks_for_a_nonce_then_takes_it_and_hands_out_the_next(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    key = DPoPKey()
    nonce = use_nonce(await login(client, proof(key, clock, None)))
    assert len(nonce) == 32
    response = await login(client, proof(key, clock, nonce))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    assert response.headers["dpop-nonce"]  # every answer to a proof carries one
    # Refreshing with the nonce just handed out.
    data = {"grant_type": "refresh_token", "refresh_token": response.json()["refresh_token"],
            "client_id": "app"}  # fmt: skip
    fresh = response.headers["dpop-nonce"]
    refreshed = await client.post("/token", data=data, headers={"DPoP": proof(key, clock, fresh)})
    assert refreshed.status_code == 200, refreshed.text


async def test_without_a_proof_nothing_changes(client: httpx.AsyncClient, alice: None) -> None:
    response = await client.post("/token", data=LOGIN)
    assert response.status_code == 200 and response.json()["token_type"] == "Bearer"
    assert "dpop-nonce" not in response.headers


async def test_a_nonce_lives_two_windows_then_a_fresh_one_is_asked_for(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    key = DPoPKey()
    nonce = use_nonce(await login(client, proof(key, clock, None)))
    clock.advance(60)  # the next window: the previous one's nonce still holds
    assert (await login(client, proof(key, clock, nonce))).status_code == 200
    clock.advance(60)  # two windows on: rotated out
    fresh = use_nonce(await login(client, proof(key, clock, nonce)))
    assert fresh != nonce
    assert (await login(client, proof(key, clock, fresh))).status_code == 200


async def test_hostile_nonces_are_answered_with_a_fresh_one(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    key = DPoPKey()
    good = use_nonce(await login(client, proof(key, clock, None)))
    # From the future: handed out while the clock was an hour ahead.
    clock.advance(3600)
    ahead = use_nonce(await login(client, proof(key, clock, None)))
    clock.advance(-3600)
    forged = Nonces([b"not the server's key, 32 bytes.."]).issue(clock.now)
    flipped = good[:-2] + ("AA" if good[-2:] != "AA" else "BB")
    for hostile in (ahead, forged, flipped, "x", "", "=" * 32, good + "A", "\u00e9" * 32):
        fresh = use_nonce(await login(client, proof(key, clock, hostile)))
        assert fresh == good  # this window's
    # A number for a nonce is no string: the same answer, no 500.
    use_nonce(await login(client, key.proof(iat=clock.now, nonce=12345)))


async def test_a_proof_out_of_the_window_gets_use_dpop_nonce(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    """API.md: "a proof whose iat is out of the window then also gets use_dpop_nonce"."""
    key = DPoPKey()
    nonce = use_nonce(await login(client, proof(key, clock, None)))
    for iat in (clock.now - 61, clock.now + 6):
        use_nonce(await login(client, proof(key, clock, nonce, iat=iat)))
    # Other faults are still invalid_dpop_proof.
    wrong = proof(key, clock, nonce, path="/userinfo")
    assert_oauth_error(await login(client, wrong), 400, "invalid_dpop_proof")


async def test_userinfo_asks_for_a_nonce_with_a_dpop_challenge(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    key = DPoPKey()
    nonce = use_nonce(await login(client, proof(key, clock, None)))
    token = (await login(client, proof(key, clock, nonce))).json()["access_token"]

    def auth(nonce: str | None, path: str = "/userinfo") -> dict[str, str]:
        dpop = proof(key, clock, nonce, path=path, method="GET", access_token=token)
        return {"Authorization": f"DPoP {token}", "DPoP": dpop}

    refused = await client.get("/userinfo", headers=auth(None))
    assert_oauth_error(refused, 401, "use_dpop_nonce")
    assert refused.headers["www-authenticate"].startswith('DPoP error="use_dpop_nonce"')
    fresh = refused.headers["dpop-nonce"]
    response = await client.get("/userinfo", headers=auth(fresh))
    assert response.status_code == 200, response.text
    assert response.headers["dpop-nonce"] == fresh
    sessions = await client.get("/sessions", headers=auth(None, "/sessions"))  # the same there
    assert_oauth_error(sessions, 401, "use_dpop_nonce")
    sessions = await client.get("/sessions", headers=auth(fresh, "/sessions"))
    assert sessions.status_code == 200, sessions.text


async def test_a_browser_may_send_proofs_and_read_the_nonce(
    client: httpx.AsyncClient, registry: Registry, clock: Clock
) -> None:
    origin = "https://spa.example"
    await registry.user("alice", "correct horse")
    await registry.client("app", public=True, grant_types=("password",), scopes=("openid",),
                          allowed_origins=(origin,))  # fmt: skip
    preflight = await client.options(
        "/token",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "dpop, content-type"},
    )  # fmt: skip
    assert preflight.status_code == 200, preflight.text
    data = {**LOGIN, "scope": "openid"}
    response = await client.post(
        "/token", data=data, headers={"Origin": origin, "DPoP": proof(DPoPKey(), clock, None)}
    )
    assert_oauth_error(response, 400, "use_dpop_nonce")
    assert "dpop-nonce" in response.headers["access-control-expose-headers"].lower()


@pytest.fixture
async def second(settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """Another instance: its own app, engine and pool, the same database and KEK."""
    other: Starlette = create_app(settings, clock=clock)
    async with (
        other.router.lifespan_context(other),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url=ISSUER) as http,
    ):
        yield http


async def test_a_nonce_of_one_instance_holds_on_another(
    client: httpx.AsyncClient, second: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    key = DPoPKey()
    nonce = use_nonce(await login(client, proof(key, clock, None)))
    response = await login(second, proof(key, clock, nonce))
    assert response.status_code == 200, response.text
    clock.advance(120)
    use_nonce(await login(second, proof(key, clock, response.headers["dpop-nonce"])))

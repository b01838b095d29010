"""POST /token with grant_type=authorization_code (API.md): PKCE S256, bound codes, single use,
replay revoking the family, cookie delivery for cookie clients."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.tokens.authorization_codes import AuthorizationCode, redeemed_event
from authserver.tokens.refresh import hash_token
from tests.conftest import Clock, Registry, assert_oauth_error
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    code_for,
    exchange,
    pkce_pair,
    web_client,
)


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry) -> str:
    return await registry.user("alice", "correct horse")


@pytest.fixture
async def web(registry: Registry) -> str:
    await web_client(registry)
    return WEB


@pytest.fixture
async def rs(registry: Registry) -> tuple[str, str]:
    secret = await registry.client("rs")
    assert secret is not None
    return "rs", secret


async def active(client: httpx.AsyncClient, rs: tuple[str, str], token: str) -> bool:
    response = await client.post("/introspect", data={"token": token}, auth=rs)
    assert response.status_code == 200
    return bool(response.json()["active"])


async def test_a_replayed_code_is_refused_and_revokes_the_family_its_first_use_started(
    client: httpx.AsyncClient, alice: str, web: str, rs: tuple[str, str], engine: AsyncEngine
) -> None:
    flow = Flow.new(web)
    code = await code_for(client, flow)
    first = await exchange(client, code, flow)
    assert first.status_code == 200, first.text
    tokens = first.json()

    assert_oauth_error(await exchange(client, code, flow), 400, "invalid_grant")

    assert not await active(client, rs, tokens["access_token"])
    refresh = await client.post(
        "/refresh", data={"client_id": web, "refresh_token": tokens["refresh_token"]}
    )
    assert_oauth_error(refresh, 400, "invalid_grant")
    async with engine.connect() as conn:
        reason = (
            await conn.execute(text("SELECT revoked_reason FROM refresh_families"))
        ).scalar_one()
        stored = (await conn.execute(text("SELECT code_hash FROM authorization_codes"))).scalar()
    assert reason == "code_replay"
    assert stored == hash_token(code)  # only the hash is kept


@pytest.mark.parametrize(
    "replay",
    [
        {"code_verifier": ""},  # no verifier
        {"code_verifier": "wrong-" + "v" * 50},
        {"client_id": "other"},  # another client, with the right verifier even
    ],
    ids=["no-verifier", "wrong-verifier", "another-client"],
)
async def test_a_used_code_presented_by_anyone_but_its_holder_revokes_nothing(
    client: httpx.AsyncClient,
    alice: str,
    web: str,
    registry: Registry,
    rs: tuple[str, str],
    replay: dict[str, str],
) -> None:
    """Whoever merely saw a used code (in a log, a Referer) must not end the session of the
    user who redeemed it: only the code's own client with its verifier proves to be the holder
    whose code leaked."""
    await web_client(registry, "other")
    flow = Flow.new(web)
    code = await code_for(client, flow)
    first = await exchange(client, code, flow)
    assert first.status_code == 200, first.text
    tokens = first.json()

    assert_oauth_error(await exchange(client, code, flow, **replay), 400, "invalid_grant")

    assert await active(client, rs, tokens["access_token"])
    refresh = await client.post(
        "/refresh", data={"client_id": web, "refresh_token": tokens["refresh_token"]}
    )
    assert refresh.status_code == 200, refresh.text


@pytest.mark.parametrize(
    "change",
    [
        {"code_verifier": ""},  # PKCE: none
        {"code_verifier": "wrong-" + "v" * 50},
        {"code_verifier": "short"},
        {"redirect_uri": ""},  # the request named one: required
        {"redirect_uri": "https://app.example/other"},  # another registered one
        {"redirect_uri": "https://app.example/cb/"},
        {"code": "not-a-code"},
    ],
)
async def test_a_wrong_verifier_redirect_uri_or_code_is_invalid_grant_and_spends_nothing(
    client: httpx.AsyncClient, alice: str, web: str, change: dict[str, str]
) -> None:
    flow = Flow.new(web)
    code = await code_for(client, flow)

    assert_oauth_error(await exchange(client, code, flow, **change), 400, "invalid_grant")

    # The holder of the right verifier still gets the tokens.
    assert (await exchange(client, code, flow)).status_code == 200


@pytest.mark.parametrize(
    ("named", "status"),
    [("", 200), (CALLBACK, 200), ("https://app.example/other", 400)],
    ids=["omitted", "the-registered-one", "another"],
)
async def test_a_code_whose_request_named_no_redirect_uri(
    client: httpx.AsyncClient, registry: Registry, alice: str, named: str, status: int
) -> None:
    """RFC 6749 §4.1.3: redirect_uri is required at /token only if the authorization request
    included it; when the exchange names one anyway, it must be the code's."""
    await web_client(registry, "single", redirect_uris=(CALLBACK,))
    flow = Flow.new("single", redirect_uri="")  # not named: the one registered is used
    code = await code_for(client, flow)

    answer = await exchange(client, code, flow, redirect_uri=named)

    assert answer.status_code == status, answer.text
    if status != 200:  # refused before the spend: the holder still gets the tokens
        assert (await exchange(client, code, flow, redirect_uri="")).status_code == 200


async def test_the_redeemed_event_is_the_one_the_domain_makes(
    client: httpx.AsyncClient, alice: str, web: str, engine: AsyncEngine
) -> None:
    """Postgres writes the code.redeemed row inside the exchange's one statement, SQLite from
    Python: both must be authorization_codes.redeemed_event."""
    flow = Flow.new(web, scope="openid profile")
    answer = await exchange(client, await code_for(client, flow), flow)
    assert answer.status_code == 200, answer.text
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT at, actor, target, detail, user_id, family_id FROM audit_events"
                    " WHERE action = 'code.redeemed'"
                )
            )
        ).one()
        family = (await conn.execute(text("SELECT id, user_id, scope FROM refresh_families"))).one()
    code = AuthorizationCode(
        WEB, alice, "", CALLBACK, True, "", "openid profile", None, 0, 0
    )  # the fields the event reads: client, user, scope
    expected = redeemed_event(code, str(family.id), WEB, row.at)
    assert (row.actor, row.target, row.user_id, row.family_id) == (
        expected.actor, expected.target, expected.user, expected.family,
    )  # fmt: skip
    assert json.loads(row.detail) == expected.detail
    assert (family.user_id, family.scope) == (alice, "openid profile")


async def test_the_verifier_of_another_flow_does_not_redeem_a_code(
    client: httpx.AsyncClient, alice: str, web: str
) -> None:
    flow = Flow.new(web)
    code = await code_for(client, flow)
    other_verifier, _ = pkce_pair()
    assert_oauth_error(
        await exchange(client, code, flow, code_verifier=other_verifier), 400, "invalid_grant"
    )


async def test_a_code_injected_into_another_client_is_refused(
    client: httpx.AsyncClient, alice: str, web: str, registry: Registry
) -> None:
    await web_client(registry, "victim")
    secret = await web_client(registry, "confidential", public=False)
    flow = Flow.new(web)
    code = await code_for(client, flow)

    assert_oauth_error(await exchange(client, code, flow, client_id="victim"), 400, "invalid_grant")
    basic = await client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": flow.params["redirect_uri"],
            "code_verifier": flow.verifier,
        },
        auth=("confidential", secret or ""),
    )
    assert_oauth_error(basic, 400, "invalid_grant")
    assert (await exchange(client, code, flow)).status_code == 200


async def test_a_confidential_client_authenticates_for_its_code(
    client: httpx.AsyncClient, alice: str, registry: Registry
) -> None:
    secret = await web_client(registry, "backend", public=False)
    assert secret is not None
    flow = Flow.new("backend")
    code = await code_for(client, flow)
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.params["redirect_uri"],
        "code_verifier": flow.verifier,
    }
    no_secret = await client.post("/token", data={**fields, "client_id": "backend"})
    assert no_secret.status_code == 401
    ok = await client.post("/token", data=fields, auth=("backend", secret))
    assert ok.status_code == 200, ok.text


async def test_a_code_lives_60_seconds(
    client: httpx.AsyncClient, alice: str, web: str, clock: Clock
) -> None:
    flow = Flow.new(web)
    code = await code_for(client, flow)
    clock.advance(60)
    assert_oauth_error(await exchange(client, code, flow), 400, "invalid_grant")


async def test_a_code_of_a_user_disabled_since_is_refused(
    client: httpx.AsyncClient, alice: str, web: str, registry: Registry, spa: str
) -> None:
    flow = Flow.new(web)
    code = await code_for(client, flow)
    root = await admin_headers(client, registry)
    assert (await client.post(f"/admin/users/{alice}/disable", headers=root)).status_code == 204
    assert_oauth_error(await exchange(client, code, flow), 400, "invalid_grant")


async def test_a_client_without_the_code_grant_cannot_exchange(
    client: httpx.AsyncClient, alice: str, web: str, registry: Registry
) -> None:
    flow = Flow.new(web)
    code = await code_for(client, flow)
    await registry.client("pw", public=True, grant_types=("password",))
    response = await exchange(client, code, flow, client_id="pw")
    assert response.status_code == 400 and response.json()["error"] == "unauthorized_client"


async def test_a_cookie_client_gets_the_refresh_token_only_in_the_cookie(
    client: httpx.AsyncClient, alice: str, registry: Registry
) -> None:
    await web_client(registry, "cookie-spa", refresh_delivery="cookie")
    flow = Flow.new("cookie-spa")
    code = await code_for(client, flow)

    # The answer would set the cookie: a foreign origin (login CSRF) is refused first.
    foreign = await exchange(client, code, flow)
    assert foreign.status_code == 403 and foreign.json()["error"] == "invalid_request"

    origin = {"Origin": "https://app.example"}
    fields = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": flow.params["redirect_uri"],
        "code_verifier": flow.verifier,
        "client_id": "cookie-spa",
    }
    response = await client.post("/token", data=fields, headers=origin)
    assert response.status_code == 200, response.text
    assert "refresh_token" not in response.json()
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("authserver_rt=") and "HttpOnly" in cookie
    refreshed = await client.post("/refresh", data={"client_id": "cookie-spa"}, headers=origin)
    assert refreshed.status_code == 200, refreshed.text

"""Dynamic client registration (RFC 7591) and its management (RFC 7592) (API.md, "Resource
servers, client registration and consent", Dynamic client registration): the three modes,
every error, the RFC 7592 round trip, a registered client signing someone in with code +
PKCE + refresh, a single-use initial token raced, hostile metadata, the throttle and the
purge of idle open-mode clients."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.actions import registration
from authserver.audit import AuditEvent
from authserver.clients import ClientChanges
from authserver.config import Settings
from authserver.db.purge import purge
from authserver.errors import NotFound
from authserver.services import Services
from authserver.tokens.resources import Resource
from tests._dpop import DPoPKey
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    Flow,
    admin_headers,
    code_for,
    exchange,
)
from tests.http.test_cors import preflight_headers

APP = {"redirect_uris": [CALLBACK], "client_name": "Notes", "token_endpoint_auth_method": "none"}


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, str]:
    return {**INSECURE_COOKIES, "registration": getattr(request, "param", "open")}


TOKEN_MODE = pytest.mark.parametrize("settings_overrides", ["token"], indirect=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(http: httpx.AsyncClient, body: Any, **headers: str) -> httpx.Response:
    return await http.post("/register", json=body, headers=headers)


async def registered(http: httpx.AsyncClient, body: dict[str, Any] = APP) -> dict[str, Any]:
    response = await register(http, body)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    answer: dict[str, Any] = response.json()
    return answer


async def refreshed_with(http: httpx.AsyncClient, token: str, client_id: str) -> httpx.Response:
    fields = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await http.post("/token", data=fields)


# --- browsers -----------------------------------------------------------------------------------


async def test_any_origin_may_register_and_manage_without_credentials(
    client: httpx.AsyncClient,
) -> None:
    """A browser-based MCP client registers from an origin nobody listed; nothing here rides
    on a cookie, so the answer is open to all (`*`, never with credentials)."""
    origin = "https://inspector.example"
    asked = await client.options("/register", headers=preflight_headers(origin))
    assert asked.status_code == 204
    assert asked.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in asked.headers
    assert "content-type" in asked.headers["access-control-allow-headers"].lower()
    created = await register(client, APP, Origin=origin)
    assert created.status_code == 201, created.text
    assert created.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in created.headers
    uri, token = (
        created.json()["registration_client_uri"],
        created.json()["registration_access_token"],
    )
    managed = await client.options(
        uri, headers=preflight_headers(origin, "PUT", "authorization, content-type")
    )
    assert managed.status_code == 204
    assert "PUT" in managed.headers["access-control-allow-methods"]
    assert "authorization" in managed.headers["access-control-allow-headers"].lower()
    read = await client.get(uri, headers={"Origin": origin, **bearer(token)})
    assert read.status_code == 200
    assert read.headers["access-control-allow-origin"] == "*"
    # A refusal is readable too (the page shows why), and a 429's Retry-After.
    refused = await register(client, {"redirect_uris": ["javascript:x"]}, Origin=origin)
    assert refused.status_code == 400
    assert refused.headers["access-control-allow-origin"] == "*"
    assert "retry-after" in refused.headers["access-control-expose-headers"].lower()


# --- modes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings_overrides", ["off"], indirect=True)
async def test_off_is_the_default_and_answers_404(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    assert Settings().registration == "off"
    assert_oauth_error(await register(client, APP), 404, "not_found")
    assert_oauth_error(await client.get("/register/x", headers=bearer("t")), 404, "not_found")
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert "registration_endpoint" not in metadata


async def test_open_mode_registers_a_public_third_party_client(
    client: httpx.AsyncClient, registry: Registry, spa: str, services: Services
) -> None:
    metadata = (await client.get("/.well-known/openid-configuration")).json()
    assert metadata["registration_endpoint"] == f"{ISSUER}/register"
    body = {**APP, "logo_uri": "https://app.example/logo.png", "software_statement": "x" * 50}
    answer = await registered(client, body)
    client_id = answer["client_id"]
    assert answer == {
        "client_id": client_id,
        "client_id_issued_at": services.clock(),
        "registration_client_uri": f"{ISSUER}/register/{client_id}",
        "registration_access_token": answer["registration_access_token"],
        "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "openid profile email",
        "client_name": "Notes",
        "logo_uri": "https://app.example/logo.png",
        "dpop_bound_access_tokens": False,
    }  # the unknown software_statement ignored (RFC 7591 §2), no secret for a public client
    # Operators see it as any client, marked registered and third-party.
    admin = await admin_headers(client, registry)
    shown = (await client.get(f"/admin/clients/{client_id}", headers=admin)).json()
    assert shown["registration"] == "open" and shown["consent"] is True and shown["public"]
    listed = (await client.get("/admin/clients", headers=admin)).json()["clients"]
    assert client_id in [c["client_id"] for c in listed]
    trail = (await client.get("/admin/audit", headers=admin)).json()["events"]
    event = next(e for e in trail if e["type"] == "client.registered")
    assert event["target"] == client_id and event["detail"]["mode"] == "open"
    assert "registration_access_token" not in event["detail"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"token_endpoint_auth_method": "client_secret_basic"}, "confidential"),
        ({"grant_types": ["client_credentials"]}, "a machine's grant"),
        ({"grant_types": ["password"]}, "passwords"),
        ({"scope": "openid admin"}, "the admin scope"),
        ({"response_types": ["token"]}, "the implicit flow"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "an unknown method"),
        ({"application_type": "desktop"}, "an unknown application type"),
        ({"client_uri": "http://app.example/"}, "an http client_uri"),
        ({"redirect_uris": CALLBACK}, "a string for a list"),
        ({"client_name": 7}, "a number for a name"),
        ({"client_name": "line\nbreak"}, "a name with a line break"),
        ({"scope": ["openid"]}, "a list for the scope"),
        ({"scope": "openid\tprofile"}, "a malformed scope"),
        ({"dpop_bound_access_tokens": "true"}, "a string for a boolean"),
    ],
)
async def test_open_mode_refuses_what_only_an_operator_may_allow(
    client: httpx.AsyncClient, body: dict[str, Any], why: str
) -> None:
    response = await register(client, {**APP, **body})
    assert_oauth_error(response, 400, "invalid_client_metadata")


@pytest.mark.parametrize(
    "uris",
    [
        ["javascript:alert(1)"],
        ["data:text/html,<script>alert(1)</script>"],
        ["https://app.example/cb#fragment"],
        ["http://app.example/cb"],  # http off a loopback host
        ["https://app.example@evil.example/cb"],
        ["/relative"],
        [],  # the code grant needs one
        ["https://app.example/\x00"],
    ],
)
async def test_hostile_redirect_uris_are_invalid_redirect_uri(
    client: httpx.AsyncClient, uris: list[str]
) -> None:
    response = await register(client, {**APP, "redirect_uris": uris})
    if "\x00" in "".join(uris):
        assert_oauth_error(response, 400, "invalid_client_metadata")  # not storable at all
    else:
        assert_oauth_error(response, 400, "invalid_redirect_uri")


async def test_loopback_redirect_uris_of_native_apps_are_welcome(
    client: httpx.AsyncClient,
) -> None:
    uris = ["http://127.0.0.1:53682/callback", "http://localhost/cb", "http://[::1]:8080/cb"]
    answer = await registered(client, {**APP, "redirect_uris": uris, "application_type": "native"})
    assert answer["redirect_uris"] == uris and answer["application_type"] == "native"


async def test_huge_bodies_many_uris_and_other_shapes_are_refused(
    client: httpx.AsyncClient,
) -> None:
    many = [f"https://app.example/{i}" for i in range(1000)]
    response = await register(client, {**APP, "redirect_uris": many})
    assert_oauth_error(response, 413, "invalid_request")  # past 16 KiB before it is read
    some = [f"https://a.example/{i}" for i in range(65)]
    response = await register(client, {**APP, "redirect_uris": some})
    assert_oauth_error(response, 400, "invalid_client_metadata")  # at most 64
    response = await register(client, {**APP, "client_name": "x" * 20_000})
    assert_oauth_error(response, 413, "invalid_request")
    response = await client.post("/register", json=[APP])
    assert_oauth_error(response, 400, "invalid_request")
    response = await client.post("/register", data={"redirect_uris": CALLBACK})
    assert_oauth_error(response, 415, "invalid_request")
    response = await client.post(
        "/register", content=b'{"client_name": "a", "client_name": "b"}',
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert_oauth_error(response, 400, "invalid_request")


@TOKEN_MODE
async def test_token_mode_needs_a_live_initial_access_token(
    client: httpx.AsyncClient, services: Services, clock: Clock
) -> None:
    assert_oauth_error(await register(client, APP), 401, "invalid_token")
    response = await register(client, APP, **bearer("made-up"))
    assert_oauth_error(response, 401, "invalid_token")
    assert response.headers["www-authenticate"].startswith("Bearer ")

    token, expires_at = await registration.make_initial_token(services, "cli", 600, 1)
    assert expires_at == clock.now + 600
    confidential = {**APP, "token_endpoint_auth_method": "client_secret_basic"}
    response = await register(client, confidential, **bearer(token))
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["client_secret"] and answer["client_secret_expires_at"] == 0
    assert answer["token_endpoint_auth_method"] == "client_secret_basic"
    # Spent: a single-use token registers once.
    assert_oauth_error(await register(client, APP, **bearer(token)), 401, "invalid_token")

    many, _ = await registration.make_initial_token(services, "cli", 600, None)
    for _ in range(3):
        assert (await register(client, APP, **bearer(many))).status_code == 201
    clock.advance(601)
    assert_oauth_error(await register(client, APP, **bearer(many)), 401, "invalid_token")


@TOKEN_MODE
async def test_two_registrations_racing_for_a_single_use_token_one_wins(
    client: httpx.AsyncClient, services: Services, engine: AsyncEngine
) -> None:
    statuses: list[int] = []
    for _ in range(3):
        token, _ = await registration.make_initial_token(services, "cli", 600, 1)

        async def one(token: str = token) -> None:
            statuses.append((await register(client, APP, **bearer(token))).status_code)

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            group.start_soon(one)
        assert sorted(statuses[-2:]) == [201, 401], statuses
    admin_view = await services.clients.page(100, None)
    assert len([c for c in admin_view if c.registration == "token"]) == 3


@TOKEN_MODE
async def test_a_revoke_racing_a_registration_for_a_single_use_token_one_wins(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The revoke and the spend are each one UPDATE under the same condition (the token
    still registers): the registration spent the last use and the revoke finds nothing, or
    the revoke ended it and the registration is refused; never both, never neither."""
    for _ in range(3):
        token, _ = await registration.make_initial_token(services, "cli", 600, 1)
        [live] = await services.registrations.live_initial_tokens(services.clock(), 1)
        outcomes: dict[str, object] = {}

        async def enrol(token: str = token, outcomes: dict[str, object] = outcomes) -> None:
            outcomes["register"] = (await register(client, APP, **bearer(token))).status_code

        async def revoke(
            token_hash: str = live.token_hash, outcomes: dict[str, object] = outcomes
        ) -> None:
            try:
                await registration.revoke_initial_token(services, "cli", token_hash)
                outcomes["revoke"] = "revoked"
            except NotFound:
                outcomes["revoke"] = "not found"

        async with anyio.create_task_group() as group:
            group.start_soon(enrol)
            group.start_soon(revoke)
        assert outcomes in (
            {"register": 201, "revoke": "not found"},
            {"register": 401, "revoke": "revoked"},
        ), outcomes
        assert await services.registrations.live_initial_tokens(services.clock(), 1) == []


# --- RFC 7592 ---------------------------------------------------------------------------------


async def test_read_replace_delete_with_the_registration_access_token(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.user("alice")
    answer = await registered(
        client, {**APP, "grant_types": ["authorization_code", "refresh_token"]}
    )
    other = await registered(client)
    uri, token = answer["registration_client_uri"], answer["registration_access_token"]
    own = {k: v for k, v in answer.items() if k != "registration_access_token"}

    read = await client.get(uri, headers=bearer(token))
    assert read.status_code == 200 and read.headers["cache-control"] == "no-store"
    assert read.json() == own
    for wrong in (None, "made-up", other["registration_access_token"]):
        headers = bearer(wrong) if wrong else {}
        assert_oauth_error(await client.get(uri, headers=headers), 401, "invalid_token")
    assert_oauth_error(
        await client.get(f"{ISSUER}/register/nobody", headers=bearer(token)), 401, "invalid_token"
    )

    # A session of the client, to see it end with the deletion.
    flow = Flow.new(answer["client_id"])
    tokens = (await exchange(client, await code_for(client, flow, consent=True), flow)).json()

    changed = {**own, "redirect_uris": [CALLBACK, "https://app.example/2"], "client_name": "N2"}
    replaced = await client.put(uri, json=changed, headers=bearer(token))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["redirect_uris"] == [CALLBACK, "https://app.example/2"]
    assert (await client.get(uri, headers=bearer(token))).json()["client_name"] == "N2"
    hostile = {**own, "redirect_uris": ["javascript:alert(1)"]}
    response = await client.put(uri, json=hostile, headers=bearer(token))
    assert_oauth_error(response, 400, "invalid_redirect_uri")
    response = await client.put(
        uri, json={**own, "client_id": other["client_id"]}, headers=bearer(token)
    )
    assert_oauth_error(response, 400, "invalid_client_metadata")
    response = await client.put(
        uri, json={**own, "token_endpoint_auth_method": "client_secret_post"}, headers=bearer(token)
    )
    assert_oauth_error(response, 400, "invalid_client_metadata")
    response = await client.put(uri, json=own, headers=bearer(other["registration_access_token"]))
    assert_oauth_error(response, 401, "invalid_token")

    deleted = await client.delete(uri, headers=bearer(token))
    assert deleted.status_code == 204
    assert_oauth_error(await client.get(uri, headers=bearer(token)), 401, "invalid_token")
    refresh = await refreshed_with(client, tokens["refresh_token"], answer["client_id"])
    assert refresh.status_code in (400, 401), refresh.text  # the client and its sessions ended


async def test_a_registered_public_client_signs_in_with_code_pkce_and_refresh(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.user("alice")
    answer = await registered(
        client, {**APP, "grant_types": ["authorization_code", "refresh_token"], "scope": "openid"}
    )
    flow = Flow.new(answer["client_id"], scope="openid")
    response = await exchange(client, await code_for(client, flow, consent=True), flow)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["scope"] == "openid" and tokens["id_token"]
    refreshed = await refreshed_with(client, tokens["refresh_token"], answer["client_id"])
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    # No secret, no PKCE: refused, as for any public client.
    flow = Flow.new(answer["client_id"], scope="openid", code_challenge="")
    response = await client.get("/authorize", params=flow.params)
    assert response.status_code in (302, 400)
    assert "code=" not in response.headers.get("location", "")


async def test_registrations_are_throttled_per_address(client: httpx.AsyncClient) -> None:
    # At least 20 a minute from one address always pass (API.md); 30 is the budget.
    for _ in range(30):
        assert (await register(client, APP)).status_code == 201
    response = await register(client, APP)
    assert_oauth_error(response, 429, "slow_down")
    assert 1 <= int(response.headers["retry-after"]) <= 60


async def test_idle_open_mode_clients_are_purged_used_ones_stay(
    client: httpx.AsyncClient,
    registry: Registry,
    services: Services,
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    await registry.user("alice")
    await registry.client("machine")  # an operator's, never used: never purged
    idle = await registered(client)
    used = await registered(client)
    flow = Flow.new(used["client_id"])
    assert (
        await exchange(client, await code_for(client, flow, consent=True), flow)
    ).status_code == 200

    purged = await purge(engine, settings, clock.now + settings.registration_idle_purge - 1)
    assert purged is not None and purged.registered_clients == 0
    purged = await purge(engine, settings, clock.now + settings.registration_idle_purge + 1)
    assert purged is not None and purged.registered_clients == 1
    assert await services.clients.fresh(idle["client_id"]) is None
    assert await services.clients.fresh(used["client_id"]) is not None
    assert await services.clients.fresh("machine") is not None


async def test_dpop_bound_access_tokens_is_registration_metadata(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    """RFC 9449 §5.2: a client registers `dpop_bound_access_tokens`; /token then refuses its
    requests without a proof (nothing spent), and RFC 7592 reads and replaces it."""
    await registry.user("alice")
    answer = await registered(client, {**APP, "dpop_bound_access_tokens": True})
    assert answer["dpop_bound_access_tokens"] is True
    uri, token = answer["registration_client_uri"], answer["registration_access_token"]
    assert (await client.get(uri, headers=bearer(token))).json()["dpop_bound_access_tokens"]
    flow = Flow.new(answer["client_id"])
    code = await code_for(client, flow, consent=True)
    assert_oauth_error(await exchange(client, code, flow), 400, "invalid_dpop_proof")
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK,
              "code_verifier": flow.verifier, "client_id": answer["client_id"]}  # fmt: skip
    response = await client.post("/token", data=fields, headers=DPoPKey().header())
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"

    own = {k: v for k, v in answer.items() if k != "registration_access_token"}
    replaced = await client.put(uri, json={**own, "dpop_bound_access_tokens": False},
                                headers=bearer(token))  # fmt: skip
    assert replaced.status_code == 200 and replaced.json()["dpop_bound_access_tokens"] is False
    # RFC 7592 §2.2 replaces the whole metadata: left out, it is false again.
    replaced = await client.put(uri, json={**own, "dpop_bound_access_tokens": True},
                                headers=bearer(token))  # fmt: skip
    assert replaced.json()["dpop_bound_access_tokens"] is True
    del own["dpop_bound_access_tokens"]
    replaced = await client.put(uri, json=own, headers=bearer(token))
    assert replaced.json()["dpop_bound_access_tokens"] is False


async def test_resources_are_no_registered_clients_to_set_and_a_put_keeps_the_operators(
    client: httpx.AsyncClient, registry: Registry, services: Services
) -> None:
    """docs/resources.md, "Not for /register": the member is ignored at registration (not
    echoed), and an operator's restriction survives the client's RFC 7592 PUT."""
    api = "https://api.example/"
    await services.resources.create(
        Resource(api, ("read",), 300, 0), AuditEvent(0, "cli", "resource.created", api)
    )
    answer = await registered(client, {**APP, "resources": ["https://elsewhere.example/"]})
    assert "resources" not in answer
    client_id = answer["client_id"]
    stored = await services.clients.fresh(client_id)
    assert stored is not None and stored.resources == ()
    now = services.clock()
    event = AuditEvent(now, "cli", "client.updated", client_id)
    await services.clients.update(client_id, ClientChanges(resources=(api,)), now, [event])
    uri, token = answer["registration_client_uri"], answer["registration_access_token"]
    own = {k: v for k, v in answer.items() if k != "registration_access_token"}
    replaced = await client.put(uri, json={**own, "client_name": "N2"}, headers=bearer(token))
    assert replaced.status_code == 200, replaced.text
    kept = await services.clients.fresh(client_id)
    assert kept is not None and kept.client_name == "N2" and kept.resources == (api,)

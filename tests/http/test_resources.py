"""RFC 8707 resource indicators (API.md, "Resource servers, client registration and consent",
Resources): the registry over the admin API, `resource` at /authorize and every grant, one
audience per access token, its scopes and lifetime, invalid_target, and introspection and the
revocation feed for resource-bound tokens."""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.errors import InvalidTarget
from authserver.services import Services
from authserver.tokens.refresh import rotate, start_family
from authserver_verify.errors import WrongAudience
from authserver_verify.verifier import Fetched, Verifier
from tests.conftest import ISSUER, Registry, assert_oauth_error, password_login
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    authorize,
    exchange,
    query,
    sign_in,
    web_client,
)

DEFAULT_AUDIENCE = "authserver-api"  # AUTHSERVER_AUDIENCE's default
MCP = "https://mcp.example/mcp"
FILES = "https://files.example/"
OTHER = "urn:example:other"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def admin(client: httpx.AsyncClient, registry: Registry, spa: str) -> dict[str, str]:
    return await admin_headers(client, registry)


@pytest.fixture
async def registered(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """Three resource servers: MCP declares read, FILES write, OTHER nothing."""
    for resource, scopes, ttl in ((MCP, ["read"], 300), (FILES, ["write"], 600), (OTHER, [], 120)):
        body = {"resource": resource, "scopes": scopes, "access_token_ttl": ttl}
        response = await client.post("/admin/resources", json=body, headers=admin)
        assert response.status_code == 201, response.text


@pytest.fixture
async def service(registry: Registry) -> tuple[str, str]:
    """A confidential client with client_credentials (and an introspecting resource server)."""
    secret = await registry.client("svc", scopes=("read", "write", "profile"))
    assert secret is not None
    return "svc", secret


def claims_of(token: str) -> dict[str, Any]:
    found: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return found


def at(resource: str) -> str:
    return "/admin/resources/" + quote(resource, safe="")


async def service_token(
    client: httpx.AsyncClient, service: tuple[str, str], **fields: str
) -> httpx.Response:
    return await client.post(
        "/token", data={"grant_type": "client_credentials", **fields}, auth=service
    )


async def introspect(
    client: httpx.AsyncClient, service: tuple[str, str], token: str
) -> dict[str, Any]:
    response = await client.post("/introspect", data={"token": token}, auth=service)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- The registry ---------------------------------------------------------------------------


async def test_an_operator_registers_lists_shows_changes_and_deletes_a_resource_audited(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    body = {"resource": MCP, "scopes": ["read", "write"], "access_token_ttl": 900}
    created = await client.post("/admin/resources", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json() == body  # as GET shows it: those three members
    assert created.headers["cache-control"] == "no-store"

    shown = await client.get(at(MCP), headers=admin)
    assert shown.status_code == 200 and shown.json() == body
    listed = await client.get("/admin/resources", headers=admin)
    assert listed.json() == {"resources": [body], "next_after": None}

    changed = await client.patch(
        at(MCP), json={"scopes": ["read"], "access_token_ttl": 300}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {"resource": MCP, "scopes": ["read"], "access_token_ttl": 300}

    assert (await client.delete(at(MCP), headers=admin)).status_code == 204
    assert_oauth_error(await client.get(at(MCP), headers=admin), 404, "not_found")
    assert_oauth_error(await client.delete(at(MCP), headers=admin), 404, "not_found")
    assert_oauth_error(await client.patch(at(MCP), json={}, headers=admin), 404, "not_found")

    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, target, detail FROM audit_events"
                    " WHERE action LIKE 'resource.%' ORDER BY id"
                )
            )
        ).all()
    assert [(action, target) for action, target, _ in rows] == [
        ("resource.created", MCP),
        ("resource.updated", MCP),
        ("resource.deleted", MCP),
    ]
    assert json.loads(rows[1][2]) == {"scopes": ["read"], "access_token_ttl": 300}


async def test_the_lifetime_defaults_to_the_servers_and_a_taken_identifier_is_a_conflict(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    created = await client.post("/admin/resources", json={"resource": OTHER}, headers=admin)
    assert created.json() == {"resource": OTHER, "scopes": [], "access_token_ttl": 900}
    again = await client.post("/admin/resources", json={"resource": OTHER}, headers=admin)
    assert_oauth_error(again, 409, "conflict")


@pytest.mark.parametrize(
    "body",
    [
        {"resource": "/relative/path"},  # RFC 8707 §2: an absolute URI
        {"resource": "mcp.example"},
        {"resource": "https://mcp.example/#frag"},  # ... without a fragment
        {"resource": "https://mcp.example/" + "a" * 300},  # huge
        {"resource": "https://mcp.example/a b"},
        {"resource": "https://mcp.example/\u00e9"},
        {"resource": ""},
        {"resource": ["https://mcp.example/"]},
        {"resource": MCP, "access_token_ttl": 901},  # past AUTHSERVER_ACCESS_TOKEN_TTL
        {"resource": MCP, "access_token_ttl": 59},
        {"resource": MCP, "access_token_ttl": "900"},
        {"resource": MCP, "access_token_ttl": True},
        {"resource": MCP, "scopes": ["two words"]},
        {"resource": MCP, "scopes": "read"},
        {"resource": MCP, "scopes": [f"s{n}" for n in range(65)]},
        {"resource": MCP, "audience": "x"},  # unknown member
    ],
)
async def test_a_malformed_registration_is_refused_and_stores_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any]
) -> None:
    answer = await client.post("/admin/resources", json=body, headers=admin)
    assert_oauth_error(answer, 400, "invalid_request")
    listed = await client.get("/admin/resources", headers=admin)
    assert listed.json()["resources"] == []


async def test_the_registry_needs_an_admin_token(
    client: httpx.AsyncClient, login: Any, registered: None
) -> None:
    assert_oauth_error(await client.get("/admin/resources"), 401, "invalid_token")
    user = {"Authorization": f"Bearer {login.access_token}"}
    refused = await client.post("/admin/resources", json={"resource": OTHER}, headers=user)
    assert_oauth_error(refused, 403, "insufficient_scope")
    assert_oauth_error(await client.delete(at(MCP), headers=user), 403, "insufficient_scope")


async def test_the_list_is_paged_by_identifier(
    client: httpx.AsyncClient, admin: dict[str, str], registered: None
) -> None:
    first = (await client.get("/admin/resources?limit=2", headers=admin)).json()
    assert [r["resource"] for r in first["resources"]] == [FILES, MCP]
    after = quote(first["next_after"], safe="")
    rest = (await client.get(f"/admin/resources?limit=2&after={after}", headers=admin)).json()
    assert rest == {"resources": [{"resource": OTHER, "scopes": [], "access_token_ttl": 120}],
                    "next_after": None}  # fmt: skip


# --- client_credentials ---------------------------------------------------------------------


async def test_a_token_for_a_resource_has_its_audience_its_scopes_and_its_lifetime(
    client: httpx.AsyncClient, registered: None, service: tuple[str, str], clock: Any
) -> None:
    response = await service_token(client, service, resource=MCP, scope="read write profile")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["scope"], body["expires_in"]) == ("read profile", 300)
    claims = claims_of(body["access_token"])
    assert claims["aud"] == MCP and claims["scope"] == "read profile"
    assert claims["exp"] - claims["iat"] == 300

    # Without resource: the default audience, every scope asked, the server's lifetime.
    plain = (await service_token(client, service, scope="read write")).json()
    assert claims_of(plain["access_token"])["aud"] == DEFAULT_AUDIENCE
    assert (plain["scope"], plain["expires_in"]) == ("read write", 900)


async def test_a_resource_token_is_introspected_and_its_revocation_reaches_the_feed(
    client: httpx.AsyncClient, registered: None, service: tuple[str, str]
) -> None:
    token = (await service_token(client, service, resource=FILES)).json()["access_token"]
    found = await introspect(client, service, token)
    assert found["active"] is True and found["aud"] == FILES and found["scope"] == "write profile"

    assert (await client.post("/revoke", data={"token": token}, auth=service)).status_code == 200

    assert (await introspect(client, service, token)) == {"active": False}
    feed = (await client.get("/revocations", auth=service)).json()
    assert claims_of(token)["jti"] in feed["jtis"]


async def test_a_token_for_a_resource_is_no_token_for_this_servers_own_endpoints(
    client: httpx.AsyncClient, registered: None
) -> None:
    """Audience restriction works both ways: an admin's token for MCP opens no admin API."""
    response = await password_login(client, "root", scope="admin profile", resource=MCP)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "profile"  # MCP declares no admin
    bearer = {"Authorization": f"Bearer {response.json()['access_token']}"}
    assert_oauth_error(await client.get("/admin/resources", headers=bearer), 401, "invalid_token")
    assert_oauth_error(await client.get("/userinfo", headers=bearer), 401, "invalid_token")


@pytest.mark.parametrize(
    "resource",
    [
        "https://unknown.example/",  # not registered
        "/mcp",  # relative
        "mcp.example",
        MCP + "#x",  # fragment
        MCP + "/" + "a" * 5000,  # huge
        "",
    ],
    ids=["unknown", "relative", "no-scheme", "fragment", "huge", "empty"],
)
async def test_a_bad_resource_is_invalid_target_at_the_token_endpoint(
    client: httpx.AsyncClient, registered: None, service: tuple[str, str], resource: str
) -> None:
    assert_oauth_error(
        await service_token(client, service, resource=resource), 400, "invalid_target"
    )


async def test_several_resources_in_one_token_request_are_invalid_target(
    client: httpx.AsyncClient, registered: None, service: tuple[str, str]
) -> None:
    """One resource per access token: asking for two (RFC 8707 lets `resource` repeat) is
    refused rather than answered with a token for one of them; so are many."""
    body = f"grant_type=client_credentials&resource={quote(MCP)}&resource={quote(FILES)}"
    form = {"content-type": "application/x-www-form-urlencoded"}
    two = await client.post("/token", content=body, headers=form, auth=service)
    assert_oauth_error(two, 400, "invalid_target")
    many = "grant_type=client_credentials" + f"&resource={quote(MCP)}" * 30
    answer = await client.post("/token", content=many, headers=form, auth=service)
    assert_oauth_error(answer, 400, "invalid_target")
    # Other fields still may not repeat (RFC 6749 §3.1).
    twice = "grant_type=client_credentials&scope=read&scope=read"
    answer = await client.post("/token", content=twice, headers=form, auth=service)
    assert_oauth_error(answer, 400, "invalid_request")


# --- password and refresh -------------------------------------------------------------------


async def test_a_password_login_for_a_resource_refreshes_for_it_and_for_no_other(
    client: httpx.AsyncClient, registry: Registry, registered: None
) -> None:
    await registry.client("app", public=True, grant_types=("password", "refresh_token"),
                          scopes=("read", "write", "profile"))  # fmt: skip
    await registry.user("alice", "correct horse", scopes=("read", "write"))
    response = await password_login(client, client_id="app", resource=MCP)
    assert response.status_code == 200, response.text
    body = response.json()
    assert claims_of(body["access_token"])["aud"] == MCP
    assert (body["scope"], body["expires_in"]) == ("read profile", 300)

    refresh = {"grant_type": "refresh_token", "client_id": "app"}
    other = await client.post(
        "/token", data={**refresh, "refresh_token": body["refresh_token"], "resource": FILES}
    )
    assert_oauth_error(other, 400, "invalid_target")  # never granted
    # ... and that spent nothing: the same token still refreshes, for MCP by default.
    again = await client.post("/token", data={**refresh, "refresh_token": body["refresh_token"]})
    assert again.status_code == 200, again.text
    assert claims_of(again.json()["access_token"])["aud"] == MCP
    assert again.json()["scope"] == "read profile"


async def test_a_bad_resource_at_the_password_grant_counts_no_failed_login(
    client: httpx.AsyncClient, login: Any, engine: AsyncEngine
) -> None:
    refused = await password_login(client, password="wrong", resource="https://nowhere.example")
    assert_oauth_error(refused, 400, "invalid_target")
    async with engine.connect() as conn:
        failures = (await conn.execute(text("SELECT sum(failures) FROM login_throttle"))).scalar()
    assert not failures


async def test_a_session_without_resources_refreshes_for_none(
    client: httpx.AsyncClient, login: Any, registered: None
) -> None:
    refresh = {"grant_type": "refresh_token", "client_id": "spa"}
    asked = await client.post(
        "/token", data={**refresh, "refresh_token": login.refresh_token, "resource": MCP}
    )
    assert_oauth_error(asked, 400, "invalid_target")
    plain = await client.post("/token", data={**refresh, "refresh_token": login.refresh_token})
    assert claims_of(plain.json()["access_token"])["aud"] == DEFAULT_AUDIENCE


# --- /authorize and the code exchange -------------------------------------------------------


async def code_naming(client: httpx.AsyncClient, flow: Flow, *resources: str) -> httpx.Response:
    """/authorize naming `resources` (repeated `resource`), signed in as alice: the redirect."""
    params = [*flow.params.items(), *(("resource", r) for r in resources)]
    response = await authorize(client, params)  # type: ignore[arg-type]
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    if location.startswith(f"{ISSUER}/login"):
        response = await sign_in(client, location)
        assert response.status_code == 303, response.text
    return response


@pytest.fixture
async def web(registry: Registry) -> str:
    await web_client(registry, scopes=("openid", "profile", "read", "write", "extra"))
    await registry.user("alice", "correct horse", scopes=("read", "write", "extra"))
    return WEB


async def test_an_authorization_for_two_resources_gives_a_token_for_each_in_turn(
    client: httpx.AsyncClient, web: str, registered: None, engine: AsyncEngine
) -> None:
    flow = Flow.new(web, scope="openid read write extra")
    answer = query((await code_naming(client, flow, MCP, FILES)).headers["location"])
    code = answer["code"]
    async with engine.connect() as conn:
        stored = await conn.execute(text("SELECT scope, resources FROM authorization_codes"))
        # The scope granted as asked; each token carries what its resource declares of it.
        assert tuple(stored.one()) == ("openid read write extra", f"{MCP} {FILES}")

    # RFC 8707 §2.2: the exchange names one of them.
    exchanged = await exchange(client, code, flow, resource=FILES)
    assert exchanged.status_code == 200, exchanged.text
    tokens = exchanged.json()
    assert claims_of(tokens["access_token"])["aud"] == FILES
    assert (tokens["scope"], tokens["expires_in"]) == ("openid write", 600)
    assert claims_of(tokens["id_token"])["aud"] == web  # the ID token is the client's

    refresh = {"grant_type": "refresh_token", "client_id": web}
    # Asking again for the whole scope granted (as Authlib does) is no invalid_scope.
    again = {"refresh_token": tokens["refresh_token"], "scope": "openid read write extra"}
    to_mcp = await client.post("/token", data={**refresh, **again, "resource": MCP})
    assert to_mcp.status_code == 200, to_mcp.text
    assert claims_of(to_mcp.json()["access_token"])["aud"] == MCP
    assert to_mcp.json()["scope"] == "openid read"
    # OTHER is registered, but this authorization did not name it.
    later = to_mcp.json()["refresh_token"]
    to_other = await client.post(
        "/token", data={**refresh, "refresh_token": later, "resource": OTHER}
    )
    assert_oauth_error(to_other, 400, "invalid_target")
    # None named: the first the authorization named.
    default = await client.post("/token", data={**refresh, "refresh_token": later})
    assert claims_of(default.json()["access_token"])["aud"] == MCP


async def test_a_code_exchange_naming_a_resource_not_granted_spends_no_code(
    client: httpx.AsyncClient, web: str, registered: None
) -> None:
    flow = Flow.new(web, scope="read")
    code = query((await code_naming(client, flow, MCP)).headers["location"])["code"]

    assert_oauth_error(await exchange(client, code, flow, resource=FILES), 400, "invalid_target")
    unknown = await exchange(client, code, flow, resource="https://unknown.example/")
    assert_oauth_error(unknown, 400, "invalid_target")

    right = await exchange(client, code, flow)  # none named: the one granted
    assert right.status_code == 200, right.text
    assert claims_of(right.json()["access_token"])["aud"] == MCP


async def test_an_authorization_without_resources_exchanges_for_the_default_audience(
    client: httpx.AsyncClient, web: str, registered: None
) -> None:
    flow = Flow.new(web, scope="openid read")
    code = query((await code_naming(client, flow)).headers["location"])["code"]
    assert_oauth_error(await exchange(client, code, flow, resource=MCP), 400, "invalid_target")
    plain = await exchange(client, code, flow)
    assert claims_of(plain.json()["access_token"])["aud"] == DEFAULT_AUDIENCE


@pytest.mark.parametrize(
    "resources",
    [
        ("https://unknown.example/",),
        ("/relative",),
        (MCP + "#fragment",),
        (MCP + "/" + "x" * 3000,),
        (MCP, "https://unknown.example/"),
        tuple(f"https://r{n}.example/" for n in range(11)),  # many
    ],
    ids=["unknown", "relative", "fragment", "huge", "one-unknown", "many"],
)
async def test_a_bad_resource_at_authorize_is_invalid_target_at_the_redirect_uri(
    client: httpx.AsyncClient, web: str, registered: None, resources: tuple[str, ...]
) -> None:
    flow = Flow.new(web)
    params = [*flow.params.items(), *(("resource", r) for r in resources)]
    response = await authorize(client, params)  # type: ignore[arg-type]
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(CALLBACK + "?"), location  # before any sign-in page
    answer = query(location)
    assert answer["error"] == "invalid_target" and answer["state"] == flow.params["state"]


async def test_discovery_says_resource_indicators_are_supported(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        assert (await client.get(path)).json()["resource_indicators_supported"] is True


async def test_a_deleted_resource_gets_no_more_tokens_and_its_tokens_introspect_inactive(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    registered: None,
    service: tuple[str, str],
) -> None:
    issued = (await service_token(client, service, resource=OTHER)).json()["access_token"]
    assert (await client.delete(at(OTHER), headers=admin)).status_code == 204
    assert_oauth_error(await service_token(client, service, resource=OTHER), 400, "invalid_target")
    # Introspection no longer calls its tokens live (services verifying offline accept them
    # until they expire: the resource is gone, no one should be asking).
    assert (await introspect(client, service, issued)) == {"active": False}


async def test_the_verifier_kit_for_one_resource_refuses_tokens_for_another(
    client: httpx.AsyncClient, registered: None, service: tuple[str, str]
) -> None:
    """What RFC 8707 is for: a service set to its own identifier accepts its tokens only, not
    another resource's nor the default audience's (the kit's key set fetched from this app)."""
    jwks = (await client.get("/.well-known/jwks.json")).content
    kit = Verifier(
        ISSUER, MCP, jwks_url=f"{ISSUER}/.well-known/jwks.json",
        fetch=lambda url, headers: Fetched(200, jwks, None, 300),
    )  # fmt: skip
    for_mcp = (await service_token(client, service, resource=MCP)).json()["access_token"]
    assert kit.verify(for_mcp)["aud"] == MCP
    for_files = (await service_token(client, service, resource=FILES)).json()["access_token"]
    plain = (await service_token(client, service)).json()["access_token"]
    for token in (for_files, plain):
        with pytest.raises(WrongAudience):
            kit.verify(token)


async def test_a_tolerated_retry_within_grace_may_name_only_a_granted_resource(
    services: Services, registry: Registry
) -> None:
    """The grace path (a lost answer retried) chooses its resource by the same rule, before
    it spends the live child."""
    await registry.client("app", public=True, grant_types=("password", "refresh_token"),
                          scopes=("read",))  # fmt: skip
    user = await registry.user("alice", "correct horse", scopes=("read",))
    now = services.clock()
    started = await start_family(
        services.families, user_id=user, client_id="app", scope="read", now=now,
        refresh_ttl=3600, session_ttl=7200, resources=(MCP,),
    )  # fmt: skip
    store, token = services.families, started.refresh_token
    retry = functools.partial(rotate, client_id="app", now=now, refresh_ttl=3600, grace=5)
    await retry(store, token, resource=MCP)

    with pytest.raises(InvalidTarget):  # the parent again, within grace, for FILES
        await retry(store, token, resource=FILES)
    retried = await retry(store, token, resource=MCP)
    assert retried.family.resources == (MCP,)

"""The consent page (API.md, "Resource servers, client registration and consent", Consent):
a third-party client (`consent: true`) asks the signed-in user at /authorize; Allow remembers
and issues the code, Deny sends access_denied; asked again only for more, always with
prompt=consent, never with prompt=none (consent_required); the account page revokes. Through
the ASGI app, on both databases."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from authserver.audit import AuditEvent, AuditQuery
from authserver.clients import Client
from authserver.services import Services
from authserver.tokens.resources import Resource
from tests.conftest import ISSUER, Clock, Registry
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    PASSWORD,
    Flow,
    assert_strict_headers,
    authorize,
    code_for,
    csrf_token,
    exchange,
    form_action,
    query,
    sign_in,
    web_client,
)
from tests.http.test_step_up import enrol

THIRD = "calendar"
API = "https://api.example/"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def third_party(
    services: Services,
    name: str = "Calendar",
    redirect_uris: tuple[str, ...] = (CALLBACK,),
    scopes: tuple[str, ...] = ("openid", "profile", "read"),
    require_mfa: bool = False,
) -> None:
    client = Client(
        THIRD, None, ("authorization_code", "refresh_token"), scopes,
        redirect_uris=redirect_uris, client_name=name, consent=True, require_mfa=require_mfa,
    )  # fmt: skip
    assert await services.clients.create(client, services.clock())


@pytest.fixture
async def alice(registry: Registry, services: Services) -> None:
    await registry.user("alice", PASSWORD, scopes=("profile", "read"))
    api = Resource(API, ("read",), 300, services.clock())
    assert await services.resources.create(api, AuditEvent(0, "cli", "resource.created", API))


async def to_consent(http: httpx.AsyncClient, flow: Flow) -> str:
    """/authorize, signing in if asked: where the browser is sent next (the consent page?)."""
    response = await authorize(http, flow.params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    if location.startswith(f"{ISSUER}/login"):
        response = await sign_in(http, location)
        assert response.status_code == 303, response.text
        location = response.headers["location"]
    return location


async def decide(http: httpx.AsyncClient, location: str, decision: str) -> httpx.Response:
    page = await http.get(location)
    assert page.status_code == 200, page.text
    form = {"csrf_token": csrf_token(page.text), "decision": decision}
    return await http.post(form_action(page.text), data=form)


async def allowed_code(http: httpx.AsyncClient, flow: Flow) -> str:
    location = await to_consent(http, flow)
    assert location.startswith(f"{ISSUER}/consent?"), location
    answer = await decide(http, location, "allow")
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith(CALLBACK + "?")
    got = query(answer.headers["location"])
    assert got["state"] == flow.params["state"] and got["iss"] == ISSUER
    return got["code"]


async def actions(services: Services, action: str) -> list[AuditEvent]:
    return await services.audit.page(AuditQuery(action=action))


async def test_a_first_party_client_skips_consent(
    client: httpx.AsyncClient, registry: Registry, alice: None
) -> None:
    await web_client(registry)
    flow = Flow.new(scope="openid profile")
    # code_for: /authorize, the sign-in, and straight back with the code.
    assert (await exchange(client, await code_for(client, flow), flow)).status_code == 200


async def test_allow_issues_the_code_remembers_and_asks_again_only_for_more(
    client: httpx.AsyncClient, services: Services, alice: None
) -> None:
    await third_party(services)
    flow = Flow.new(THIRD, scope="openid profile")
    location = await to_consent(client, flow)
    page = await client.get(location)
    assert page.status_code == 200
    assert_strict_headers(page)
    assert "Calendar" in page.text and "app.example" in page.text
    assert "See your name and profile" in page.text and 'lang="en"' in page.text
    code = await allowed_code(client, flow)
    tokens = await exchange(client, code, flow)
    assert tokens.status_code == 200, tokens.text
    [granted] = await actions(services, "consent.granted")
    assert granted.target == THIRD and granted.detail["scope"] == "openid profile"

    # The same again (single sign-on): no page, the code at once.
    again = Flow.new(THIRD, scope="profile")
    assert (await to_consent(client, again)).startswith(CALLBACK + "?code=")
    # More (a scope, a resource): asked again, for all of it.
    more = Flow.new(THIRD, scope="openid profile read", resource=API)
    location = await to_consent(client, more)
    assert location.startswith(f"{ISSUER}/consent?")
    page = await client.get(location)
    assert "api.example" in page.text and "read" in page.text
    await allowed_code(client, more)
    # The grant widened: the first request's scope and the new resource need no page.
    both = Flow.new(THIRD, scope="openid read", resource=API)
    assert (await to_consent(client, both)).startswith(CALLBACK + "?code=")


async def test_deny_sends_access_denied_and_remembers_nothing(
    client: httpx.AsyncClient, services: Services, alice: None
) -> None:
    await third_party(services)
    flow = Flow.new(THIRD, scope="openid")
    location = await to_consent(client, flow)
    german = await client.get(location, headers={"Accept-Language": "de"})
    assert 'lang="de"' in german.text and "Erlauben" in german.text
    assert "Wissen, wer Sie auf diesem Server sind" in german.text
    answer = await decide(client, location, "deny")
    assert answer.status_code == 303
    got = query(answer.headers["location"])
    assert got["error"] == "access_denied" and got["state"] == flow.params["state"]
    assert [e.target for e in await actions(services, "consent.denied")] == [THIRD]
    assert (await to_consent(client, Flow.new(THIRD, scope="openid"))).startswith(
        f"{ISSUER}/consent?"
    )


async def test_prompt_consent_always_asks_and_prompt_none_never_does(
    client: httpx.AsyncClient, services: Services, alice: None
) -> None:
    await third_party(services)
    # Signed in, nothing allowed yet: prompt=none cannot ask.
    await allowed_code(client, Flow.new(THIRD, scope="openid"))
    none = await authorize(client, Flow.new(THIRD, scope="openid profile", prompt="none").params)
    got = query(none.headers["location"])
    assert got["error"] == "consent_required" and got["iss"] == ISSUER
    # Covered: prompt=none answers with the code.
    covered = await authorize(client, Flow.new(THIRD, scope="openid", prompt="none").params)
    assert "code" in query(covered.headers["location"])
    # prompt=consent asks though the grant covers it, and its Allow issues the code.
    await allowed_code(client, Flow.new(THIRD, scope="openid", prompt="consent"))


async def test_the_form_needs_this_browsers_csrf_token_and_a_decision(
    client: httpx.AsyncClient, services: Services, alice: None
) -> None:
    await third_party(services)
    location = await to_consent(client, Flow.new(THIRD, scope="openid"))
    page = await client.get(location)
    action = form_action(page.text)
    assert (await client.post(action, data={"decision": "allow"})).status_code == 403
    forged = {"csrf_token": "x.y", "decision": "allow"}
    assert (await client.post(action, data=forged)).status_code == 403
    odd = {"csrf_token": csrf_token(page.text), "decision": "maybe"}
    assert (await client.post(action, data=odd)).status_code == 400
    assert await actions(services, "consent.granted") == []
    # Another browser (no login session) posting a page's form: 403, nothing granted.
    transport = client._transport
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as other:
        response = await other.post(action, data={"csrf_token": csrf_token(page.text)})
        assert response.status_code == 403


async def test_revoking_on_the_account_page_ends_the_apps_refresh_tokens(
    client: httpx.AsyncClient, services: Services, alice: None
) -> None:
    await third_party(services)
    flow = Flow.new(THIRD, scope="openid profile")
    tokens = (await exchange(client, await allowed_code(client, flow), flow)).json()
    account = await client.get("/account")
    assert "Apps you allowed" in account.text and "Calendar" in account.text
    assert 'name="client_id" value="calendar"' in account.text
    form = {"csrf_token": csrf_token(account.text), "client_id": THIRD}
    done = await client.post("/account/apps/revoke", data=form)
    assert done.status_code == 303 and done.headers["location"] == "/account?done=app_revoked"
    refreshed = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": THIRD,
        },
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert [e.target for e in await actions(services, "consent.revoked")] == [THIRD]
    # Forgotten: asked again; revoking again is a 404.
    assert (await to_consent(client, Flow.new(THIRD, scope="openid"))).startswith(
        f"{ISSUER}/consent?"
    )
    assert (await client.post("/account/apps/revoke", data=form)).status_code == 404


async def test_the_page_escapes_the_clients_name_scopes_and_redirect_host(
    client: httpx.AsyncClient, services: Services, registry: Registry
) -> None:
    await registry.user("alice", PASSWORD, scopes=("profile", "<img/src=x/onerror=alert(1)>"))
    hostile = "https://a<script>b.example/cb"
    await third_party(
        services,
        name='<script>alert("name")</script>',
        redirect_uris=(hostile,),
        scopes=("openid", "<img/src=x/onerror=alert(1)>"),
    )
    flow = Flow.new(THIRD, scope="openid <img/src=x/onerror=alert(1)>", redirect_uri=hostile)
    location = await to_consent(client, flow)
    page = await client.get(location)
    assert page.status_code == 200, page.text
    assert "<script>alert" not in page.text and "<img" not in page.text
    assert "a<script>b" not in page.text and "a&lt;script&gt;b.example" in page.text
    assert "&lt;script&gt;alert(&#34;name&#34;)&lt;/script&gt;" in page.text
    assert "&lt;img/src=x/onerror=alert(1)&gt;" in page.text


async def test_the_page_needs_a_live_sign_in_and_a_third_party_request(
    client: httpx.AsyncClient, services: Services, registry: Registry, alice: None
) -> None:
    await third_party(services)
    await web_client(registry)
    flow = Flow.new(THIRD, scope="openid")
    await to_consent(client, flow)  # signs in
    location = await to_consent(client, flow)  # single sign-on
    outcomes = [e.detail["outcome"] for e in await actions(services, "authorize")]
    assert outcomes == ["consent", "sign_in"]
    # Another browser, not signed in, opening the page: the sign-in, the request carried on.
    transport = client._transport
    async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as other:
        page = await other.get(location)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/login?") and THIRD in page.headers["location"]
    # A first-party client's request, or none at all: an error page, nothing to allow.
    first_party = await client.get("/consent", params=Flow.new(scope="openid").params)
    assert first_party.status_code == 400
    assert (await client.get("/consent")).status_code == 400
    # A request gone bad on the way (a scope the client may not have): back to the client.
    bad = await client.get("/consent", params={**flow.params, "scope": "admin"})
    assert bad.status_code == 302 and query(bad.headers["location"])["error"] == "invalid_scope"


async def test_deleting_the_user_or_the_client_forgets_the_grants(
    client: httpx.AsyncClient, services: Services, registry: Registry, alice: None
) -> None:
    await third_party(services)
    await allowed_code(client, Flow.new(THIRD, scope="openid"))
    alice_id = (await services.users.by_username("alice")).id  # type: ignore[union-attr]
    assert [grant.client_id for grant in await services.consents.grants(alice_id)] == [THIRD]
    bob = await registry.user("bob", PASSWORD)
    now = services.clock()
    await services.consents.allow(bob, THIRD, ["openid"], [], now, AuditEvent(now, bob, "x", THIRD))
    assert await services.users.delete(alice_id, now, [])
    assert await services.consents.grants(alice_id) == []
    assert [grant.client_id for grant in await services.consents.grants(bob)] == [THIRD]
    assert await services.clients.delete(
        THIRD, now, AuditEvent(now, "cli", "client.deleted", THIRD)
    )
    assert await services.consents.grants(bob) == []


async def test_allows_at_the_same_moment_all_count(
    services: Services, registry: Registry, alice: None
) -> None:
    """The grant widens in the database (one upsert), not by a read in Python: ten tabs
    allowing a scope each at once leave all ten remembered."""
    await third_party(services)
    user = await services.users.by_username("alice")
    assert user is not None
    now = services.clock()

    async def allow(scope: str) -> None:
        event = AuditEvent(now, user.id, "consent.granted", THIRD)
        await services.consents.allow(user.id, THIRD, [scope], [], now, event)

    scopes = [f"s{number}" for number in range(10)]
    await asyncio.gather(*(allow(scope) for scope in scopes))
    held = await services.consents.held(user.id, THIRD)
    assert held is not None and held.scopes == frozenset(scopes)


@pytest.mark.parametrize(
    ("asks", "require_mfa", "then"),
    [
        ({"acr_values": "mfa"}, False, "/login/factor?"),
        ({}, True, "/login/factor?"),
        ({"max_age": "60"}, False, "/login?"),
        ({"prompt": "login"}, False, "/login?"),
    ],
    ids=["acr_values", "require_mfa", "max_age", "prompt_login"],
)
async def test_the_page_reached_directly_asks_what_authorize_would(
    client: httpx.AsyncClient, services: Services, registry: Registry, clock: Clock,
    alice: None, asks: dict[str, str], require_mfa: bool, then: str,
) -> None:  # fmt: skip
    """A /consent URL made by hand, not by /authorize, for a request /authorize would have
    stepped up (a second factor, a fresher sign-in): the page and its Allow send the browser
    where /authorize would, never a code for the weaker session."""
    await third_party(services, require_mfa=require_mfa)
    await web_client(registry)
    await code_for(client, Flow.new(scope="openid"))  # a password-only login session
    await enrol(services)  # ... and then alice added a factor
    token = csrf_token((await client.get("/account")).text)
    clock.advance(120)
    crafted = Flow.new(THIRD, scope="openid", **asks)
    page = await client.get("/consent", params=crafted.params)
    assert page.status_code == 303 and page.headers["location"].startswith(then), page.text
    allowed = await client.post(
        "/consent", params=crafted.params, data={"csrf_token": token, "decision": "allow"}
    )
    assert allowed.status_code == 303 and allowed.headers["location"].startswith(then)
    assert await actions(services, "consent.granted") == []


async def test_a_sign_in_asked_now_is_not_asked_again_at_allow(
    client: httpx.AsyncClient, services: Services, alice: None
) -> None:
    """prompt=login and max_age=0 ask for a sign-in at /authorize; the consent page after it
    does not send the Allow back to sign in once more (the sign-in was just made)."""
    await third_party(services)
    await allowed_code(client, Flow.new(THIRD, scope="openid", prompt="login"))
    await allowed_code(client, Flow.new(THIRD, scope="openid profile", max_age="0"))

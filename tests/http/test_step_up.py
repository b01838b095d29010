"""What access tokens say of the sign-in (RFC 9068 §2.2.1: amr, acr, auth_time, kept across
refreshes) and step-up at /authorize (`acr_values=mfa`, `max_age`), through real HTTP on both
databases, with codes from pyotp."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pyotp
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authserver.accounts.second_factors import STEP_SECONDS, new_totp_secret, seal_totp
from authserver.services import Services
from authserver_verify import Fetched, Verifier
from authserver_verify.starlette import BearerAuthMiddleware, require_authentication
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error, password_login
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    PASSWORD,
    WEB,
    Flow,
    admin_headers,
    authorize,
    code_for,
    csrf_token,
    exchange,
    form_action,
    hidden_fields,
    query,
    sign_in,
    web_client,
)
from tests.http.test_oidc import verified_id_token
from tests.http.test_second_factor_sign_in import code_now, password_step, post_code
from tests.http.test_second_factor_sign_in import secret as secret  # the fixture


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def refreshed(http: httpx.AsyncClient, refresh_token: str) -> dict[str, Any]:
    response = await http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": WEB},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sign_in_claims(services: Services, access_token: str) -> dict[str, Any]:
    claims = services.verify(access_token)
    return {name: claims.get(name) for name in ("amr", "acr", "auth_time")}


async def test_access_tokens_say_how_the_user_signed_in_and_a_refresh_keeps_it(
    client: httpx.AsyncClient, secret: str, clock: Clock, services: Services
) -> None:
    flow = Flow.new(WEB)
    signed_in_at = clock.now
    answered = await password_step(client, flow)
    clock.advance(20)
    done = await post_code(client, answered.headers["location"], code_now(secret, clock))
    tokens = (await exchange(client, query(done.headers["location"])["code"], flow)).json()
    expected = {"amr": ["pwd", "otp", "mfa"], "acr": "mfa", "auth_time": signed_in_at + 20}
    assert sign_in_claims(services, tokens["access_token"]) == expected

    clock.advance(600)
    again = await refreshed(client, tokens["refresh_token"])
    assert sign_in_claims(services, again["access_token"]) == expected  # not the refresh's time
    clock.advance(600)
    third = await refreshed(client, again["refresh_token"])
    assert sign_in_claims(services, third["access_token"]) == expected


async def test_a_password_sign_in_says_pwd_and_the_password_grant_says_nothing(
    client: httpx.AsyncClient, registry: Registry, clock: Clock, services: Services
) -> None:
    await web_client(registry)
    await registry.user("bob", "correct horse")
    flow = Flow.new(WEB)
    code = await code_for(client, flow, "bob")
    tokens = (await exchange(client, code, flow)).json()
    expected = {"amr": ["pwd"], "acr": "pwd", "auth_time": clock.now}
    assert sign_in_claims(services, tokens["access_token"]) == expected
    again = await refreshed(client, tokens["refresh_token"])
    assert sign_in_claims(services, again["access_token"]) == expected

    # The password grant is no browser sign-in: its tokens carry none of the three.
    await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
    grant = (await password_login(client, "bob")).json()
    assert sign_in_claims(services, grant["access_token"]) == {
        "amr": None, "acr": None, "auth_time": None
    }  # fmt: skip


async def enrol(services: Services, username: str = "alice") -> str:
    """Enrols an authenticator app for the user, as the account page does; its secret."""
    user = await services.users.by_username(username)
    assert user is not None
    secret, factor_id = new_totp_secret(), str(uuid.uuid4())
    sealed = seal_totp(services.factor_sealer, factor_id, secret)
    step = services.clock() // STEP_SECONDS - 10
    assert await services.second_factors.add_totp(factor_id, user.id, sealed, step, 0)
    return secret


@pytest.fixture
async def pwd_session(client: httpx.AsyncClient, registry: Registry, services: Services) -> str:
    """alice signed in with the password alone, then enrolled an authenticator app: her
    browser holds a `pwd` session, she has a factor to step it up with (its secret)."""
    await web_client(registry)
    await registry.user("alice", PASSWORD)
    await code_for(client, Flow.new(WEB))
    return await enrol(services)


async def test_acr_values_mfa_asks_a_pwd_session_only_for_the_code(
    client: httpx.AsyncClient, pwd_session: str, clock: Clock, services: Services
) -> None:
    """The app asks acr_values=mfa of a browser signed in with the password: the user gives
    only the TOTP code (no password form), and the token says acr=mfa, amr with otp and mfa."""
    signed_in_at = clock.now
    clock.advance(120)
    flow = Flow.new(WEB, scope="openid", acr_values="mfa")
    asked = await authorize(client, flow.params)
    assert asked.status_code == 302
    location = asked.headers["location"]
    assert location.startswith(f"{ISSUER}/login/factor?"), location
    old_cookie = client.cookies["authserver_session"]

    clock.advance(10)
    done = await post_code(client, location, code_now(pwd_session, clock))
    assert done.status_code == 303, done.text
    answer = query(done.headers["location"])
    assert done.headers["location"].startswith(CALLBACK + "?")
    assert answer["state"] == flow.params["state"]
    # A new cookie for the stronger session; the old one names nothing now.
    assert client.cookies["authserver_session"] != old_cookie

    tokens = (await exchange(client, answer["code"], flow)).json()
    claims = sign_in_claims(services, tokens["access_token"])
    assert claims == {"amr": ["pwd", "otp", "mfa"], "acr": "mfa", "auth_time": clock.now}
    id_token = await verified_id_token(client, tokens["id_token"])
    assert (id_token["acr"], id_token["auth_time"]) == ("mfa", clock.now)
    assert clock.now != signed_in_at

    # The session is stronger now: the next request for mfa is answered at once.
    again = Flow.new(WEB, acr_values="mfa")
    sso = await authorize(client, again.params)
    assert sso.headers["location"].startswith(CALLBACK + "?"), sso.headers["location"]
    later = (await exchange(client, query(sso.headers["location"])["code"], again)).json()
    assert sign_in_claims(services, later["access_token"])["acr"] == "mfa"
    # ... and the stepped-up session's old cookie signs nothing in.
    stale = browser_with(client, old_cookie)
    old = await authorize(stale, Flow.new(WEB).params)
    assert old.headers["location"].startswith(f"{ISSUER}/login?")


def browser_with(client: httpx.AsyncClient, session_cookie: str | None) -> httpx.AsyncClient:
    """Another browser of the same app, holding `session_cookie` as its login session's."""
    other = httpx.AsyncClient(transport=client._transport, base_url=ISSUER)
    if session_cookie is not None:
        other.cookies.set("authserver_session", session_cookie)
    return other


async def test_a_wrong_code_at_step_up_is_refused_and_the_session_stays_pwd(
    client: httpx.AsyncClient, pwd_session: str, services: Services
) -> None:
    location = (await authorize(client, Flow.new(WEB, acr_values="mfa").params)).headers["location"]
    wrong = await post_code(client, location, "000000")
    assert wrong.status_code == 400
    # Without the factor, a request that does not insist still gets the pwd session.
    flow = Flow.new(WEB)
    code = await code_for(client, flow)
    tokens = (await exchange(client, code, flow)).json()
    assert sign_in_claims(services, tokens["access_token"])["acr"] == "pwd"


async def test_prompt_none_answers_interaction_required_to_a_weak_session(
    client: httpx.AsyncClient, pwd_session: str
) -> None:
    flow = Flow.new(WEB, acr_values="mfa", prompt="none")
    answer = query((await authorize(client, flow.params)).headers["location"])
    assert answer["error"] == "interaction_required" and answer["state"] == flow.params["state"]


async def test_acr_values_naming_pwd_too_asks_for_nothing(
    client: httpx.AsyncClient, pwd_session: str
) -> None:
    flow = Flow.new(WEB, acr_values="pwd mfa")
    location = (await authorize(client, flow.params)).headers["location"]
    assert location.startswith(CALLBACK + "?"), location


async def test_max_age_past_asks_for_the_password_and_the_factor(
    client: httpx.AsyncClient, pwd_session: str, clock: Clock, services: Services
) -> None:
    clock.advance(600)
    flow = Flow.new(WEB, acr_values="mfa", max_age="300")
    location = (await authorize(client, flow.params)).headers["location"]
    assert location.startswith(f"{ISSUER}/login?"), location  # the password first
    answered = await sign_in(client, location)
    assert answered.headers["location"].startswith("/login/factor?")
    done = await post_code(client, answered.headers["location"], code_now(pwd_session, clock))
    tokens = (await exchange(client, query(done.headers["location"])["code"], flow)).json()
    claims = sign_in_claims(services, tokens["access_token"])
    assert claims == {"amr": ["pwd", "otp", "mfa"], "acr": "mfa", "auth_time": clock.now}


async def test_max_age_within_asks_only_for_the_factor_and_then_counts_from_it(
    client: httpx.AsyncClient, pwd_session: str, clock: Clock, services: Services
) -> None:
    clock.advance(200)
    flow = Flow.new(WEB, acr_values="mfa", max_age="300")
    location = (await authorize(client, flow.params)).headers["location"]
    assert location.startswith(f"{ISSUER}/login/factor?"), location
    await post_code(client, location, code_now(pwd_session, clock))
    # auth_time is the factor's now: 250 s after it, max_age=300 holds, 400 s after not.
    clock.advance(250)
    assert (
        (await authorize(client, Flow.new(WEB, max_age="300").params))
        .headers["location"]
        .startswith(CALLBACK + "?")
    )
    clock.advance(150)
    assert (
        (await authorize(client, Flow.new(WEB, max_age="300").params))
        .headers["location"]
        .startswith(f"{ISSUER}/login?")
    )


async def test_a_user_without_a_factor_asked_for_mfa_signs_in_with_pwd(
    client: httpx.AsyncClient, registry: Registry, services: Services
) -> None:
    """acr_values is voluntary (OpenID Connect Core §3.1.2.1): the app sees acr=pwd."""
    await web_client(registry)
    await registry.user("bob", PASSWORD)
    flow = Flow.new(WEB, acr_values="mfa")
    code = await code_for(client, flow, "bob")
    tokens = (await exchange(client, code, flow)).json()
    assert sign_in_claims(services, tokens["access_token"])["acr"] == "pwd"
    # With a session already, the same: no factor page for a user with nothing to give.
    again = Flow.new(WEB, acr_values="mfa")
    assert (await authorize(client, again.params)).headers["location"].startswith(CALLBACK)


async def test_the_factor_page_without_a_session_to_step_up_sends_to_the_password(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry)
    query_string = "?" + "&".join(f"{k}={v}" for k, v in Flow.new(WEB).params.items())
    page = await client.get("/login/factor" + query_string)
    assert page.status_code == 303 and page.headers["location"].startswith("/login?")


async def test_a_service_protected_by_the_kit_challenges_a_pwd_token_and_takes_the_stepped_up_one(
    client: httpx.AsyncClient, pwd_session: str, clock: Clock, services: Services
) -> None:
    """The whole round: the service answers RFC 9470's challenge to the pwd token, the app
    sends the acr_values it names to /authorize, the user gives the code, the service accepts."""
    jwks = (await client.get("/.well-known/jwks.json")).content
    verifier = Verifier(
        ISSUER, services.settings.audience, jwks_url=f"{ISSUER}/.well-known/jwks.json",
        fetch=lambda url, headers: Fetched(200, jwks, None, 300), clock=clock,
    )  # fmt: skip

    @require_authentication(acr=("mfa",), max_age=600, clock=clock)
    async def pay(request: Request) -> Response:
        return JSONResponse({"paid": request.state.claims["sub"]})

    service = Starlette(
        routes=[Route("/payments", pay, methods=["POST"])],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier)],
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=service), base_url="https://payments.example"
    ) as payments:
        flow = Flow.new(WEB)
        weak = (await exchange(client, await code_for(client, flow), flow)).json()
        refused = await payments.post("/payments", headers=bearer(weak["access_token"]))
        assert refused.status_code == 401
        challenge = refused.headers["www-authenticate"]
        assert challenge == 'Bearer error="insufficient_user_authentication", acr_values="mfa"'

        stepped = Flow.new(WEB, acr_values=challenge.split('acr_values="')[1].rstrip('"'))
        location = (await authorize(client, stepped.params)).headers["location"]
        done = await post_code(client, location, code_now(pwd_session, clock))
        strong = (await exchange(client, query(done.headers["location"])["code"], stepped)).json()
        accepted = await payments.post("/payments", headers=bearer(strong["access_token"]))
        assert accepted.status_code == 200, accepted.text

        # Ten minutes on, the sign-in is too old for the route: max_age is named.
        clock.advance(601)
        fresh = (await refreshed(client, strong["refresh_token"]))["access_token"]
        old = await payments.post("/payments", headers=bearer(fresh))
        assert old.status_code == 401 and 'max_age="600"' in old.headers["www-authenticate"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- clients registered with require_mfa, and AUTHSERVER_ADMIN_REQUIRES_MFA -------------------


async def test_require_mfa_is_registered_shown_and_refused_with_the_password_grant(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.client("spa", public=True, grant_types=("password",), scopes=("admin",))
    admin = await admin_headers(client, registry)
    body = {
        "client_id": "bank", "public": True, "grant_types": ["authorization_code"],
        "redirect_uris": [CALLBACK], "require_mfa": True,
    }  # fmt: skip
    created = await client.post("/admin/clients", json=body, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["require_mfa"] is True
    shown = (await client.get("/admin/clients/bank", headers=admin)).json()
    assert shown["require_mfa"] is True
    refused = await client.patch(
        "/admin/clients/bank", json={"grant_types": ["password"]}, headers=admin
    )
    assert_oauth_error(refused, 400, "invalid_request")
    assert "require_mfa" in refused.json()["error_description"]
    off = await client.patch("/admin/clients/bank", json={"require_mfa": False}, headers=admin)
    assert off.status_code == 200 and off.json()["require_mfa"] is False
    plain = await client.post(
        "/admin/clients", json={**body, "client_id": "plain", "require_mfa": None}, headers=admin
    )
    assert_oauth_error(plain, 400, "invalid_request")  # true or false, nothing else


async def test_a_require_mfa_client_steps_a_pwd_session_up_and_refuses_a_user_without_a_factor(
    client: httpx.AsyncClient, pwd_session: str, registry: Registry, clock: Clock,
    services: Services,
) -> None:  # fmt: skip
    await web_client(registry, "bank", require_mfa=True)
    # alice's pwd session: asked for the code only, though the request does not ask for mfa.
    flow = Flow.new("bank")
    location = (await authorize(client, flow.params)).headers["location"]
    assert location.startswith(f"{ISSUER}/login/factor?"), location
    none = query((await authorize(client, {**flow.params, "prompt": "none"})).headers["location"])
    assert none["error"] == "interaction_required"
    done = await post_code(client, location, code_now(pwd_session, clock))
    tokens = (await exchange(client, query(done.headers["location"])["code"], flow)).json()
    assert sign_in_claims(services, tokens["access_token"])["acr"] == "mfa"

    # bob has no factor: back to the app with access_denied, saying why.
    await registry.user("bob", PASSWORD)
    bob = browser_with(client, None)
    bobs = Flow.new("bank")
    login = (await authorize(bob, bobs.params)).headers["location"]
    answered = await sign_in(bob, login, "bob")
    answer = query(answered.headers["location"])
    assert answered.headers["location"].startswith(CALLBACK + "?")
    assert answer["error"] == "access_denied" and answer["state"] == bobs.params["state"]
    assert "two-step verification" in answer["error_description"]
    assert "code" not in answer
    # Another client of his goes on as before.
    assert "code" in query((await authorize(bob, Flow.new(WEB).params)).headers["location"])


@pytest.mark.parametrize("settings_overrides", [{**INSECURE_COOKIES, "admin_requires_mfa": "true"}])
async def test_admin_requires_mfa_takes_a_users_admin_token_only_from_a_second_factor_sign_in(
    client: httpx.AsyncClient, registry: Registry, clock: Clock, services: Services
) -> None:
    # The password grant's admin token: no second factor, RFC 9470's answer.
    await registry.client("spa", public=True, grant_types=("password",), scopes=("admin",))
    weak = await admin_headers(client, registry)
    refused = await client.get("/admin/clients", headers=weak)
    assert_oauth_error(refused, 401, "insufficient_user_authentication")
    assert refused.headers["www-authenticate"] == (
        'Bearer realm="authserver", error="insufficient_user_authentication", acr_values="mfa"'
    )

    # root signs in through the page with an authenticator app: the admin API takes it.
    await web_client(registry, scopes=("openid", "admin"))
    secret = await enrol(services, "root")
    flow = Flow.new(WEB, scope="admin", acr_values="mfa")
    location = (await authorize(client, flow.params)).headers["location"]
    answered = await sign_in(client, location, "root")
    done = await post_code(client, answered.headers["location"], code_now(secret, clock))
    strong = (await exchange(client, query(done.headers["location"])["code"], flow)).json()
    listed = await client.get("/admin/clients", headers=bearer(strong["access_token"]))
    assert listed.status_code == 200, listed.text

    # A client's own admin token is no user's: not affected.
    machine = await registry.client("ops", scopes=("admin",))
    own = await client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "admin"},
        auth=("ops", machine or ""),
    )  # fmt: skip
    assert (
        await client.get("/admin/clients", headers=bearer(own.json()["access_token"]))
    ).status_code == 200


# --- AUTHSERVER_MFA=required: every user enrols at their next sign-in -------------------------

MFA_REQUIRED = {**INSECURE_COOKIES, "mfa": "required"}


@pytest.mark.parametrize("settings_overrides", [MFA_REQUIRED])
async def test_mfa_required_has_a_user_without_a_factor_add_one_before_signing_in(
    client: httpx.AsyncClient, registry: Registry, clock: Clock, services: Services
) -> None:
    await web_client(registry)
    await registry.user("alice", PASSWORD)
    flow = Flow.new(WEB, scope="openid", prompt="login")
    login = (await authorize(client, flow.params)).headers["location"]
    answered = await sign_in(client, login)
    assert answered.status_code == 303
    assert answered.headers["location"] == "/login/enrol?" + login.split("?", 1)[1]
    assert "authserver_session=" not in answered.headers.get("set-cookie", "")

    page = await client.get(answered.headers["location"])
    assert page.status_code == 200, page.text
    assert "<svg" in page.text and 'name="enrolment"' in page.text
    secret = re.search(r'<code id="secret">([A-Z2-7 ]+)</code>', page.text)
    assert secret is not None
    key = secret.group(1).replace(" ", "")
    form = {**hidden_fields(page.text), "code": "000000"}
    wrong = await client.post(form_action(page.text), data=form)
    assert wrong.status_code == 400 and 'name="enrolment"' in wrong.text

    form = {**hidden_fields(wrong.text), "code": pyotp.TOTP(key).at(clock())}
    done = await client.post(form_action(wrong.text), data=form)
    assert done.status_code == 200, done.text
    assert len(re.findall(r"<li><code>", done.text)) == 10  # the recovery codes, once
    assert "authserver_session=" in done.headers["set-cookie"]
    onwards = re.search(r'<a href="(/authorize\?[^"]+)">', done.text)
    assert onwards is not None
    # "Continue": the request again, less prompt=login, answered by the new session.
    again = await client.get(onwards.group(1).replace("&amp;", "&"))
    assert again.status_code == 302 and again.headers["location"].startswith(CALLBACK + "?")
    answer = query(again.headers["location"])
    assert answer["state"] == flow.params["state"]
    tokens = (await exchange(client, answer["code"], flow)).json()
    claims = sign_in_claims(services, tokens["access_token"])
    assert claims == {"amr": ["pwd", "otp", "mfa"], "acr": "mfa", "auth_time": clock.now}

    # From now on alice signs in with the password and the app's code.
    other = browser_with(client, None)
    second = await sign_in(
        other, (await authorize(other, Flow.new(WEB).params)).headers["location"]
    )
    assert second.headers["location"].startswith("/login/factor?")


@pytest.mark.parametrize("settings_overrides", [MFA_REQUIRED])
async def test_mfa_required_refuses_the_password_grant_and_a_setup_page_without_a_sign_in(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await registry.client("spa", public=True, grant_types=("password",))
    await registry.user("bob", PASSWORD)
    assert_oauth_error(await password_login(client, "bob", PASSWORD), 400, "invalid_grant")
    page = await client.get("/login/enrol")
    assert page.status_code == 303 and page.headers["location"] == "/login"
    posted = await client.post("/login/enrol", data={"code": "123456"})
    assert posted.status_code == 403


async def test_a_step_up_form_needs_its_csrf_token_bound_to_the_session(
    client: httpx.AsyncClient, pwd_session: str, clock: Clock, registry: Registry
) -> None:
    location = (await authorize(client, Flow.new(WEB, acr_values="mfa").params)).headers["location"]
    page = await client.get(location)
    token = csrf_token(page.text)
    code = code_now(pwd_session, clock)
    # Another browser (bob's session) posting alice's page's token: refused, nothing spent.
    await registry.user("bob", PASSWORD)
    bob = browser_with(client, None)
    await code_for(bob, Flow.new(WEB), "bob")
    bob.cookies.set("authserver_csrf", client.cookies["authserver_csrf"])
    forged = await bob.post(form_action(page.text), data={"csrf_token": token, "code": code})
    assert forged.status_code == 403
    # Another site's Origin: refused too.
    hostile = {"Origin": "https://evil.example"}
    crossed = await client.post(
        form_action(page.text), data={"csrf_token": token, "code": code}, headers=hostile
    )
    assert crossed.status_code == 403
    # The code is still good for alice's own post.
    done = await client.post(form_action(page.text), data={"csrf_token": token, "code": code})
    assert done.status_code == 303 and done.headers["location"].startswith(CALLBACK + "?")


async def test_a_malformed_post_to_the_setup_page_is_answered_as_a_page(
    client: httpx.AsyncClient,
) -> None:
    # Found by tests/http/test_schemathesis.py: a person's page answers with a page, not JSON.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await client.post("/login/enrol", content="a=1&a=2", headers=form)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")

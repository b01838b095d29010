"""The sign-in page's second step (actions/sign_in_steps.py): a user with an authenticator app
is asked for its code after the password, through real HTTP on both databases, with codes from
pyotp. Enrolment goes through the store here (the account page's enrolment comes later). Ten
sign-ins racing with one code: tests/races/test_second_factor_race.py, on two instances."""

from __future__ import annotations

import uuid

import httpx
import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.second_factors import (
    STEP_SECONDS,
    new_recovery_codes,
    new_totp_secret,
    recovery_code_hash,
    seal_totp,
)
from authserver.http.sign_in import WRONG_CODE
from authserver.services import Services
from authserver.throttle import username_bucket
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error, password_login
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    PASSWORD,
    WEB,
    Flow,
    admin_headers,
    authorize,
    csrf_token,
    exchange,
    form_action,
    last_sign_in,
    query,
    sign_in,
    web_client,
)
from tests.http.test_oidc import verified_id_token


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def secret(registry: Registry, services: Services) -> str:
    """alice, with an authenticator app enrolled (its secret) and the web client."""
    await web_client(registry)
    user_id = await registry.user("alice", PASSWORD)
    secret = new_totp_secret()
    factor_id = str(uuid.uuid4())
    sealed = seal_totp(services.factor_sealer, factor_id, secret)
    step = services.clock() // STEP_SECONDS - 10  # enrolled a while ago
    assert await services.second_factors.add_totp(factor_id, user_id, sealed, step, 0)
    return secret


def code_now(secret: str, clock: Clock) -> str:
    return pyotp.TOTP(secret).at(clock())


async def password_step(http: httpx.AsyncClient, flow: Flow) -> httpx.Response:
    """/authorize, the password form: the answer sends the browser to the second step."""
    response = await authorize(http, flow.params)
    login = response.headers["location"]
    answered = await sign_in(http, login)
    assert answered.status_code == 303, answered.text
    assert answered.headers["location"] == "/login/factor?" + login.split("?", 1)[1]
    return answered


async def factor_page(http: httpx.AsyncClient, location: str) -> httpx.Response:
    page = await http.get(location)
    assert page.status_code == 200, page.text
    assert 'name="code"' in page.text and 'autocomplete="one-time-code"' in page.text
    return page


async def post_code(http: httpx.AsyncClient, location: str, code: str) -> httpx.Response:
    page = await factor_page(http, location)
    form = {"csrf_token": csrf_token(page.text), "code": code}
    return await http.post(form_action(page.text), data=form)


def browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Another browser of the same app: its own cookies."""
    return httpx.AsyncClient(transport=client._transport, base_url=ISSUER)


async def test_the_password_alone_starts_no_session_and_the_code_completes_the_request(
    client: httpx.AsyncClient, secret: str, clock: Clock
) -> None:
    flow = Flow.new(WEB)
    answered = await password_step(client, flow)
    assert "authserver_session" not in answered.headers.get("set-cookie", "")
    assert "authserver_pending=" in answered.headers["set-cookie"]

    done = await post_code(client, answered.headers["location"], code_now(secret, clock))
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert location.startswith(CALLBACK + "?") and query(location)["state"] == flow.params["state"]
    assert "authserver_session=" in done.headers.get("set-cookie", "")
    tokens = await exchange(client, query(location)["code"], flow)
    assert tokens.status_code == 200, tokens.text


async def test_the_code_not_the_password_alone_is_the_users_last_sign_in(
    client: httpx.AsyncClient, secret: str, clock: Clock, registry: Registry, spa: str
) -> None:
    async with browser(client) as admin:
        root = await admin_headers(admin, registry)
    alice = (await registry.services.users.by_username("alice")).id  # type: ignore[union-attr]
    answered = await password_step(client, Flow.new(WEB))
    assert await last_sign_in(client, root, alice) is None
    clock.advance(5)
    done = await post_code(client, answered.headers["location"], code_now(secret, clock))
    assert done.status_code == 303, done.text
    assert await last_sign_in(client, root, alice) == clock()


async def test_a_pending_sign_in_is_no_session_for_single_sign_on_or_the_account_page(
    client: httpx.AsyncClient, secret: str
) -> None:
    await password_step(client, Flow.new(WEB))
    again = await authorize(client, Flow.new(WEB).params)
    assert again.headers["location"].startswith(f"{ISSUER}/login?")  # asked to sign in
    account = await client.get("/account")
    assert account.status_code in (302, 303) and "/login" in account.headers["location"]
    # Nor does its cookie sign in when sent as the login session's.
    pending = client.cookies["authserver_pending"]
    client.cookies.set("authserver_session", pending)
    sso = await authorize(client, Flow.new(WEB).params)
    assert sso.headers["location"].startswith(f"{ISSUER}/login?")


async def test_a_wrong_code_is_refused_counted_and_audited(
    client: httpx.AsyncClient, secret: str, engine: AsyncEngine
) -> None:
    answered = await password_step(client, Flow.new(WEB))
    wrong = await post_code(client, answered.headers["location"], "000000")
    assert wrong.status_code == 400 and WRONG_CODE in wrong.text
    assert "authserver_session=" not in wrong.headers.get("set-cookie", "")
    async with engine.connect() as conn:
        actions = (await conn.execute(text("SELECT action FROM audit_events"))).scalars().all()
        failures = (
            await conn.execute(
                text("SELECT failures FROM login_throttle WHERE bucket = :b"),
                {"b": username_bucket("alice")},
            )
        ).scalar()
    assert "login.second_factor_failed" in actions
    assert failures == 1


async def test_wrong_codes_share_the_password_budget_and_a_right_password_clears_nothing(
    client: httpx.AsyncClient, secret: str, clock: Clock
) -> None:
    location = (await password_step(client, Flow.new(WEB))).headers["location"]
    for _ in range(5):  # the username's free failures (throttle.USERNAME)
        assert (await post_code(client, location, "000000")).status_code == 400
    # The password again is right, but only a step: the count stays.
    location = (await password_step(client, Flow.new(WEB))).headers["location"]
    assert (await post_code(client, location, "000000")).status_code == 400  # the sixth
    blocked = await post_code(client, location, code_now(secret, clock))
    assert blocked.status_code == 429 and "retry-after" in blocked.headers


async def test_a_code_is_accepted_once(
    client: httpx.AsyncClient, secret: str, clock: Clock
) -> None:
    code = code_now(secret, clock)
    first = await post_code(
        client, (await password_step(client, Flow.new(WEB))).headers["location"], code
    )
    assert first.status_code == 303 and first.headers["location"].startswith(CALLBACK)
    async with browser(client) as other:
        location = (await password_step(other, Flow.new(WEB))).headers["location"]
        replayed = await post_code(other, location, code)
        assert replayed.status_code == 400 and WRONG_CODE in replayed.text


async def test_a_recovery_code_signs_in_once(
    client: httpx.AsyncClient, secret: str, services: Services
) -> None:
    user = await services.users.by_username("alice")
    assert user is not None
    codes = new_recovery_codes()
    hashes = [str(recovery_code_hash(c)) for c in codes]
    await services.second_factors.replace_recovery_codes(user.id, hashes, 0)
    location = (await password_step(client, Flow.new(WEB))).headers["location"]
    used = await post_code(client, location, codes[3].upper())
    assert used.status_code == 303 and used.headers["location"].startswith(CALLBACK)
    async with browser(client) as other:
        location = (await password_step(other, Flow.new(WEB))).headers["location"]
        again = await post_code(other, location, codes[3])
        assert again.status_code == 400 and WRONG_CODE in again.text


@pytest.mark.parametrize("code", ["abcdef", "12 34 5", "0" * 10_000, "<script>", "\u0663" * 6, ""])
async def test_hostile_codes_get_the_page_again(
    client: httpx.AsyncClient, secret: str, code: str
) -> None:
    location = (await password_step(client, Flow.new(WEB))).headers["location"]
    answered = await post_code(client, location, code)
    assert answered.status_code == 400 and answered.headers["content-type"].startswith("text/html")
    # Past the longest field any form takes (http/forms.py), the error page says so instead.
    assert WRONG_CODE in answered.text or len(code) > 1000
    assert "<script>" not in answered.text


async def test_the_code_form_needs_its_csrf_token_and_the_pending_cookie(
    client: httpx.AsyncClient, secret: str, clock: Clock
) -> None:
    location = (await password_step(client, Flow.new(WEB))).headers["location"]
    page = await factor_page(client, location)
    code = code_now(secret, clock)
    missing = await client.post(form_action(page.text), data={"code": code})
    assert missing.status_code == 403
    foreign = await client.post(
        form_action(page.text),
        data={"code": code, "csrf_token": csrf_token(page.text)},
        headers={"origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    async with browser(client) as other:  # another browser, without the pending sign-in
        other.cookies.set("authserver_csrf", client.cookies["authserver_csrf"])
        stolen = await other.post(
            form_action(page.text), data={"code": code, "csrf_token": csrf_token(page.text)}
        )
        assert stolen.status_code == 403
    # The form is still good in its own browser.
    done = await client.post(
        form_action(page.text), data={"code": code, "csrf_token": csrf_token(page.text)}
    )
    assert done.status_code == 303 and done.headers["location"].startswith(CALLBACK)


async def test_a_pending_sign_in_expires_after_five_minutes(
    client: httpx.AsyncClient, secret: str, clock: Clock
) -> None:
    location = (await password_step(client, Flow.new(WEB))).headers["location"]
    page = await factor_page(client, location)
    clock.advance(301)
    late = await client.post(
        form_action(page.text),
        data={"code": code_now(secret, clock), "csrf_token": csrf_token(page.text)},
    )
    assert late.status_code == 303 and late.headers["location"].startswith("/login?")
    assert (await client.get(location)).headers["location"].startswith("/login?")


async def test_the_password_grant_refuses_a_user_with_a_second_factor(
    client: httpx.AsyncClient, secret: str, registry: Registry
) -> None:
    await registry.client("spa", public=True, grant_types=("password", "refresh_token"))
    assert_oauth_error(await password_login(client, "alice", PASSWORD), 400, "invalid_grant")
    await registry.user("bob", PASSWORD)
    assert (await password_login(client, "bob", PASSWORD)).status_code == 200


async def test_the_id_token_says_two_factors_were_used(
    client: httpx.AsyncClient, secret: str, clock: Clock
) -> None:
    flow = Flow.new(WEB, scope="openid profile")
    answered = await password_step(client, flow)
    done = await post_code(client, answered.headers["location"], code_now(secret, clock))
    tokens = await exchange(client, query(done.headers["location"])["code"], flow)
    claims = await verified_id_token(client, tokens.json()["id_token"])
    # RFC 8176 §2: "otp" a one-time password, "mfa" more than one factor; acr as API.md says.
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "mfa"
    assert claims["auth_time"] == clock.now
    # Single sign-on from that session says the same.
    again = Flow.new(WEB, scope="openid")
    sso = await authorize(client, again.params)
    code = query(sso.headers["location"])["code"]
    claims = await verified_id_token(
        client, (await exchange(client, code, again)).json()["id_token"]
    )
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "mfa"

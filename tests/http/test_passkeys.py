"""Passkeys through HTTP on both databases, with real WebAuthn crypto (tests/_webauthn.py: P-256
keys, CBOR, ECDSA; "none" attestation): registered on the account page, used alone and after the
password, and everything a ceremony must refuse — a challenge used twice, another origin or RP
ID, a counter that goes back, no CSRF token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from html import unescape
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.passkeys import StoredPasskey
from authserver.services import Services
from tests._webauthn import ORIGIN, Authenticator
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    authorize,
    exchange,
    last_sign_in,
    query,
    sign_in,
    web_client,
)
from tests.http.test_account import open_account
from tests.http.test_oidc import verified_id_token


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry) -> str:
    await web_client(registry)
    return await registry.user("alice", "correct horse")


def page_token(html: str) -> str:
    """The CSRF token the page hands its script."""
    found = re.search(r'data-csrf="([^"]+)"', html)
    assert found, html
    return unescape(found.group(1))


def headers(token: str, origin: str = ISSUER) -> dict[str, str]:
    return {"X-CSRF-Token": token, "Origin": origin}


def browser(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Another browser of the same app: its own cookies."""
    return httpx.AsyncClient(transport=client._transport, base_url=ISSUER)


async def register(
    http: httpx.AsyncClient, authenticator: Authenticator, name: str = "Laptop", **lies: Any
) -> httpx.Response:
    """Signs in with the password (if not yet), and registers `authenticator` on the account
    page as its script does."""
    account = await http.get("/account")
    if account.status_code != 200:
        account = await open_account(http)
    token = page_token(account.text)
    options = await http.post("/account/passkeys/options", headers=headers(token))
    assert options.status_code == 200, options.text
    answer = authenticator.create(options.json(), **lies)
    return await http.post(
        "/account/passkeys", json={**answer, "name": name}, headers=headers(token)
    )


async def sign_in_page(http: httpx.AsyncClient) -> str:
    """An app's authorization request: the sign-in page's URL it sends the browser to."""
    return str((await authorize(http, Flow.new(WEB).params)).headers["location"])


async def second_step(http: httpx.AsyncClient) -> str:
    """alice's right password on an app's sign-in page: the second step's URL."""
    answered = await sign_in(http, await sign_in_page(http))
    assert answered.status_code == 303 and answered.headers["location"].startswith("/login/factor")
    return str(answered.headers["location"])


async def passkey_sign_in(
    http: httpx.AsyncClient, page_url: str, authenticator: Authenticator, **lies: Any
) -> tuple[httpx.Response, dict[str, Any]]:
    """On the page at `page_url` (sign-in or second step), "Sign in with a passkey": the
    answer of POST /login/passkey, and the answer the authenticator gave. On a step-up's
    page (marked data-step-up), the script says so in both calls, as passkeys.js does."""
    page = await http.get(page_url)
    assert page.status_code == 200, page.text
    token = page_token(page.text)
    step_up = {"step_up": True} if "data-step-up" in page.text else {}
    search = page_url.split("?", 1)[1] if "?" in page_url else ""
    suffix = f"?{search}" if search else ""
    options = await http.post(
        f"/login/passkey/options{suffix}", json=step_up, headers=headers(token)
    )
    assert options.status_code == 200, options.text
    answer = authenticator.get(options.json(), **lies)
    done = await http.post(
        f"/login/passkey{suffix}", json={**answer, **step_up}, headers=headers(token)
    )
    return done, answer


async def actions(engine: AsyncEngine, action: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT detail FROM audit_events WHERE action = :a ORDER BY id"), {"a": action}
        )
        return [str(row[0]) for row in rows]


LastSignIn = Callable[[str], Awaitable[int | None]]


@pytest.fixture
def last(client: httpx.AsyncClient, registry: Registry, spa: str) -> LastSignIn:
    """A user's last_login_at, asked of GET /admin/users/{sub} in a browser of its own."""

    async def asked(sub: str) -> int | None:
        async with browser(client) as admin:
            return await last_sign_in(admin, await admin_headers(admin, registry), sub)

    return asked


async def test_a_passkey_registered_on_the_account_page_signs_in_alone(
    client: httpx.AsyncClient, alice: str, engine: AsyncEngine, last: LastSignIn, clock: Clock
) -> None:
    key = Authenticator()
    account = await open_account(client)
    token = page_token(account.text)
    options = await client.post("/account/passkeys/options", headers=headers(token))
    assert options.status_code == 200, options.text
    assert options.headers["cache-control"] == "no-store"
    creation = options.json()
    # API.md: residentKey preferred, user verification required, the RP ID the issuer's host.
    assert creation["rp"]["id"] == "authserver.test"
    assert creation["authenticatorSelection"]["residentKey"] == "preferred"
    assert creation["authenticatorSelection"]["userVerification"] == "required"
    assert creation["user"]["name"] == "alice"
    made = await client.post(
        "/account/passkeys", json={**key.create(creation), "name": "Laptop"}, headers=headers(token)
    )
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "Laptop"
    shown = await client.get("/account")
    assert "Laptop" in shown.text and "/account/passkeys/remove" in shown.text
    assert await actions(engine, "factor.enrolled")

    # Another browser, an app's authorization request: the passkey alone signs in (and is
    # the user's last sign-in).
    clock.advance(60)
    async with browser(client) as other:
        flow = Flow.new(WEB, scope="openid")
        login = (await authorize(other, flow.params)).headers["location"]
        done, _ = await passkey_sign_in(other, login, key)
        assert done.status_code == 200, done.text
        location = done.json()["redirect"]
        assert (
            location.startswith(CALLBACK + "?") and query(location)["state"] == flow.params["state"]
        )
        assert "authserver_session=" in done.headers["set-cookie"]
        tokens = await exchange(other, query(location)["code"], flow)
        claims = await verified_id_token(other, tokens.json()["id_token"])
        # RFC 8176: a hardware-secured key ("hwk") with user verification ("user"): two factors.
        assert claims["amr"] == ["hwk", "user", "mfa"] and claims["acr"] == "mfa"
    assert await last(alice) == clock()


async def test_after_the_password_a_passkey_is_the_second_step(
    client: httpx.AsyncClient, alice: str, engine: AsyncEngine
) -> None:
    key = Authenticator()
    assert (await register(client, key)).status_code == 201
    async with browser(client) as other:
        flow = Flow.new(WEB, scope="openid")
        login = (await authorize(other, flow.params)).headers["location"]
        answered = await sign_in(other, login)
        assert answered.status_code == 303 and answered.headers["location"].startswith(
            "/login/factor"
        )
        page = await other.get(answered.headers["location"])
        assert "Use a passkey" in page.text and "/assets/passkeys.js" in page.text
        done, _ = await passkey_sign_in(other, answered.headers["location"], key)
        assert done.status_code == 200, done.text
        location = done.json()["redirect"]
        tokens = await exchange(other, query(location)["code"], flow)
        claims = await verified_id_token(other, tokens.json()["id_token"])
        assert claims["amr"] == ["pwd", "hwk", "user", "mfa"] and claims["acr"] == "mfa"
    assert "passkey" in "".join(await actions(engine, "login.second_factor"))


async def test_the_second_step_takes_only_a_passkey_of_the_user_who_typed_the_password(
    client: httpx.AsyncClient, alice: str, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.user("bob", "correct horse")
    alices, bobs = Authenticator(), Authenticator()
    assert (await register(client, alices)).status_code == 201
    async with browser(client) as bob:
        await open_account(bob, "bob")
        assert (await register(bob, bobs)).status_code == 201
    async with browser(client) as other:
        done, _ = await passkey_sign_in(other, await second_step(other), bobs)
        assert_oauth_error(done, 400, "invalid_request")
        assert "authserver_session=" not in done.headers.get("set-cookie", "")


async def test_a_step_up_takes_the_passkey_of_a_user_who_has_no_other_factor(
    client: httpx.AsyncClient, alice: str, engine: AsyncEngine, last: LastSignIn, clock: Clock
) -> None:
    """API.md, step-up: a session signed in with the password alone, an app asking
    acr_values=mfa, and the user's only second factor a passkey: the step-up page takes it,
    and the session is upgraded in place (same user, amr gains hwk and user, a new cookie)."""
    key = Authenticator()
    assert (await register(client, key)).status_code == 201  # signed in with the password
    weak = client.cookies["authserver_session"]
    flow = Flow.new(WEB, scope="openid", acr_values="mfa")
    asked = await authorize(client, flow.params)
    assert asked.status_code == 302 and "/login/factor?" in asked.headers["location"]
    page = await client.get(asked.headers["location"])
    assert "data-step-up" in page.text and "Use a passkey" in page.text
    assert 'name="code"' not in page.text  # no app, no recovery codes: nothing to type

    clock.advance(60)
    done, _ = await passkey_sign_in(client, asked.headers["location"], key)

    assert done.status_code == 200, done.text
    assert await last(alice) == clock()  # a sign-in too: the user's last
    location = done.json()["redirect"]
    assert location.startswith(CALLBACK + "?"), location
    tokens = await exchange(client, query(location)["code"], flow)
    claims = await verified_id_token(client, tokens.json()["id_token"])
    assert claims["amr"] == ["pwd", "hwk", "user", "mfa"] and claims["acr"] == "mfa"
    # The session stepped up, not a new one: the old cookie is dead, the new one is mfa.
    assert client.cookies["authserver_session"] != weak
    async with engine.connect() as conn:
        sessions = (await conn.execute(text("SELECT amr FROM login_sessions"))).scalars().all()
    assert len(sessions) == 1 and "hwk" in str(sessions[0]), sessions
    assert '"via": "step_up"' in "".join(await actions(engine, "login.second_factor"))
    sso = await authorize(client, Flow.new(WEB, acr_values="mfa").params)
    assert sso.headers["location"].startswith(CALLBACK + "?")  # no more asking


async def test_a_step_up_refuses_another_users_passkey(
    client: httpx.AsyncClient, alice: str, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.user("bob", "correct horse")
    alices, bobs = Authenticator(), Authenticator()
    async with browser(client) as bob:
        await open_account(bob, "bob")
        assert (await register(bob, bobs)).status_code == 201
    assert (await register(client, alices)).status_code == 201
    weak = client.cookies["authserver_session"]
    asked = await authorize(client, Flow.new(WEB, acr_values="mfa").params)

    done, _ = await passkey_sign_in(client, asked.headers["location"], bobs)

    assert_oauth_error(done, 400, "invalid_request")
    assert "authserver_session=" not in done.headers.get("set-cookie", "")
    assert client.cookies["authserver_session"] == weak
    again = await authorize(client, Flow.new(WEB, acr_values="mfa").params)
    assert "/login/factor?" in again.headers["location"]  # still password only


async def test_a_challenge_is_accepted_once_even_by_two_racing_answers(
    client: httpx.AsyncClient, alice: str
) -> None:
    key = Authenticator()
    assert (await register(client, key)).status_code == 201
    async with browser(client) as other:
        login = await sign_in_page(other)
        page = await other.get(login)
        token, suffix = page_token(page.text), "?" + login.split("?", 1)[1]
        options = (
            await other.post(f"/login/passkey/options{suffix}", headers=headers(token))
        ).json()
        first, second = key.get(options), key.get(options)  # two signatures, one challenge
        answers = await asyncio.gather(
            *(
                other.post(f"/login/passkey{suffix}", json=a, headers=headers(token))
                for a in (first, second)
            )
        )
        assert sorted(a.status_code for a in answers) == [200, 400], [a.text for a in answers]
        # Replayed later, with the page's new token (bound to the new login session).
        token = page_token((await other.get(login)).text)
        again = await other.post(f"/login/passkey{suffix}", json=first, headers=headers(token))
        assert_oauth_error(again, 400, "invalid_request")


async def test_another_origin_or_rp_id_is_refused_and_audited(
    client: httpx.AsyncClient, alice: str, engine: AsyncEngine
) -> None:
    key = Authenticator()
    # Registration made for another site's origin, or RP ID: nothing stored.
    refused = await register(client, key, origin="https://evil.example")
    assert_oauth_error(refused, 400, "invalid_request")
    refused = await register(client, key, rp_id="evil.example")
    assert_oauth_error(refused, 400, "invalid_request")
    refused = await register(client, key, verified=False)  # no PIN or biometric: one factor
    assert_oauth_error(refused, 400, "invalid_request")
    assert (await register(client, key)).status_code == 201

    async with browser(client) as other:
        for lie in (
            {"origin": "https://evil.example"},
            {"rp_id": "evil.example"},
            {"verified": False},
        ):
            done, _ = await passkey_sign_in(other, "/login", key, **lie)
            assert_oauth_error(done, 400, "invalid_request")
            assert "authserver_session=" not in done.headers.get("set-cookie", "")
    failures = await actions(engine, "login.passkey_failed")
    assert len(failures) == 3 and all("invalid" in f for f in failures)


async def test_a_counter_that_goes_back_is_a_cloned_passkey_refused_and_audited(
    client: httpx.AsyncClient, alice: str, engine: AsyncEngine
) -> None:
    key = Authenticator()
    assert (await register(client, key)).status_code == 201
    async with browser(client) as other:
        done, _ = await passkey_sign_in(other, "/login", key, count=5)
        assert done.status_code == 200, done.text
    async with browser(client) as clone:
        done, _ = await passkey_sign_in(clone, "/login", key, count=5)  # not above 5
        assert_oauth_error(done, 400, "invalid_request")
        done, _ = await passkey_sign_in(clone, "/login", key, count=3)
        assert_oauth_error(done, 400, "invalid_request")
        assert "authserver_session=" not in done.headers.get("set-cookie", "")
    failures = await actions(engine, "login.passkey_failed")
    assert len(failures) == 2 and all("sign_count" in f for f in failures)
    async with browser(client) as other:  # the real one, further on, still signs in
        done, _ = await passkey_sign_in(other, "/login", key, count=6)
        assert done.status_code == 200, done.text


async def test_every_endpoint_needs_the_page_token_and_our_origin(
    client: httpx.AsyncClient, alice: str
) -> None:
    key = Authenticator()
    account = await open_account(client)
    token = page_token(account.text)
    for path in (
        "/account/passkeys/options",
        "/account/passkeys",
        "/login/passkey/options",
        "/login/passkey",
    ):
        for sent in (
            {},
            {"X-CSRF-Token": token},
            headers("wrong." + token),
            headers(token, "https://evil.example"),
        ):
            answer = await client.post(path, json={}, headers=sent)
            assert_oauth_error(answer, 403, "invalid_request")
    # A challenge given to one browser is not another's to answer.
    options = await client.post("/account/passkeys/options", headers=headers(token))
    async with browser(client) as other:
        await open_account(other)
        theirs = page_token((await other.get("/account")).text)
        made = await other.post(
            "/account/passkeys", json=key.create(options.json()), headers=headers(theirs)
        )
        assert_oauth_error(made, 400, "invalid_request")
    # Without a login session, the account's endpoints answer 401.
    async with browser(client) as anonymous:
        page = await anonymous.get("/login")
        answer = await anonymous.post(
            "/account/passkeys/options", headers=headers(page_token(page.text))
        )
        assert_oauth_error(answer, 401, "login_required")


async def test_garbage_answers_are_4xx_never_500(client: httpx.AsyncClient, alice: str) -> None:
    page = await client.get("/login")
    token = page_token(page.text)
    for body in (
        b"[]",
        b"{",
        b'{"id": 1}',
        b'{"response": []}',
        b'{"response": {"clientDataJSON": "!!"}}',
    ):
        answer = await client.post(
            "/login/passkey",
            content=body,
            headers={**headers(token), "Content-Type": "application/json"},
        )
        assert answer.status_code == 400, (body, answer.text)


async def test_removing_a_passkey_and_the_operators_reset_and_delete(
    client: httpx.AsyncClient, alice: str, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.client("spa", public=True, grant_types=("password",), scopes=("admin",))
    root = await admin_headers(client, registry)
    async with browser(client) as http:
        assert (await register(http, Authenticator(), "One")).status_code == 201
        assert (await register(http, Authenticator(), "Two")).status_code == 201
        shown = await client.get(f"/admin/users/{alice}", headers=root)
        assert shown.json()["factors"] == ["passkey"]
        account = await http.get("/account")
        ids = re.findall(
            r'action="/account/passkeys/remove">\s*<input[^>]*>\s*<input type="hidden" name="id"'
            r' value="([^"]+)"',
            account.text,
        )
        assert len(ids) == 2
        form = {"csrf_token": page_token(account.text), "id": ids[-1]}
        removed = await http.post("/account/passkeys/remove", data=form)
        assert (
            removed.status_code == 303
            and removed.headers["location"] == "/account?done=passkey_removed"
        )
        page = await http.get(removed.headers["location"])
        kept, gone = re.findall(r"<strong>(One|Two)</strong>", account.text)
        assert f">{kept}<" in page.text and f">{gone}<" not in page.text
        again = await http.post("/account/passkeys/remove", data=form)
        assert again.status_code == 404
        # The last second factor goes only with the password ("Turn off two-step verification").
        last = {**form, "id": ids[0]}
        kept_page = await http.post("/account/passkeys/remove", data=last)
        assert kept_page.status_code == 409 and "only second step" in kept_page.text
        assert f">{kept}<" in (await http.get("/account")).text
    assert await actions(engine, "factor.removed")

    assert (await client.delete(f"/admin/users/{alice}/factors", headers=root)).status_code == 204
    assert (await client.get(f"/admin/users/{alice}", headers=root)).json()["factors"] == []
    async with browser(client) as http:
        assert (await register(http, Authenticator())).status_code == 201
    assert (await client.delete(f"/admin/users/{alice}", headers=root)).status_code == 204
    async with engine.connect() as conn:
        count = text("SELECT count(*) FROM passkeys WHERE user_id = :u")
        left = (await conn.execute(count, {"u": alice})).scalar_one()
    assert left == 0


async def test_the_pages_run_one_same_origin_script_and_work_without_it(
    client: httpx.AsyncClient, alice: str
) -> None:
    page = await client.get("/login")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert '<script src="/assets/passkeys.js" defer></script>' in page.text
    assert re.search(r"<script>", page.text) is None  # nothing inline
    # Without JavaScript the passkey button stays hidden; the password form is there.
    assert (
        'id="passkey-sign-in" data-passkey-only hidden' in page.text
        and 'name="password"' in page.text
    )
    script = await client.get("/assets/passkeys.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "parseCreationOptionsFromJSON" in script.text and ORIGIN not in script.text


async def test_two_browsers_removing_the_last_two_passkeys_at_once_remove_one(
    client: httpx.AsyncClient, alice: str, services: Services
) -> None:
    """Each removal alone sees another factor stay; taking turns on the user's row, the second
    sees the first's removal and keeps its passkey."""
    for round_ in range(3):
        for name in ("One", "Two"):
            passkey = StoredPasskey(
                f"{name}-{round_}", alice, f"cred-{name}-{round_}", b"k", 0, (), name, 0
            )
            assert await services.passkeys.add(passkey)
        ids = [p.id for p in await services.passkeys.of_user(alice)]
        results = await asyncio.gather(*(services.passkeys.remove(i, alice) for i in ids))
        assert sorted(results, key=str) == [None, True], results
        assert len(await services.passkeys.of_user(alice)) == 1
        await services.second_factors.remove_all(alice)


async def test_wrong_passkey_answers_after_the_password_spend_the_password_budget(
    client: httpx.AsyncClient, alice: str
) -> None:
    key = Authenticator()
    assert (await register(client, key)).status_code == 201
    async with browser(client) as other:
        factor = await second_step(other)
        for _ in range(6):  # the username's free failures (throttle.USERNAME), and one more
            done, _ = await passkey_sign_in(other, factor, key, origin="https://evil.example")
            assert_oauth_error(done, 400, "invalid_request")
        done, _ = await passkey_sign_in(other, factor, key)  # right, but over the budget
        body = assert_oauth_error(done, 429, "slow_down")
        assert (
            "retry-after" in done.headers
            and "Too many failed sign-ins" in body["error_description"]
        )


async def test_passwordless_options_are_limited_per_address(
    client: httpx.AsyncClient, alice: str, engine: AsyncEngine, clock: Any
) -> None:
    """Each passwordless options answer holds a challenge row before anyone is known: past
    60 a minute from one address group the page is told to wait, and no row is held."""
    clock.now -= clock.now % 60  # the start of a window, so the test cannot straddle two
    login = await sign_in_page(client)
    token = page_token((await client.get(login)).text)
    suffix = "?" + login.split("?", 1)[1]

    async def options() -> httpx.Response:
        return await client.post(f"/login/passkey/options{suffix}", headers=headers(token))

    for _ in range(60):
        assert (await options()).status_code == 200
    refused = await options()
    body = assert_oauth_error(refused, 429, "slow_down")
    assert refused.headers["retry-after"] == "60"
    assert "Too many requests" in body["error_description"]
    async with engine.connect() as conn:
        held = await conn.scalar(text("SELECT count(*) FROM webauthn_challenges"))
    assert held == 60
    clock.advance(60)  # the next window
    assert (await options()).status_code == 200

"""The sign-up page (API.md "Accounts: Sign-up"), through the ASGI app, with a real SMTP server:
AUTHSERVER_SIGNUP off, open and verified, the authorization request carried on, no enumeration
of addresses, the password policy, throttling, and the sign-in page's hostile inputs."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.actions.admin.users import disable_user, update_user
from authserver.config import Settings, SettingsError
from authserver.db.purge import purge
from authserver.services import Services
from tests._smtp import SmtpServer
from tests.conftest import ISSUER, Clock, Registry, make_settings
from tests.http.mailbox import link_in, mail_on, next_mail, text_part
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    Flow,
    admin_headers,
    assert_strict_headers,
    browser_of,
    csrf_token,
    exchange,
    form_action,
    hidden_fields,
    last_sign_in,
    query,
    sign_in,
    web_client,
)

PASSWORD = "a fine long passphrase"
COMMON = "The password is a commonly used one; choose another."


@pytest.fixture
def mode() -> str:
    return "open"


@pytest.fixture
def settings_overrides(smtp: SmtpServer, mode: str) -> dict[str, str]:
    return {**INSECURE_COOKIES, **mail_on(smtp), "signup": mode}


async def sign_up(
    http: httpx.AsyncClient,
    username: str = "carol",
    email: str = "carol@example.test",
    password: str = PASSWORD,
    url: str = "/signup",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Opens the sign-up page and posts its form, as a browser would."""
    page = await http.get(url, headers=headers)
    assert page.status_code == 200, page.text
    assert_strict_headers(page)
    form = {
        "csrf_token": csrf_token(page.text),
        "username": username,
        "email": email,
        "password": password,
    }
    return await http.post(form_action(page.text), data=form, headers=headers)


def error_of(page: httpx.Response) -> str:
    found = re.search(r'<p class="error" id="form-error" role="alert">([^<]*)</p>', page.text)
    assert found, page.text
    return found.group(1)


@pytest.mark.parametrize("mode", ["off"])
async def test_off_the_page_is_not_there(client: httpx.AsyncClient) -> None:
    assert (await client.get("/signup")).status_code == 404
    assert (await client.post("/signup", data={"username": "x"})).status_code == 404
    assert "/signup" not in (await client.get("/login")).text


async def test_open_signs_the_new_user_in_and_mails_a_link_that_verifies(
    client: httpx.AsyncClient, smtp: SmtpServer, services: Services
) -> None:
    answer = await sign_up(client, "Carol", "Carol@Example.test")

    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/account"
    account = await client.get("/account")
    assert account.status_code == 200 and "Carol" in account.text  # signed in
    user = await services.users.by_username("carol")
    assert user is not None and not user.disabled
    assert (user.profile.email, user.profile.email_verified) == ("Carol@Example.test", False)
    assert user.scopes == ()  # nothing but what every user holds
    [event] = [e for e in await services.audit.recent() if e.action == "user.signed_up"]
    assert (event.target, event.detail) == (user.id, {"username": "Carol", "mode": "open"})

    received = await next_mail(smtp)
    assert received.envelope_to == ["Carol@Example.test"]
    link = urlsplit(link_in(received, "/verify-email"))
    page = await client.get(f"{link.path}?{link.query}")
    verified = await client.post("/verify-email", data=hidden_fields(page.text))
    assert verified.status_code == 200, verified.text
    user = await services.users.by_id(user.id)
    assert user is not None and user.profile.email_verified


async def test_a_sign_up_that_signs_in_is_the_users_last_sign_in(
    client: httpx.AsyncClient, registry: Registry, spa: str, clock: Clock
) -> None:
    root = await admin_headers(client, registry)
    async with httpx.AsyncClient(transport=client._transport, base_url=ISSUER) as other:
        assert (await sign_up(other)).status_code == 303
    carol = await registry.services.users.by_username("carol")
    assert carol is not None
    assert await last_sign_in(client, root, carol.id) == clock()


async def test_open_without_mail_signs_in_and_the_address_stays_unverified(
    settings: Settings, engine: AsyncEngine
) -> None:
    without_mail = replace(settings, smtp_url=None, mail_from=None)
    async with browser_of(without_mail) as browser:
        answer = await sign_up(browser)
        assert answer.status_code == 303 and answer.headers["location"] == "/account"
        assert "/password-reset" not in (await browser.get("/login")).text
    async with engine.connect() as conn:
        outbox = (await conn.execute(text("SELECT count(*) FROM mail_outbox"))).scalar_one()
        verified = (await conn.execute(text("SELECT email_verified FROM users"))).scalar_one()
    assert (outbox, verified) == (0, False)


async def test_open_continues_the_authorization_request_from_the_sign_in_page(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry, client_name="Web <App>")
    flow = Flow.new(scope="openid profile")
    to_login = await client.get("/authorize", params=flow.params)
    login_page = await client.get(to_login.headers["location"])
    found = re.search(r'<a href="(/signup\?[^"]+)">Create an account</a>', login_page.text)
    assert found, login_page.text
    signup_url = found.group(1).replace("&amp;", "&")
    assert query(signup_url) == flow.params  # the pending request, carried on

    answer = await sign_up(client, url=signup_url)

    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith(CALLBACK + "?") and query(location)["state"] == flow.params["state"]
    tokens = await exchange(client, query(location)["code"], flow)
    assert tokens.status_code == 200, tokens.text
    # The page named the client, escaped; its form may end up at the client (form-action).
    page = await client.get(signup_url)
    assert "Web &lt;App&gt;" in page.text and "Web <App>" not in page.text
    assert "https://app.example" in page.headers["content-security-policy"]


@pytest.mark.parametrize("mode", ["verified"])
async def test_verified_the_account_signs_in_only_once_its_link_is_opened(
    client: httpx.AsyncClient, smtp: SmtpServer, services: Services
) -> None:
    answer = await sign_up(client)

    assert answer.status_code == 200, answer.text
    assert_strict_headers(answer)
    assert "Check your mail" in answer.text and "carol@example.test" in answer.text
    assert "__Host-authserver_session" not in answer.headers.get("set-cookie", "")
    user = await services.users.by_username("carol")
    assert user is not None and user.disabled and user.profile.email == "carol@example.test"
    refused = await sign_in(client, "/login", "carol", PASSWORD)
    assert refused.status_code == 400  # the one sentence, as for any refused password

    link = urlsplit(link_in(await next_mail(smtp), "/verify-email"))
    page = await client.get(f"{link.path}?{link.query}")
    assert page.status_code == 200
    ready = await client.post("/verify-email", data=hidden_fields(page.text))

    assert ready.status_code == 200, ready.text
    assert "Your account is ready" in ready.text
    user = await services.users.by_id(user.id)
    assert user is not None and not user.disabled and user.profile.email_verified
    again = await client.post("/verify-email", data=hidden_fields(page.text))
    assert again.status_code == 400  # once
    assert (await sign_in(client, "/login", "carol", PASSWORD)).status_code == 200


@pytest.mark.parametrize("mode", ["verified"])
async def test_an_operators_change_of_address_kills_the_sign_up_link(
    client: httpx.AsyncClient, smtp: SmtpServer, services: Services, registry: Registry
) -> None:
    await sign_up(client)
    link = urlsplit(link_in(await next_mail(smtp), "/verify-email"))
    await registry.profile("carol", email="other@example.test")
    page = await client.get(f"{link.path}?{link.query}")
    dead = await client.post("/verify-email", data=hidden_fields(page.text))
    assert dead.status_code == 400
    user = await services.users.by_username("carol")
    assert user is not None and user.disabled


@pytest.mark.parametrize("mode", ["verified"])
async def test_an_operators_disable_holds_against_the_sign_up_link(
    client: httpx.AsyncClient, smtp: SmtpServer, services: Services
) -> None:
    await sign_up(client)
    link = urlsplit(link_in(await next_mail(smtp), "/verify-email"))
    user = await services.users.by_username("carol")
    assert user is not None
    await disable_user(services, "cli", user.id)
    page = await client.get(f"{link.path}?{link.query}")
    dead = await client.post("/verify-email", data=hidden_fields(page.text))
    assert dead.status_code == 400
    user = await services.users.by_id(user.id)
    assert user is not None and user.disabled


@pytest.mark.parametrize("mode", ["verified"])
async def test_an_abandoned_sign_up_is_purged_and_its_username_free_again(
    client: httpx.AsyncClient,
    smtp: SmtpServer,
    services: Services,
    registry: Registry,
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    """Never verified, a `verified` sign-up holds its name only as long as its link lives.
    One that opened its link, one an operator enabled and one an operator disabled stay."""
    await sign_up(client, "carol", "carol@example.test")
    await registry.user("erin")
    await registry.profile("erin", email="erin@example.test")
    await sign_up(client, "mallory", "erin@example.test")  # a taken address: no link at all
    for name in ("verified", "enabled", "disabled"):
        await sign_up(client, name, f"{name}@example.test")
    await next_mail(smtp, 5)  # four links, and Erin's notice
    mails = {r.envelope_to[0]: r for r in smtp.received}
    link = urlsplit(link_in(mails["verified@example.test"], "/verify-email"))
    page = await client.get(f"{link.path}?{link.query}")
    assert (await client.post("/verify-email", data=hidden_fields(page.text))).status_code == 200
    for name, disabled in (("enabled", False), ("disabled", True)):
        user = await services.users.by_username(name)
        assert user is not None
        await update_user(services, "cli", user.id, {"disabled": disabled})

    clock.advance(settings.email_verify_ttl - 1)
    purged = await purge(engine, settings, clock.now)
    assert purged is not None and purged.abandoned_sign_ups == 0
    clock.advance(1)
    purged = await purge(engine, settings, clock.now)
    assert purged is not None and purged.abandoned_sign_ups == 2

    assert await services.users.by_username("carol") is None
    assert await services.users.by_username("mallory") is None
    for name in ("erin", "verified", "enabled", "disabled"):
        assert await services.users.by_username(name) is not None, name
    client.cookies.clear()
    again = await sign_up(client, "carol", "carol@example.test")
    assert again.status_code == 200 and "Check your mail" in again.text


async def test_a_taken_username_is_said_plainly(
    client: httpx.AsyncClient, registry: Registry, services: Services
) -> None:
    await registry.user("Dave")
    answer = await sign_up(client, "ＤＡＶＥ", "dave@example.test")  # any case, any width
    assert answer.status_code == 400
    assert error_of(answer) == "This username is taken: choose another."
    assert 'value="ＤＡＶＥ"' in answer.text and 'value="dave@example.test"' in answer.text
    assert PASSWORD not in answer.text
    assert await services.users.by_username("dave") is not None


@pytest.mark.parametrize("mode", ["verified", "open"])
async def test_a_taken_address_answers_as_a_free_one_and_its_owner_is_told(
    client: httpx.AsyncClient, smtp: SmtpServer, registry: Registry, services: Services, mode: str
) -> None:
    await registry.user("erin")
    await registry.profile("erin", email="erin@example.test", email_verified=True)

    taken = await sign_up(client, "mallory", "ERIN@example.test")
    client.cookies.clear()
    free = await sign_up(client, "frank", "frank@example.test")

    assert taken.status_code == free.status_code
    if mode == "verified":
        same = taken.text.replace("ERIN@example.test", "X").replace("mallory", "Y")
        assert same == free.text.replace("frank@example.test", "X").replace("frank", "Y")
    else:
        assert taken.headers["location"] == free.headers["location"] == "/account"
    await next_mail(smtp, 2)
    by_recipient = {r.envelope_to[0]: r for r in smtp.received}
    assert set(by_recipient) == {"ERIN@example.test", "frank@example.test"}
    notice = text_part(by_recipient["ERIN@example.test"])
    assert "An account already uses it" in notice and "/password-reset" in notice
    assert "token=" not in notice
    # The name is held all the same (trying it again tells nothing); the address stays Erin's.
    mallory = await services.users.by_username("mallory")
    assert mallory is not None and mallory.profile.email is None
    erin = await services.users.by_username("erin")
    assert erin is not None and erin.profile.email == "erin@example.test"


@pytest.mark.parametrize(
    ("username", "email", "password", "sentence"),
    [
        ("", "g@example.test", PASSWORD, "Choose a username."),
        ("   ", "g@example.test", PASSWORD, "Choose a username."),
        ("g\u202eh", "g@example.test", PASSWORD, "This username cannot be used: choose another."),
        ("g" * 300, "g@example.test", PASSWORD, "This username cannot be used: choose another."),
        ("gina", "not an address", PASSWORD, "Enter your email address."),
        ("gina", "g@example.test", "", "Choose a password."),
        ("gina", "g@example.test", "short", "The password is shorter than 12 characters."),
        ("gina", "g@example.test", "password1234", COMMON),
        ("gina.long.name", "g@example.test", "Gina.Long.Name", "The password is the username."),
    ],
)  # fmt: skip
async def test_the_form_again_with_what_to_fix(
    client: httpx.AsyncClient,
    services: Services,
    username: str,
    email: str,
    password: str,
    sentence: str,
) -> None:
    answer = await sign_up(client, username, email, password)
    assert answer.status_code == 400, answer.text
    assert_strict_headers(answer)
    assert error_of(answer) == sentence
    assert await services.users.page(10, None, None) == []


async def test_german_pages(client: httpx.AsyncClient) -> None:
    german = {"Accept-Language": "de"}
    page = await client.get("/signup", headers=german)
    assert '<html lang="de"' in page.text and "Konto erstellen" in page.text
    answer = await sign_up(client, "gina", "g@example.test", "short", headers=german)
    assert "kürzer als 12 Zeichen" in error_of(answer)
    login = await client.get("/login", headers=german)
    assert ">Konto erstellen</a>" in login.text


async def test_throttled_per_address_and_per_client(client: httpx.AsyncClient) -> None:
    # Weak passwords: every request counts, whatever it asks; no account is made.
    for n in range(5):
        answer = await sign_up(client, f"h{n}", "h@example.test", "short")
        assert answer.status_code == 400
    slow = await sign_up(client, "h9", "H@example.test", "short")  # any case: one address
    assert slow.status_code == 429 and int(slow.headers["retry-after"]) > 0
    assert_strict_headers(slow)
    for n in range(14):  # 20 requests from this address group a minute always pass
        answer = await sign_up(client, f"i{n}", f"i{n}@example.test", "short")
        assert answer.status_code == 400, n


async def test_hostile_values_are_escaped_and_foreign_posts_refused(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    hostile = '"><script>alert(1)</script>'
    answer = await sign_up(client, "gina" + hostile, hostile + "@x", PASSWORD)
    assert answer.status_code == 400 and hostile not in answer.text
    taken = await sign_up(client, "carol", "c" + hostile + "@example.test", "short")
    assert hostile not in taken.text
    await web_client(registry)
    flow = Flow.new(state=hostile)
    page = await client.get("/signup?" + urlencode(flow.params))
    assert page.status_code == 200 and hostile not in page.text
    assert (await client.get("/signup?client_id=" + hostile)).status_code == 400
    assert hostile not in (await client.get("/signup?client_id=" + hostile)).text
    # CSRF: no token, a made-up one, another site's Origin.
    fields = {"username": "ivan", "email": "ivan@example.test", "password": PASSWORD}
    assert (await client.post("/signup", data=fields)).status_code == 403
    forged = {**fields, "csrf_token": "x.y"}
    assert (await client.post("/signup", data=forged)).status_code == 403
    real = {**fields, "csrf_token": csrf_token((await client.get("/signup")).text)}
    other_site = {"Origin": "https://evil.example"}
    assert (await client.post("/signup", data=real, headers=other_site)).status_code == 403
    assert (await client.post("/signup", data=real)).status_code == 303  # the control


@pytest.mark.parametrize(
    ("url", "body", "content_type"),
    [
        ("/signup?client_id=%00", None, None),
        ("/signup?%ff=%ff", None, None),
        ("/signup?client_id=web&client_id=other", None, None),
        ("/signup", b'{"username": 1}', "application/json"),
        ("/signup", b"<xml/>", "text/xml"),
        ("/signup", b"csrf_token=%00&username=a&password=b", "application/x-www-form-urlencoded"),
        ("/signup", b"username=" + b"u" * 70_000, "application/x-www-form-urlencoded"),
    ],
)
async def test_hostile_input_is_never_a_500(
    client: httpx.AsyncClient,
    registry: Registry,
    url: str,
    body: bytes | None,
    content_type: str | None,
) -> None:
    await web_client(registry)
    headers = {"Content-Type": content_type} if content_type else {}
    method = "GET" if body is None else "POST"
    response = await client.request(method, url, content=body, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])


async def test_a_bad_authorization_request_is_not_carried_on(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    await web_client(registry)
    flow = Flow.new(code_challenge_method="plain")
    answer = await client.get("/signup?" + urlencode(flow.params))
    assert answer.status_code == 302
    assert query(answer.headers["location"])["error"] == "invalid_request"


def test_verified_without_mail_is_a_settings_error(tmp_path: Path) -> None:
    url, keys = "sqlite+aiosqlite:///x.db", tmp_path / "keys"
    with pytest.raises(SettingsError, match="AUTHSERVER_SIGNUP: verified needs mail"):
        make_settings(url, keys, signup="verified")
    with pytest.raises(SettingsError, match="AUTHSERVER_SIGNUP: must be one of"):
        make_settings(url, keys, signup="yes")
    assert make_settings(url, keys).signup == "off"

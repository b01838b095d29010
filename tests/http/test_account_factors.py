"""Two-step verification on the account page, end to end through real HTTP on both databases:
an authenticator app enrolled with a code pyotp computes from the page's key, recovery codes
shown once, the sign-in then asking for the code, and turning it off with the password."""

from __future__ import annotations

import re
from html import unescape

import httpx
import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.actions.enrolment import ENROLMENT_EXPIRED, WRONG_ENROLMENT_CODE
from tests.conftest import Clock, Registry
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    PASSWORD,
    WEB,
    Flow,
    assert_strict_headers,
    authorize,
    csrf_token,
    form_action,
    sign_in,
    web_client,
)
from tests.http.test_account import open_account


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry) -> str:
    await web_client(registry)
    return await registry.user("alice", PASSWORD)


def field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, html
    return unescape(found.group(1))


def key_of(html: str) -> str:
    found = re.search(r'<code id="secret">([^<]+)</code>', html)
    assert found, html
    return found.group(1).replace(" ", "")


async def setup_page(http: httpx.AsyncClient) -> httpx.Response:
    account = await open_account(http)
    assert "Add an authenticator app" in account.text
    page = await http.post("/account/totp", data={"csrf_token": csrf_token(account.text)})
    assert page.status_code == 200, page.text
    return page


async def confirm(http: httpx.AsyncClient, page: httpx.Response, code: str) -> httpx.Response:
    form = {
        "csrf_token": csrf_token(page.text),
        "enrolment": field(page.text, "enrolment"),
        "code": code,
    }
    return await http.post("/account/totp/confirm", data=form)


async def enrol(http: httpx.AsyncClient, clock: Clock) -> tuple[str, list[str]]:
    """Through the page: (the key, the recovery codes shown)."""
    page = await setup_page(http)
    key = key_of(page.text)
    done = await confirm(http, page, pyotp.TOTP(key).at(clock()))
    assert done.status_code == 200, done.text
    codes = re.findall(r"<li><code>([a-z0-9-]+)</code></li>", done.text)
    return key, codes


async def test_the_setup_page_shows_the_key_as_an_inline_qr_code_and_as_text(
    client: httpx.AsyncClient, alice: str
) -> None:
    page = await setup_page(client)
    assert_strict_headers(page)
    csp = page.headers["content-security-policy"]
    assert "data:" not in csp and "img-src 'self'" in csp
    assert re.search(r'<svg [^>]*class="segno"', page.text)  # markup, no image request
    assert "<img" not in page.text and "otpauth" not in page.text  # the URI only in the QR
    assert len(key_of(page.text)) == 32


async def test_enrolment_with_a_code_shows_ten_recovery_codes_and_the_sign_in_asks(
    client: httpx.AsyncClient, alice: str, clock: Clock, engine: AsyncEngine, app: object
) -> None:
    key, codes = await enrol(client, clock)
    assert len(codes) == 10 and len(set(codes)) == 10
    account = await client.get("/account")
    assert "Turn off two-step verification" in account.text
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT code_hash FROM recovery_codes"))).scalars()
        assert not set(codes) & set(stored)
        actions = (await conn.execute(text("SELECT action FROM audit_events"))).scalars().all()
    assert "factor.enrolled" in actions

    # A new browser: the password, then the code.
    transport = client._transport
    async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as other:
        login = (await authorize(other, Flow.new(WEB).params)).headers["location"]
        step = await sign_in(other, login)
        assert step.headers["location"].startswith("/login/factor?")
        clock.advance(30)  # the enrolling code's step is spent: the next one
        page = await other.get(step.headers["location"])
        form = {"csrf_token": csrf_token(page.text), "code": pyotp.TOTP(key).at(clock())}
        done = await other.post(form_action(page.text), data=form)
        assert done.status_code == 303 and done.headers["location"].startswith(CALLBACK)


async def test_the_enrolling_code_cannot_sign_in_again(
    client: httpx.AsyncClient, alice: str, clock: Clock
) -> None:
    page = await setup_page(client)
    key = key_of(page.text)
    code = pyotp.TOTP(key).at(clock())
    assert (await confirm(client, page, code)).status_code == 200
    transport = client._transport
    async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as other:
        login = (await authorize(other, Flow.new(WEB).params)).headers["location"]
        step = await sign_in(other, login)
        factor = await other.get(step.headers["location"])
        form = {"csrf_token": csrf_token(factor.text), "code": code}
        assert (await other.post(form_action(factor.text), data=form)).status_code == 400


@pytest.mark.parametrize("code", ["000000", "abc", "9" * 10_000, ""])
async def test_a_wrong_code_enrols_nothing(
    client: httpx.AsyncClient, alice: str, code: str, engine: AsyncEngine
) -> None:
    page = await setup_page(client)
    answered = await confirm(client, page, code)
    assert answered.status_code == 400 and answered.headers["content-type"].startswith("text/html")
    assert WRONG_ENROLMENT_CODE in unescape(answered.text) or len(code) > 1000
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM second_factors"))).scalar_one()
    assert count == 0


async def test_an_edited_or_expired_setup_enrols_nothing(
    client: httpx.AsyncClient, alice: str, clock: Clock
) -> None:
    page = await setup_page(client)
    key = key_of(page.text)
    form = {
        "csrf_token": csrf_token(page.text),
        "enrolment": field(page.text, "enrolment")[:-4] + "AAAA",
        "code": pyotp.TOTP(key).at(clock()),
    }
    edited = await client.post("/account/totp/confirm", data=form)
    assert edited.status_code == 400 and ENROLMENT_EXPIRED in unescape(edited.text)
    clock.advance(601)
    late = await confirm(client, page, pyotp.TOTP(key).at(clock()))
    assert late.status_code == 400 and ENROLMENT_EXPIRED in unescape(late.text)
    account = await client.get("/account")
    assert "Add an authenticator app" in account.text


async def test_the_forms_need_the_csrf_token_and_a_session(
    client: httpx.AsyncClient, alice: str
) -> None:
    assert (await client.post("/account/totp", data={})).status_code == 403
    page = await setup_page(client)
    form = {"enrolment": field(page.text, "enrolment"), "code": "123456"}
    assert (await client.post("/account/totp/confirm", data=form)).status_code == 403
    assert (await client.post("/account/factors/remove", data={})).status_code == 403


async def test_turning_it_off_asks_the_password(
    client: httpx.AsyncClient, alice: str, clock: Clock, engine: AsyncEngine
) -> None:
    await enrol(client, clock)
    account = await client.get("/account")
    wrong = await client.post(
        "/account/factors/remove",
        data={"csrf_token": csrf_token(account.text), "current_password": "nope"},
    )
    assert wrong.status_code == 400 and "Turn off two-step verification" in wrong.text
    done = await client.post(
        "/account/factors/remove",
        data={"csrf_token": csrf_token(account.text), "current_password": PASSWORD},
    )
    assert done.status_code == 303 and done.headers["location"] == "/account?done=factors_removed"
    async with engine.connect() as conn:
        left = (await conn.execute(text("SELECT count(*) FROM recovery_codes"))).scalar_one()
        actions = (await conn.execute(text("SELECT action FROM audit_events"))).scalars().all()
    assert left == 0 and "factor.removed" in actions
    assert "Add an authenticator app" in (await client.get("/account")).text

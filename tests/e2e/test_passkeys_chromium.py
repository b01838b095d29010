"""Passkeys in a real browser: Debian's Chromium with a virtual authenticator (Chrome DevTools
Protocol WebAuthn domain: CTAP2, internal transport, resident keys, user verification), driven
by Playwright against a real `authserver serve`. One walk through the whole story: a passkey
registered on the account page, a step-up an app asks for (acr_values=mfa) given with it, the
browser signed out, an app's authorization request signed in with the passkey alone, then the
password followed by the passkey as the second step; then an authenticator app added on the
account page (its key read from the page, codes from pyotp), and the password followed by its
code, the same code refused when replayed.

The issuer is http://localhost:PORT: an IP address cannot be a WebAuthn RP ID, and localhost is
a secure context over plain http. Screenshots go to PASSKEY_SHOTS when it names a folder, those
of the code pages (normal, error, 375 px) to E2E_SCREENSHOTS_DIR.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pyotp
import pytest
from playwright.sync_api import Page, Route, sync_playwright

from tests.e2e.servers import CLIENT_ID, PASSWORD, USERNAME, AuthServer, Spa, authserver
from tests.e2e.test_accounts_chromium import three_shots
from tests.e2e.test_spa_chromium import ARGS, TIMEOUT_MS
from tests.e2e.test_spa_chromium import chromium as chromium  # the fixture, shared
from tests.http.signin import pkce_pair

SPA_ORIGIN = "http://127.0.0.1:9"  # never reached: the browser's arrival there is intercepted
# Chromium's virtual authenticator (CDP WebAuthn): a platform passkey that verifies the user.
AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    workdir = tmp_path_factory.mktemp("passkeys")
    with authserver(workdir, [Spa(CLIENT_ID, SPA_ORIGIN)], host="localhost") as auth:
        yield auth


def shot(page: Page, name: str) -> None:
    folder = os.environ.get("PASSKEY_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def sign_in_with_password(page: Page, url: str) -> None:
    page.goto(url)
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")


def test_a_passkey_and_an_authenticator_app_added_on_the_account_page_sign_in(
    chromium: Path,  # noqa: F811 - the fixture imported above
    server: AuthServer,
) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        authenticator = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})
        authenticator_id = authenticator["authenticatorId"]

        # 1. Register on the account page (signed in with the password).
        sign_in_with_password(page, f"{server.url}/login?then=account")
        page.wait_for_url(f"{server.url}/account")
        page.fill("#passkey_name", "Virtual key")
        page.click("#passkey-register")
        page.wait_for_url(f"{server.url}/account?done=passkey_added")
        assert page.locator("#passkey-list").inner_text().count("Virtual key") == 1
        shot(page, "account-with-passkey")
        page.set_viewport_size({"width": 375, "height": 800})
        shot(page, "account-375px")
        page.set_viewport_size({"width": 1280, "height": 800})
        stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})
        assert [c["isResidentCredential"] for c in stored["credentials"]] == [True]

        verifier, challenge = pkce_pair()
        state = secrets.token_urlsafe(8)
        params = {
            "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": SPA_ORIGIN + "/",
            "scope": "openid", "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256",
        }  # fmt: skip
        arrived: list[str] = []

        def at_the_app(route: Route) -> None:
            arrived.append(route.request.url)
            route.fulfill(status=200, content_type="text/html", body="<p>the app</p>")

        page.route(f"{SPA_ORIGIN}/**", at_the_app)

        # 2a. Still signed in with the password alone, the app asks for a second factor: the
        # step-up page takes the passkey (the user's only factor) and upgrades that sign-in.
        page.goto(f"{server.url}/authorize?{urlencode({**params, 'acr_values': 'mfa'})}")
        page.wait_for_url(f"{server.url}/login/factor?**")
        three_shots(page, "step-up-passkey-only")
        page.click("#passkey-sign-in")
        page.wait_for_url(f"{SPA_ORIGIN}/**")
        assert parse_qs(urlsplit(arrived[-1]).query)["state"] == [state]

        # 2. Signed out; an app's authorization request, the passkey alone signs in.
        context.clear_cookies()
        page.goto(f"{server.url}/authorize?{urlencode(params)}")
        page.wait_for_url(f"{server.url}/login?**")
        assert page.locator("#passkey-sign-in").is_visible()
        shot(page, "sign-in-page")
        page.click("#passkey-sign-in")
        page.wait_for_url(f"{SPA_ORIGIN}/**")
        answer = parse_qs(urlsplit(arrived[-1]).query)
        assert answer["state"] == [state] and answer["code"]
        assert verifier  # the code is the app's to exchange; tests/http checks the tokens

        # 3. Signed out again: the password, then the passkey as the second step.
        context.clear_cookies()
        sign_in_with_password(page, f"{server.url}/login?then=account")
        page.wait_for_url(f"{server.url}/login/factor?then=account")
        assert page.locator("#passkey-sign-in").is_visible()
        assert page.locator("#code").count() == 0  # no app, no codes: the passkey alone
        shot(page, "second-step")
        page.click("#passkey-sign-in")
        page.wait_for_url(f"{server.url}/account")
        assert "Virtual key" in page.locator("#passkey-list").inner_text()

        # 4. The authenticator refuses to verify the user: the page says so, and signs in nobody.
        context.clear_cookies()
        cdp.send(
            "WebAuthn.setUserVerified",
            {"authenticatorId": authenticator_id, "isUserVerified": False},
        )
        page.goto(f"{server.url}/login?then=account")
        page.click("#passkey-sign-in")
        error = page.locator("#passkey-error")
        error.wait_for(state="visible")
        assert "did not work" in error.inner_text()
        shot(page, "sign-in-error")
        assert not [c for c in context.cookies() if c["name"] == "authserver_session"]
        cdp.send(
            "WebAuthn.setUserVerified",
            {"authenticatorId": authenticator_id, "isUserVerified": True},
        )

        assert not errors, errors

        # 5. An authenticator app added on the account page (signed in with the passkey), its
        # key read from the page, its codes from pyotp.
        page.click("#passkey-sign-in")
        page.wait_for_url(f"{server.url}/account")
        page.click("form[action='/account/totp'] button")
        page.wait_for_url(f"{server.url}/account/totp")
        three_shots(page, "account-totp")
        totp = pyotp.TOTP(page.locator("#secret").inner_text().replace(" ", ""))
        page.fill("#code", "000000" if totp.now() != "000000" else "111111")
        page.click("form button[type=submit]")
        three_shots(page, "account-totp", error=True)
        # The previous step's code, inside the drift window: the current one is left unused.
        page.fill("#code", totp.at(time.time() - 30))
        page.click("form button[type=submit]")
        page.locator(".recovery-codes").wait_for()
        page.goto(f"{server.url}/account")
        assert "authenticator app" in page.locator("#factors-heading + p").inner_text()

        # 6. Signed out: the password, then the app's code; the same code again is refused.
        context.clear_cookies()
        sign_in_with_password(page, f"{server.url}/login?then=account")
        page.wait_for_url(f"{server.url}/login/factor?then=account")
        three_shots(page, "login-factor")
        code = totp.now()
        page.fill("#code", code)
        page.click("form button[type=submit]")
        page.wait_for_url(f"{server.url}/account")
        context.clear_cookies()
        sign_in_with_password(page, f"{server.url}/login?then=account")
        page.wait_for_url(f"{server.url}/login/factor?then=account")
        page.fill("#code", code)
        page.click("form button[type=submit]")
        assert "used already" in page.locator("#form-error").inner_text()
        three_shots(page, "login-factor", error=True)
        assert not [c for c in context.cookies() if c["name"] == "authserver_session"]
        # The two wrong codes' pages were answered 400, as they should: nothing else went wrong.
        assert (
            errors
            == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"]
            * 2
        ), errors
        browser.close()

"""The admin console in a real browser (issue 27): Debian's Chromium, headless, against a real
`authserver serve`.

- With JavaScript off, an operator opens /console, signs in with the password on the hosted
  sign-in page (the console's own code flow), registers a client and sees its secret once,
  meets the error page of a taken client ID, disables a user, and reads the audit trail that
  names them as the actor.
- An operator with a passkey (Chromium's virtual authenticator, enrolled on the account page):
  the console takes no sign-in without it (acr=mfa), and takes the passkey alone; the operator
  registers a client and rotates its secret (both secrets work meanwhile), disables a user
  whose refresh then fails in that user's own browser context, where the console refused them
  (no admin role), and revokes a key (it leaves the JWKS) after a stale sign-in was asked again.

Screenshots of each page (normal, error, 375 px wide) go to E2E_SCREENSHOTS_DIR when that is
set (a person looks at them; CI does not); every page must fit a phone's width.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from playwright.sync_api import (
    APIRequestContext,
    Browser,
    BrowserContext,
    Page,
    sync_playwright,
)

from tests.e2e.servers import PASSWORD, USERNAME, authserver
from tests.e2e.test_accounts_chromium import DESKTOP, three_shots
from tests.e2e.test_passkeys_chromium import AUTHENTICATOR
from tests.e2e.test_spa_chromium import ARGS, TIMEOUT_MS, chromium  # noqa: F401 - a fixture
from tests.http.signin import pkce_pair

OTHER = "bob"
APP = "http://127.0.0.1:8999"  # bob's app: never reached (its redirect is read, not followed)


def make_user(url: str, workdir: Path, username: str) -> None:
    """`authserver users create`, against the running server's database and keys."""
    env = {
        **os.environ,
        "AUTHSERVER_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'authserver.db'}",
        "AUTHSERVER_ISSUER": url,
        "AUTHSERVER_KEYS_DIR": str(workdir / "keys"),
        "AUTHSERVER_ARGON2_TIME_COST": "1",
        "AUTHSERVER_ARGON2_MEMORY_KIB": "1024",
        "AUTHSERVER_ARGON2_PARALLELISM": "1",
    }
    env.pop("AUTHSERVER_KEY_ENCRYPTION_KEY", None)
    subprocess.run(
        [sys.executable, "-m", "authserver", "users", "create", username, "--password-stdin"],
        env=env, input=PASSWORD, text=True, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


@contextmanager
def console_browser(binary: Path, workdir: Path, **context: Any) -> Iterator[tuple[Page, str]]:
    """A page of Chromium (`binary`; `context`: its options) and the URL of a real
    `authserver serve` whose admin (USERNAME) and one other user (OTHER) exist."""
    with (
        authserver(workdir, [], user_flags=("--admin",)) as auth,
        sync_playwright() as playwright,
    ):
        make_user(auth.url, workdir, OTHER)
        browser = playwright.chromium.launch(executable_path=str(binary), args=ARGS)
        try:
            page = browser.new_context(viewport=DESKTOP, **context).new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page, auth.url
        finally:
            browser.close()


def test_an_operator_registers_a_client_and_disables_a_user(
    chromium: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    with console_browser(chromium, tmp_path, java_script_enabled=False) as (page, url):
        operate(page, url)


def operate(page: Page, url: str) -> None:
    page.goto(f"{url}/console")
    assert page.url.startswith(f"{url}/login?"), page.url
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Clients')")
    assert page.url == f"{url}/console/clients"
    assert "authserver-console" in page.inner_text("table")
    three_shots(page, "console-clients")

    page.click("text=Register a client")
    three_shots(page, "console-client-new")
    register(page, "billing")
    page.wait_for_selector("h1:has-text('Client registered')")
    secret = page.input_value("#secret")
    assert len(secret) > 30
    three_shots(page, "console-client-created")

    page.goto(f"{url}/console/clients/new")
    register(page, "billing")  # taken
    assert "is taken" in page.inner_text(".error")
    three_shots(page, "console-client-taken", error=True)

    page.goto(f"{url}/console/clients/delete?client_id=billing")
    three_shots(page, "console-client-delete")

    page.goto(f"{url}/console/users")
    row = page.locator("tr", has_text=OTHER)
    row.locator("button:has-text('Disable')").click()
    page.wait_for_selector("text=Disabled.")
    assert "disabled" in page.locator("tr", has_text=OTHER).inner_text()
    three_shots(page, "console-users")

    page.goto(f"{url}/console/audit?type=user.disabled")
    events = page.inner_text("table")
    assert "user.disabled" in events
    three_shots(page, "console-audit")


def register(page: Page, client_id: str) -> None:
    page.fill("#client_id", client_id)
    page.fill("#client_name", "Billing <b>service</b>")
    page.fill("#grant_types", "client_credentials")
    page.fill("#scopes", "profile")
    page.click("form[action='/console/clients'] button[type=submit]")


def virtual_authenticator(context: BrowserContext, page: Page) -> None:
    """A passkey authenticator in `page`'s browser (it keeps its credentials across the
    context's cleared cookies)."""
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})


def enrol_passkey(page: Page, url: str) -> None:
    """The admin signs in to the account page with the password and adds a passkey there."""
    page.goto(f"{url}/login?then=account")
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/account")
    page.fill("#passkey_name", "Virtual key")
    page.click("#passkey-register")
    page.wait_for_url(f"{url}/account?done=passkey_added")


def sign_in_with_passkey(page: Page, url: str) -> None:
    """On a sign-in page (the first step or the second), the passkey; back on the console."""
    page.click("#passkey-sign-in")
    page.wait_for_url(f"{url}/console/**")


def test_an_operator_with_a_passkey_rotates_disables_and_revokes(
    chromium: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    with (
        authserver(tmp_path, [], user_flags=("--admin",), host="localhost") as auth,
        sync_playwright() as playwright,
    ):
        url = auth.url
        make_user(url, tmp_path, OTHER)
        auth.cli(
            "clients", "create", "bob-app", "--public", "--grant", "authorization_code",
            "--grant", "refresh_token", "--scope", "openid", "--redirect-uri", f"{APP}/",
        )  # fmt: skip
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        operator = browser.new_context(viewport=DESKTOP)
        operator.set_default_timeout(TIMEOUT_MS)
        page = operator.new_page()
        virtual_authenticator(operator, page)
        enrol_passkey(page, url)

        # Signed in with the password alone, the browser is asked for the factor (acr=mfa).
        page.goto(f"{url}/console")
        page.wait_for_url(f"{url}/login/factor?**")
        sign_in_with_passkey(page, url)
        page.wait_for_selector("h1:has-text('Clients')")
        # Signed out of everything: the passkey alone (user-verified: acr=mfa) signs in.
        operator.clear_cookies()
        page.goto(f"{url}/console")
        page.wait_for_url(f"{url}/login?**")
        sign_in_with_passkey(page, url)
        page.wait_for_selector("h1:has-text('Clients')")

        # A client, and its secret rotated: the old one keeps working for the overlap.
        page.click("text=Register a client")
        register(page, "billing")
        page.wait_for_selector("h1:has-text('Client registered')")
        old = page.input_value("#secret")
        assert client_credentials(url, "billing", old) == 200
        page.goto(f"{url}/console/clients/edit?client_id=billing")
        page.click("text=Rotate the secret")
        page.wait_for_selector("h1:has-text('Secret rotated')")
        new = page.input_value("#secret")
        assert new != old
        assert client_credentials(url, "billing", new) == 200
        assert client_credentials(url, "billing", old) == 200
        assert client_credentials(url, "billing", "not-the-secret") == 401

        # bob, in his own browser: the console refuses him; his app's refresh works.
        bob = not_an_operator(browser, url, viewport=DESKTOP).context
        refreshed = refresh(bob.request, url, app_tokens(bob, url))
        assert isinstance(refreshed, str)

        page.goto(f"{url}/console/users")
        page.locator("tr", has_text=OTHER).locator("button:has-text('Disable')").click()
        page.wait_for_selector("text=Disabled.")
        assert refresh(bob.request, url, refreshed) == 400

        # A key revoke: at once while the sign-in is recent; asked again once it is stale.
        page.goto(f"{url}/console/keys")
        kid = page.locator("tbody tr", has_text="next").locator("code").inner_text()
        revoke = f"{url}/console/keys/revoke?kid={kid}"
        page.goto(revoke)
        assert page.url == revoke and page.locator("h1").inner_text() == "Revoke the key?"
        age_sign_ins(auth.database, 600)
        page.goto(revoke)
        page.wait_for_url(f"{url}/login?**")  # max_age: the sign-in is asked again
        sign_in_with_passkey(page, url)
        assert page.url == revoke
        assert kid in published(url)
        page.click("button:has-text('Revoke the key')")
        page.wait_for_selector("text=The key was revoked")
        assert kid not in published(url)
        browser.close()


def not_an_operator(browser: Browser, url: str, **context: Any) -> Page:
    """OTHER (no admin role) opens the console in a browser of their own (`context`: its
    options) and signs in with the password: refused (403). The page of the refusal."""
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/console")
    page.fill("#username", OTHER)
    page.fill("#password", PASSWORD)
    with page.expect_response(lambda r: r.url.startswith(f"{url}/console/callback")) as callback:
        page.click("button[type=submit]")
    assert callback.value.status == 403
    page.wait_for_selector("text=This account may not use the console")
    return page


def client_credentials(url: str, client_id: str, secret: str) -> int:
    """The status of a client_credentials grant with this secret."""
    answer = httpx.post(
        f"{url}/token",
        data={"grant_type": "client_credentials", "scope": "profile"},
        auth=(client_id, secret),
        trust_env=False,
    )
    return answer.status_code


def published(url: str) -> set[str]:
    jwks = httpx.get(f"{url}/.well-known/jwks.json", trust_env=False)
    assert jwks.status_code == 200
    return {key["kid"] for key in jwks.json()["keys"]}


def app_tokens(context: BrowserContext, url: str) -> str:
    """bob's app (`bob-app`) signs him in by the code flow with his browser's login session
    (the context's cookies; the redirect is read, not followed) and redeems the code; its
    refresh token."""
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code", "client_id": "bob-app", "redirect_uri": f"{APP}/",
        "scope": "openid", "state": "s", "code_challenge": challenge,
        "code_challenge_method": "S256",
    }  # fmt: skip
    authorized = context.request.get(f"{url}/authorize?{urlencode(params)}", max_redirects=0)
    location = authorized.headers["location"]
    assert location.startswith(f"{APP}/?"), location
    code = parse_qs(urlsplit(location).query)["code"][0]
    answer = context.request.post(
        f"{url}/token",
        form={
            "grant_type": "authorization_code", "code": code, "redirect_uri": f"{APP}/",
            "client_id": "bob-app", "code_verifier": verifier,
        },
    )  # fmt: skip
    assert answer.status == 200, answer.text()
    token: str = answer.json()["refresh_token"]
    return token


def refresh(request: APIRequestContext, url: str, refresh_token: str) -> str | int:
    """The next refresh token, or the status of the refusal."""
    fields: dict[str, str | float | bool] = {"grant_type": "refresh_token", "client_id": "bob-app"}
    fields["refresh_token"] = refresh_token
    answer = request.post(f"{url}/token", form=fields)
    if answer.status != 200:
        assert answer.json()["error"] == "invalid_grant", answer.text()
        return answer.status
    token: str = answer.json()["refresh_token"]
    return token


def age_sign_ins(database: Path, seconds: int) -> None:
    """What waiting `seconds` would do to every sign-in, without the wait: the browsers' login
    sessions and the refresh-token families (which carry auth_time into each refreshed access
    token) signed in that much earlier, and the console's access tokens due for a refresh."""
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE login_sessions SET auth_time = COALESCE(auth_time, created_at) - ?", (seconds,)
        )
        db.execute("UPDATE refresh_families SET auth_time = auth_time - ?", (seconds,))
        db.execute("UPDATE console_sessions SET access_expires_at = 0")

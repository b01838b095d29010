"""The account pages in a real browser (issue 23): Debian's Chromium, headless, against a real
`authserver serve` with a real SMTP server (tests/_smtp.py), the links followed from the mail
that server received. One browser start walks both flows:

- forgot password → mail → link → new password → sign-in;
- sign-up with AUTHSERVER_SIGNUP=verified → mail → verify → sign-in.

On the way it takes screenshots of /signup, /password-reset, /password-reset/confirm and
/verify-email (normal, with an error, 375 px wide) into E2E_SCREENSHOTS_DIR when that is set
(a person looks at them; CI does not), and checks what a person would see: the page fits a
phone's width, the error is shown and named to assistive technology, the link is followed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, ViewportSize, sync_playwright

from tests._smtp import Received, SmtpServer, smtp_server
from tests.e2e.servers import PASSWORD, USERNAME, authserver
from tests.e2e.test_spa_chromium import ARGS, TIMEOUT_MS, chromium  # noqa: F401 - a fixture

EMAIL = "alice@example.test"
NEW_PASSWORD = "a brand new passphrase"
PHONE = ViewportSize(width=375, height=740)
DESKTOP = ViewportSize(width=1000, height=760)


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


def shoot(page: Page, name: str) -> None:
    """A screenshot for a person to look at, and what a screenshot would show wrong: the page
    wider than the window (a phone scrolls sideways)."""
    wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not wide, f"{name}: wider than the window"
    folder = os.environ.get("E2E_SCREENSHOTS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def three_shots(page: Page, name: str, error: bool = False) -> None:
    """The page as it is now: at the desktop width, and at a phone's."""
    suffix = "-error" if error else ""
    if error:
        assert page.locator("#form-error, .error").count() >= 1, page.content()
    shoot(page, f"{name}{suffix}")
    page.set_viewport_size(PHONE)
    shoot(page, f"{name}{suffix}-375px")
    page.set_viewport_size(DESKTOP)


def link_in(received: Received, path: str) -> str:
    body = received.message.get_body(("plain",))
    assert body is not None
    found = re.findall(r"https?://\S+" + re.escape(path) + r"\?token=[\w-]+", body.get_content())
    assert len(found) == 1, body.get_content()
    link: str = found[0]
    return link


def sign_in(page: Page, username: str, password: str) -> None:
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_selector("text=You are signed in")


def test_reset_and_sign_up_over_real_mail(
    chromium: Path,  # noqa: F811 - the fixture
    smtp: SmtpServer,
    tmp_path: Path,
) -> None:
    settings = {
        "AUTHSERVER_SMTP_URL": smtp.url,
        "AUTHSERVER_MAIL_FROM": "auth@example.test",
        "AUTHSERVER_SIGNUP": "verified",
    }
    with (
        authserver(tmp_path, [], settings, ("--email", EMAIL, "--email-verified")) as auth,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(chromium), args=ARGS)
        try:
            forgot_password(browser.new_page(viewport=DESKTOP), auth.url, smtp)
            sign_up(browser.new_page(viewport=DESKTOP), auth.url, smtp)
        finally:
            browser.close()


def forgot_password(page: Page, url: str, smtp: SmtpServer) -> None:
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/login")
    page.click("text=Forgot your password?")
    assert page.url == f"{url}/password-reset"
    three_shots(page, "password-reset")
    page.fill("#email", "not an address")
    page.click("button[type=submit]")
    assert page.inner_text("#form-error") == "Enter your email address."
    three_shots(page, "password-reset", error=True)

    page.fill("#email", EMAIL.upper())
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your mail")
    [mail] = smtp.wait_for(1)
    assert mail.envelope_to == [EMAIL]

    page.goto(link_in(mail, "/password-reset/confirm"))
    three_shots(page, "password-reset-confirm")
    page.fill("#password", "short")
    page.click("button[type=submit]")
    assert "shorter than 12 characters" in page.inner_text("#form-error")
    three_shots(page, "password-reset-confirm", error=True)
    page.fill("#password", NEW_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Your password is changed")

    page.click("a:text-is('Sign in')")
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)  # the old one: refused
    page.click("button[type=submit]")
    assert page.inner_text("#form-error") == "The username or password is wrong."
    sign_in(page, USERNAME, NEW_PASSWORD)
    page.close()


def sign_up(page: Page, url: str, smtp: SmtpServer) -> None:
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{url}/login")
    shoot(page, "login")  # its two links: the reset and the sign-up
    page.click("text=Create an account")
    assert page.url == f"{url}/signup"
    three_shots(page, "signup")
    page.fill("#username", USERNAME.upper())  # taken, in any case
    page.fill("#email", "carol@example.test")
    page.fill("#password", "a fine long passphrase")
    page.click("button[type=submit]")
    assert page.inner_text("#form-error") == "This username is taken: choose another."
    assert page.input_value("#email") == "carol@example.test"  # kept; the password is not
    assert page.input_value("#password") == ""
    three_shots(page, "signup", error=True)

    page.fill("#username", "carol")
    page.fill("#password", "a fine long passphrase")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your mail")
    page.click("text=Back to sign-in")
    page.fill("#username", "carol")
    page.fill("#password", "a fine long passphrase")
    page.click("button[type=submit]")
    assert page.inner_text("#form-error") == "The username or password is wrong."  # not yet

    [_, mail] = smtp.wait_for(2)
    assert mail.envelope_to == ["carol@example.test"]
    link = link_in(mail, "/verify-email")
    page.goto(link.split("?")[0] + "?token=not-a-real-one")
    page.click("button[type=submit]")
    assert "does not work any more" in page.content()
    three_shots(page, "verify-email", error=True)
    page.goto(link)
    three_shots(page, "verify-email")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Your account is ready")
    page.click("a:text-is('Sign in')")
    sign_in(page, "carol", "a fine long passphrase")
    page.close()

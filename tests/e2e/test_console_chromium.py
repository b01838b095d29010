"""The admin console in a real browser (issue 27): Debian's Chromium, headless, against a real
`authserver serve`. An operator opens /console, signs in on the hosted sign-in page (the
console's own code flow), registers a client and sees its secret once, meets the error page of
a taken client ID, disables a user, and reads the audit trail that names them as the actor.

Screenshots of each page (normal, error, 375 px wide) go to E2E_SCREENSHOTS_DIR when that is
set (a person looks at them; CI does not); every page must fit a phone's width.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

from tests.e2e.servers import PASSWORD, USERNAME, authserver
from tests.e2e.test_accounts_chromium import DESKTOP, three_shots
from tests.e2e.test_spa_chromium import ARGS, TIMEOUT_MS, chromium  # noqa: F401 - a fixture

OTHER = "bob"


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

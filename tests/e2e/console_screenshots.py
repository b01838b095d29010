"""Screenshots of every admin console page, for a person to look at and for docs/console.md.

    .venv/bin/python -m tests.e2e.console_screenshots --out docs/console/          # the docs' set
    .venv/bin/python -m tests.e2e.console_screenshots --out /tmp/shots --all       # every shot

(or `scripts/console-screenshots`, which passes its arguments on). It starts a real
`authserver serve` on a temporary SQLite database (tests/e2e/servers.py), seeds it through the
command line and the console itself (users, clients, a rotated and a revoked key, a resource, a
registration token, and the audit rows all that leaves), and walks every console page in Debian's
Chromium as the operator `alice`, who has a passkey (a virtual authenticator): each page at 1280 px
wide, cropped to its card, and at 375 px (a phone), plus its error states (a form with a validation
error, a refused action). A page wider than the phone's window is reported, and the run fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from playwright.sync_api import Browser, Page, ViewportSize, sync_playwright

from tests.e2e.servers import PASSWORD, USERNAME, AuthServer, authserver
from tests.e2e.test_console_chromium import (
    OTHER,
    enrol_passkey,
    make_user,
    not_an_operator,
    sign_in_with_passkey,
    virtual_authenticator,
)
from tests.e2e.test_spa_chromium import ARGS, CHROMIUM, TIMEOUT_MS

WIDE = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=375, height=740)
# A wide shot is cut off below this (the audit trail's 50 rows: 600 KB of PNG, for the docs).
TALLEST = 1200
# The shots docs/console.md shows (the rest with --all).
DOCS = {
    "sign-in-factor",
    "clients",
    "client-new",
    "client-created",
    "client-edit",
    "client-delete",
    "users",
    "user-new-error",
    "user-edit",
    "user-delete",
    "user-sessions",
    "keys",
    "keys-wait",
    "key-revoke",
    "resources",
    "registration-token-made",
    "registration-tokens",
    "audit",
    "refused",
    "clients-375px",
    "keys-375px",
}


@dataclass
class Camera:
    """Takes each page's shots into `out`; remembers what it took and what was too wide."""

    out: Path
    every: bool
    taken: list[str] = field(default_factory=list)
    too_wide: list[str] = field(default_factory=list)

    def shots(self, page: Page, name: str, phone: bool = True, tallest: int = TALLEST) -> None:
        """The page at 1280 px (its card, cropped, at most `tallest` high) and at 375 px (the
        whole page)."""
        self._take(page, name, wide=True, tallest=tallest)
        if phone:
            page.set_viewport_size(PHONE)
            if page.evaluate("document.documentElement.scrollWidth > window.innerWidth"):
                self.too_wide.append(name)
            self._take(page, f"{name}-375px", wide=False)
            page.set_viewport_size(WIDE)

    def _take(self, page: Page, name: str, wide: bool, tallest: int = TALLEST) -> None:
        if not self.every and name not in DOCS:
            return
        path = str(self.out / f"{name}.png")
        card = page.locator(".card").bounding_box()
        if wide and card is not None:
            card["height"] = min(card["height"], tallest)
            page.screenshot(path=path, clip=card, full_page=True)
        else:
            page.screenshot(path=path, full_page=True)
        self.taken.append(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/console"), help="the folder")
    parser.add_argument("--all", action="store_true", help="every shot, not only the docs' set")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM, help="Chromium's binary")
    args = parser.parse_args(argv)
    if not args.chromium.exists():
        print(f"no Chromium at {args.chromium}: apt-get install chromium", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    camera = Camera(args.out, args.all)
    with (
        tempfile.TemporaryDirectory() as workdir,
        seeded(Path(workdir)) as auth,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(args.chromium), args=ARGS)
        try:
            walk(browser, auth, camera)
        finally:
            browser.close()
    total = sum((args.out / f"{name}.png").stat().st_size for name in camera.taken)
    print(f"{len(camera.taken)} screenshots in {args.out}, {total // 1024} KiB")
    if camera.too_wide:
        print(f"wider than a 375 px phone: {', '.join(camera.too_wide)}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def seeded(workdir: Path) -> Iterator[AuthServer]:
    """A real server (issuer http://localhost:PORT, for passkeys) with the admin `alice`, a few
    users (one of them `OTHER`), and a key ring that has been rotated twice."""
    rotate = ("keys", "rotate", "--force")
    with authserver(
        workdir, [], user_flags=("--admin",), host="localhost", before_serve=(rotate, rotate)
    ) as auth:
        for username in (OTHER, "carol", "dave.operations", "erin"):
            make_user(auth.url, workdir, username)
        yield auth


def walk(browser: Browser, auth: AuthServer, camera: Camera) -> None:
    url = auth.url
    context = browser.new_context(viewport=WIDE)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    virtual_authenticator(context, page)
    enrol_passkey(page, url)
    context.clear_cookies()

    # Signing in: the password, then (alice has a passkey) the second factor.
    page.goto(f"{url}/console")
    page.wait_for_url(f"{url}/login?**")
    camera.shots(page, "sign-in")
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/login/factor?**")
    camera.shots(page, "sign-in-factor")
    sign_in_with_passkey(page, url)

    seed_through_the_console(page, url)
    clients(page, url, camera)
    users(page, url, camera)
    resources_and_tokens(page, url, camera)
    keys(page, url, camera)

    page.goto(f"{url}/console/audit")
    camera.shots(page, "audit")
    page.goto(f"{url}/console/audit?type=client.created")
    camera.shots(page, "audit-filtered")
    page.goto(f"{url}/console/audit?before=abc")
    camera.shots(page, "audit-error")
    context.close()

    # A user without the admin role: refused, and nothing kept.
    page = not_an_operator(browser, url, viewport=WIDE)
    camera.shots(page, "refused")
    page.context.close()


def seed_through_the_console(page: Page, url: str) -> None:
    """Clients, a disabled one and a disabled user, a resource: each an audit row too."""
    for client_id, name, public, grants, redirect in (
        ("billing", "Billing service", False, "client_credentials", ""),
        ("web-shop", "Web shop", True, "authorization_code refresh_token",
         "https://shop.example/callback"),
        ("reports", "Monthly <b>reports</b>", False, "client_credentials", ""),
        ("mobile-app", "", True, "authorization_code refresh_token",
         "https://app.example/oauth2redirect"),
    ):  # fmt: skip
        page.goto(f"{url}/console/clients/new")
        fill_client(page, client_id, name, grants, redirect, public)
        if page.locator(".error").count():
            raise RuntimeError(f"{client_id}: {page.inner_text('.error')}")
    switch(page, f"{url}/console/clients", "reports", "Disable")
    switch(page, f"{url}/console/users", "erin", "Disable")
    page.goto(f"{url}/console/resources")
    page.fill("#resource", "https://api.example/")
    page.fill("#resource_scopes", "orders:read orders:write")
    page.click("form[action='/console/resources'] button[type=submit]")
    page.wait_for_selector("text=Registered.")


def fill_client(
    page: Page, client_id: str, name: str, grants: str, redirect: str, public: bool = False
) -> None:
    page.fill("#client_id", client_id)
    page.fill("#client_name", name)
    if public:
        page.check("input[name=public]")
    page.fill("#grant_types", grants)
    page.fill("#scopes", "openid profile" if redirect else "profile")
    page.fill("#redirect_uris", redirect)
    page.click("form[action='/console/clients'] button[type=submit]")


def switch(page: Page, list_url: str, name: str, button: str) -> None:
    page.goto(list_url)
    page.locator("tr", has_text=name).locator(f"button:has-text('{button}')").click()
    page.wait_for_selector("p.notice")


def clients(page: Page, url: str, camera: Camera) -> None:
    page.goto(f"{url}/console/clients")
    camera.shots(page, "clients")
    page.goto(f"{url}/console/clients/new")
    camera.shots(page, "client-new")
    fill_client(page, "intranet", "Intranet", "authorization_code", "not a URI")
    camera.shots(page, "client-new-error")
    page.goto(f"{url}/console/clients/new")
    fill_client(page, "partner-api", "Partner API", "client_credentials", "")
    page.wait_for_selector("h1:has-text('Client registered')")
    camera.shots(page, "client-created")
    page.goto(f"{url}/console/clients/new")
    fill_client(page, "partner-api", "Partner API", "client_credentials", "")
    camera.shots(page, "client-taken")
    page.goto(f"{url}/console/clients/edit?client_id=web-shop")
    camera.shots(page, "client-edit")
    page.goto(f"{url}/console/clients/edit?client_id=billing")
    page.click("text=Rotate the secret")
    page.wait_for_selector("h1:has-text('Secret rotated')")
    camera.shots(page, "client-secret")
    page.goto(f"{url}/console/clients/delete?client_id=partner-api")
    camera.shots(page, "client-delete")


def users(page: Page, url: str, camera: Camera) -> None:
    page.goto(f"{url}/console/users")
    camera.shots(page, "users")
    page.goto(f"{url}/console/users?done=disabled")
    camera.shots(page, "users-notice", phone=False)
    # The operator's own sessions: this browser, and the console's app session.
    own = page.locator("tr", has_text=USERNAME).locator("a:has-text('Sessions')")
    page.goto(url + (own.get_attribute("href") or ""))
    camera.shots(page, "user-sessions")
    sub = page.url.split("sub=")[1]
    page.goto(f"{url}/console/users/reset-factors?sub={sub}")
    camera.shots(page, "user-factors-reset")
    page.goto(f"{url}/console/users/new")
    camera.shots(page, "user-new")
    # A weak password: the form again, saying why, with all but the password kept.
    page.fill("#username", "frank")
    page.fill("#password", "short")
    page.fill("#roles", "support")
    page.fill("#email", "frank@example.test")
    page.fill("#name", "Frank Example")
    page.click("form[action='/console/users'] button[type=submit]")
    page.wait_for_selector("#form-error")
    camera.shots(page, "user-new-error")
    page.goto(f"{url}/console/users?q={OTHER}")
    edit = url + (
        page.locator("tr", has_text=OTHER).locator("a:has-text('Edit…')").get_attribute("href")
        or ""
    )
    page.goto(edit)
    page.fill("#roles", "support billing")
    page.fill("#email", f"{OTHER}@example.test")
    page.fill("#name", "Bob Example")
    page.fill("#locale", "en-GB")
    page.click("form[action='/console/users/edit'] button[type=submit]")
    page.wait_for_selector("text=Saved.")
    page.goto(edit)
    camera.shots(page, "user-edit", tallest=1800)  # whole: its password and delete below
    other = page.url.split("sub=")[1]
    page.fill("#email", "not an address")
    page.click("form[action='/console/users/edit'] button[type=submit]")
    page.wait_for_selector("#form-error")
    camera.shots(page, "user-edit-error")
    page.goto(f"{url}/console/users/delete?sub={other}")
    camera.shots(page, "user-delete")


def resources_and_tokens(page: Page, url: str, camera: Camera) -> None:
    page.goto(f"{url}/console/resources")
    camera.shots(page, "resources")
    page.fill("#resource", "api.example/no-scheme")
    page.click("form[action='/console/resources'] button[type=submit]")
    camera.shots(page, "resource-error")
    page.goto(f"{url}/console/resources/delete?resource=https%3A%2F%2Fapi.example%2F")
    camera.shots(page, "resource-delete")
    page.goto(f"{url}/console/registration-tokens")
    camera.shots(page, "registration-token")
    page.click("text=Make the token")
    page.wait_for_selector("h1:has-text('Registration token made')")
    camera.shots(page, "registration-token-made")
    page.goto(f"{url}/console/registration-tokens")  # the token made, listed
    camera.shots(page, "registration-tokens")
    page.fill("#ttl", "5")
    page.click("text=Make the token")
    page.wait_for_selector("#form-error")
    camera.shots(page, "registration-token-error")


def keys(page: Page, url: str, camera: Camera) -> None:
    """The oldest (retired) key revoked after its confirmation page: every state shown."""
    page.goto(f"{url}/console/keys")
    retired = page.locator("tbody tr", has_text="retired").last.locator("code").inner_text()
    page.goto(f"{url}/console/keys/revoke?kid={retired}")
    camera.shots(page, "key-revoke")
    page.click("button:has-text('Revoke the key')")
    page.wait_for_selector("text=The key was revoked")
    page.goto(f"{url}/console/keys")
    camera.shots(page, "keys")
    page.click("text=Rotate the keys")  # the next key is young: the wait
    page.wait_for_selector("text=Not rotated")
    camera.shots(page, "keys-wait")


if __name__ == "__main__":
    sys.exit(main())

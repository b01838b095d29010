"""Accessibility of the admin console (issue 27): axe-core (npm, pinned in tests/e2e/axe) run in
Debian's Chromium over every console page, a real `authserver serve` behind them, failing on
any serious or critical violation. Every violation found (any impact) is printed for the
report (pytest -s).

The console sends no script and its CSP allows none; the browser context here bypasses the CSP
and runs JavaScript only so that axe can run in the page (the pages themselves are unchanged).
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page

from tests.e2e.servers import PASSWORD, USERNAME
from tests.e2e.test_console_chromium import OTHER, console_browser, not_an_operator, register
from tests.e2e.test_spa_chromium import chromium  # noqa: F401 - a fixture
from tests.npm_packages import install

AXE = Path(__file__).parent / "axe"
SERIOUS = {"serious", "critical"}
# The violations, and how many rules passed (that axe ran over the page at all).
RUN = """async () => {
  const found = await axe.run(document);
  return [found.passes.length, found.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map(n => n.target.join(" ")),
  }))];
}"""


def test_every_console_page_has_no_serious_accessibility_violation(
    chromium: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    install(AXE)
    source = (AXE / "node_modules" / "axe-core" / "axe.min.js").read_text()
    with console_browser(chromium, tmp_path, bypass_csp=True) as (page, url):
        found = visit_every_page(page, url, source)
    for name, violations in found.items():
        for violation in violations:
            print(name, violation["impact"], violation["id"], violation["nodes"])
    serious = {
        name: [v for v in violations if v["impact"] in SERIOUS]
        for name, violations in found.items()
    }
    assert not any(serious.values()), serious
    assert len(found) >= 35, sorted(found)


def visit_every_page(page: Page, url: str, source: str) -> dict[str, list[dict[str, object]]]:
    found: dict[str, list[dict[str, object]]] = {}

    def check(name: str, on: Page = page) -> None:
        on.evaluate(source)
        passed, found[name] = on.evaluate(RUN)
        print(name, on.url, f"{passed} rules passed, {len(found[name])} violated")
        assert passed >= 10, (name, passed)

    page.goto(f"{url}/console")
    check("sign-in")  # the hosted sign-in page, for the console
    page.fill("#username", USERNAME)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Clients')")
    check("clients")

    page.goto(f"{url}/console/clients/new")
    check("client-new")
    register(page, "billing")
    page.wait_for_selector("h1:has-text('Client registered')")
    check("client-created")
    page.goto(f"{url}/console/clients/new")
    register(page, "billing")  # taken: the form again, saying so
    page.wait_for_selector("#form-error")
    check("client-taken")
    page.goto(f"{url}/console/clients/edit?client_id=billing")
    check("client-edit")
    page.fill("#redirect_uris", "not a uri")
    page.click("form[action='/console/clients/edit'] button[type=submit]")
    page.wait_for_selector("#form-error")
    check("client-edit-refused")
    page.click("text=Rotate the secret")
    page.wait_for_selector("h1:has-text('Secret rotated')")
    check("client-secret")
    page.goto(f"{url}/console/clients/delete?client_id=billing")
    check("client-delete")
    page.goto(f"{url}/console/registration-tokens")
    check("registration-token")
    page.fill("#ttl", "5")
    page.click("text=Make the token")  # too short: the form again
    page.wait_for_selector("#form-error")
    check("registration-token-refused")
    page.goto(f"{url}/console/registration-tokens")
    page.click("text=Make the token")
    page.wait_for_selector("h1:has-text('Registration token made')")
    check("registration-token-made")
    page.goto(f"{url}/console/registration-tokens")  # the token made, listed
    revoke = page.locator("a:has-text('Revoke…')").first.get_attribute("href") or ""
    check("registration-tokens-listed")
    page.goto(url + revoke)
    check("registration-token-revoke")

    page.goto(f"{url}/console/users")
    check("users")
    link = page.locator("tr", has_text=OTHER).locator("a:has-text('Sessions')")
    sub = re.sub(r".*sub=", "", link.get_attribute("href") or "")
    page.goto(f"{url}/console/users/sessions?sub={sub}")
    check("user-sessions")
    # The operator's own: a browser and the console's app session, in tables.
    page.goto(f"{url}/console/users")
    own = page.locator("tr", has_text=USERNAME).locator("a:has-text('Sessions')")
    page.goto(url + (own.get_attribute("href") or ""))
    page.wait_for_selector("form[action='/console/users/sessions/end']")
    check("user-sessions-own")
    page.goto(f"{url}/console/users/reset-factors?sub={sub}")
    check("user-factors-reset")
    page.goto(f"{url}/console/users/new")
    check("user-new")
    page.fill("#username", "frank")
    page.fill("#password", "short")
    page.fill("#name", "Frank")
    page.click("form[action='/console/users'] button[type=submit]")
    page.wait_for_selector("#form-error")
    check("user-new-refused")
    page.goto(f"{url}/console/users?q={'x' * 300}")
    page.wait_for_selector("#form-error")
    check("users-search-refused")
    page.goto(f"{url}/console/users/edit?sub={sub}")
    check("user-edit")
    page.fill("#password", "short")
    page.click("text=Set the password")  # refused by the policy: the form again
    page.wait_for_selector("#form-error:has-text('shorter than')")
    check("user-password-refused")
    page.goto(f"{url}/console/users/delete?sub={sub}")
    check("user-delete")

    page.goto(f"{url}/console/resources")
    page.fill("#resource", "https://api.example/")
    page.fill("#resource_scopes", "read")
    page.click("form[action='/console/resources'] button[type=submit]")
    page.wait_for_selector("text=Registered.")
    check("resources")
    page.fill("#resource", "api.example/no-scheme")
    page.click("form[action='/console/resources'] button[type=submit]")
    page.wait_for_selector("#form-error")
    check("resource-refused")
    page.goto(f"{url}/console/resources/delete?resource=https%3A%2F%2Fapi.example%2F")
    check("resource-delete")

    page.goto(f"{url}/console/keys")
    check("keys")
    page.click("text=Rotate the keys")  # the next key is young: the wait
    page.wait_for_selector("text=Not rotated")
    check("keys-wait")
    kid = page.locator("td code").first.inner_text()
    page.goto(f"{url}/console/keys/revoke?kid={kid}")
    check("key-revoke")

    page.goto(f"{url}/console/audit")
    check("audit")
    page.goto(f"{url}/console/users?done=disabled")
    check("users-notice")
    page.goto(f"{url}/console/audit?before=abc")
    page.wait_for_selector("#form-error")
    check("audit-refused")
    # A table row's button refused (the user gone meanwhile): the sentence above the page.
    page.goto(f"{url}/console/users")
    row = page.locator("tr", has_text="frank")
    assert row.count() == 0  # never created: the refused form changed nothing
    disable = page.locator("form[action='/console/users/disable']").first
    disable.locator("input[name=sub]").evaluate("input => input.value = 'nobody'")
    disable.locator("button").click()
    page.wait_for_selector("#form-error")
    check("users-row-refused")

    # A user without the admin role, in a browser of their own: refused (403).
    browser = page.context.browser
    assert browser is not None
    other = not_an_operator(browser, url, bypass_csp=True)
    check("refused", other)
    other.context.close()
    return found

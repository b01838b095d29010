"""Operators and second factors: GET /admin/users/{sub} names the kinds enrolled, and
DELETE /admin/users/{sub}/factors removes them and ends every session of the user."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Registry, assert_oauth_error
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    authorize,
    sign_in,
    web_client,
)
from tests.http.test_account_factors import enrol


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def root(client: httpx.AsyncClient, registry: Registry) -> dict[str, str]:
    await registry.client("spa", public=True, grant_types=("password",), scopes=("admin",))
    await web_client(registry)
    return await admin_headers(client, registry)


async def test_the_reset_removes_the_factors_and_ends_every_session(
    client: httpx.AsyncClient,
    registry: Registry,
    root: dict[str, str],
    clock: Clock,
    engine: AsyncEngine,
    app: object,
) -> None:
    sub = await registry.user("alice")
    transport = client._transport
    async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as browser:
        await enrol(browser, clock)
        shown = await client.get(f"/admin/users/{sub}", headers=root)
        assert shown.status_code == 200 and shown.json()["factors"] == ["totp"]

        reset = await client.delete(f"/admin/users/{sub}/factors", headers=root)
        assert reset.status_code == 204, reset.text

        # The browser that enrolled is signed out; the next sign-in asks the password only.
        assert (await browser.get("/account")).status_code == 303
        login = (await authorize(browser, Flow.new(WEB).params)).headers["location"]
        signed_in = await sign_in(browser, login)
        assert signed_in.status_code == 303
        assert not signed_in.headers["location"].startswith("/login/factor")
    assert (await client.get(f"/admin/users/{sub}", headers=root)).json()["factors"] == []
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text("SELECT actor, action FROM audit_events WHERE target = :s"), {"s": sub}
            )
        ).all()
        codes = (await conn.execute(text("SELECT count(*) FROM recovery_codes"))).scalar_one()
    assert codes == 0
    actions = {row.action for row in rows}
    assert {"factor.enrolled", "factor.removed", "user.factors_reset"} <= actions


async def test_the_reset_needs_admin_and_an_existing_user(
    client: httpx.AsyncClient, registry: Registry, root: dict[str, str]
) -> None:
    assert_oauth_error(await client.delete("/admin/users/nobody/factors"), 401, "invalid_token")
    assert_oauth_error(
        await client.delete("/admin/users/nobody/factors", headers=root), 404, "not_found"
    )


async def test_deleting_a_user_takes_their_sealed_secret_and_recovery_codes_with_them(
    client: httpx.AsyncClient,
    registry: Registry,
    root: dict[str, str],
    clock: Clock,
    engine: AsyncEngine,
) -> None:
    sub = await registry.user("alice")
    transport = client._transport
    async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as browser:
        await enrol(browser, clock)
    assert (await client.delete(f"/admin/users/{sub}", headers=root)).status_code == 204

    # The row stays for its sub; nothing secret of the user's stays with it.
    async with engine.connect() as conn:
        left = {
            table: (
                await conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE user_id = :s"), {"s": sub}
                )
            ).scalar_one()
            for table in ("second_factors", "recovery_codes")
        }
    assert left == {"second_factors": 0, "recovery_codes": 0}

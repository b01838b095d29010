"""Privileges taken away reach live sessions (N1).

A refresh issues at most what its family was granted AND what the user and the client hold as
the rotating statement runs; a client that may no longer refresh is refused and spends nothing;
an operator's demotion of an admin ends that user's admin sessions at once, with their access
tokens, audited. Checked on a second instance too, whose memory of the client is stale.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.passwords import Verdict
from authserver.config import Settings
from authserver.services import Services
from authserver.tokens.refresh import Spent
from tests._refresh_rows import spent_at
from tests.conftest import Clock, Registry, assert_oauth_error, password_login
from tests.http.signin import INSECURE_COOKIES, WEB, Flow, code_for, exchange, web_client
from tests.http.test_admin_lifecycle import active, another_instance, audit_rows, root, rs
from tests.http.test_refresh import family_row, ok, sid_of

__all__ = ["root", "rs"]  # fixtures, used by name

ADMIN_PASSWORD = "carol's passphrase"


async def refresh(
    http: httpx.AsyncClient, token: str, path: str = "/token", client_id: str = "spa", **extra: str
) -> httpx.Response:
    data = {"refresh_token": token, "client_id": client_id, **extra}
    if path == "/token":
        data["grant_type"] = "refresh_token"
    return await http.post(path, data=data)


def scope_of(access_token: str) -> str:
    scope: str = jwt.decode(access_token, options={"verify_signature": False})["scope"]
    return scope


@pytest.fixture
async def carol(client: httpx.AsyncClient, registry: Registry, spa: str) -> tuple[str, Any]:
    """An admin user, logged in through the spa client with the admin scope."""
    sub = await registry.user("carol", ADMIN_PASSWORD, scopes=("profile",), admin=True)
    body = ok(await password_login(client, "carol", ADMIN_PASSWORD, scope="profile admin"))
    assert body["scope"] == "profile admin"
    return sub, body


@pytest.fixture
async def bob(client: httpx.AsyncClient, registry: Registry) -> tuple[str, Any]:
    """A user holding two plain scopes, logged in through a client allowed both."""
    await registry.client(
        "app", public=True, grant_types=("password", "refresh_token"), scopes=("profile", "billing")
    )
    sub = await registry.user("bob", "battery staple", scopes=("profile", "billing"))
    body = ok(await password_login(client, "bob", "battery staple", client_id="app"))
    assert body["scope"] == "profile billing"
    return sub, body


# --- admin taken away ------------------------------------------------------------------------


async def test_a_demoted_admin_loses_every_admin_session_at_once(
    client: httpx.AsyncClient,
    carol: tuple[str, Any],
    root: dict[str, str],
    rs: tuple[str, str],
    engine: AsyncEngine,
) -> None:
    sub, login = carol
    own = {"Authorization": f"Bearer {login['access_token']}"}
    assert (await client.get(f"/admin/users/{sub}", headers=own)).status_code == 200

    demoted = await client.patch(f"/admin/users/{sub}", json={"admin": False}, headers=root)
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["admin"] is False

    # The session is over: its refresh token and its access token with it, as for a logout.
    assert_oauth_error(await refresh(client, login["refresh_token"]), 400, "invalid_grant")
    assert not await active(client, rs, login["access_token"])
    promote = await client.patch(f"/admin/users/{sub}", json={"admin": True}, headers=own)
    assert_oauth_error(promote, 401, "invalid_token")
    assert (await family_row(engine, sid_of(login["access_token"]))).revoked_reason == "demoted"
    ended = [
        e
        for e in await audit_rows(engine, "family.revoked")
        if e[1] == sid_of(login["access_token"])
    ]
    assert len(ended) == 1 and ended[0][2]["reason"] == "demoted"

    # A new login gets no admin, and its token cannot promote its user again.
    again = ok(await password_login(client, "carol", ADMIN_PASSWORD, scope="profile admin"))
    assert again["scope"] == "profile"
    mine = {"Authorization": f"Bearer {again['access_token']}"}
    promote = await client.patch(f"/admin/users/{sub}", json={"admin": True}, headers=mine)
    assert_oauth_error(promote, 403, "insufficient_scope")


async def test_a_demotion_leaves_sessions_without_admin_alone(
    client: httpx.AsyncClient, carol: tuple[str, Any], root: dict[str, str]
) -> None:
    sub, _ = carol
    plain = ok(await password_login(client, "carol", ADMIN_PASSWORD))
    assert plain["scope"] == "profile"
    demoted = await client.patch(f"/admin/users/{sub}", json={"admin": False}, headers=root)
    assert demoted.status_code == 200, demoted.text
    assert ok(await refresh(client, plain["refresh_token"]))["scope"] == "profile"


async def test_admin_removed_from_the_row_by_hand_is_not_refreshed(
    client: httpx.AsyncClient, carol: tuple[str, Any], engine: AsyncEngine
) -> None:
    """No operator's demotion ran (nothing revoked the family): the rotating statement reads
    what the user holds now, and the token it yields cannot promote its user again."""
    sub, login = carol
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE users SET scopes = 'profile' WHERE id = :id"), {"id": sub})

    rotated = ok(await refresh(client, login["refresh_token"]))
    assert rotated["scope"] == "profile"
    assert scope_of(rotated["access_token"]) == "profile"
    mine = {"Authorization": f"Bearer {rotated['access_token']}"}
    promote = await client.patch(f"/admin/users/{sub}", json={"admin": True}, headers=mine)
    assert_oauth_error(promote, 403, "insufficient_scope")
    # Asking for it by name changes nothing: the family holds it, the user no longer does.
    again = ok(await refresh(client, rotated["refresh_token"], scope="profile admin"))
    assert again["scope"] == "profile"


async def test_a_refresh_racing_a_demotion_yields_no_admin_token_that_outlives_it(
    client: httpx.AsyncClient,
    carol: tuple[str, Any],
    root: dict[str, str],
    rs: tuple[str, str],
) -> None:
    """Whatever the interleaving: once the demotion has answered, no access token with the
    admin scope is live and no refresh token of the session yields one."""
    sub, login = carol
    issued: list[str] = [login["access_token"]]
    latest = [login["refresh_token"]]
    demoted = anyio.Event()

    async def keep_refreshing() -> None:
        while True:
            response = await refresh(client, latest[0])
            if response.status_code != 200:
                assert_oauth_error(response, 400, "invalid_grant")
                return
            body = response.json()
            issued.append(body["access_token"])
            latest[0] = body["refresh_token"]
            if demoted.is_set():
                return

    async def demote() -> None:
        await anyio.sleep(0)
        response = await client.patch(f"/admin/users/{sub}", json={"admin": False}, headers=root)
        assert response.status_code == 200, response.text
        demoted.set()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(keep_refreshing)
        tasks.start_soon(demote)

    for token in issued:
        if "admin" in scope_of(token).split():
            assert not await active(client, rs, token)
    after = await refresh(client, latest[0])
    assert after.status_code == 400 or "admin" not in after.json()["scope"].split()


async def test_a_rotation_that_ran_before_a_demotion_answered_after_it_yields_a_dead_token(
    client: httpx.AsyncClient,
    carol: tuple[str, Any],
    root: dict[str, str],
    rs: tuple[str, str],
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race made deterministic: the rotating statement saw carol as an admin, then the
    demotion committed and answered, then the refresh answered with its admin token. That
    token's session was ended by the demotion, so it is refused everywhere, and so is the
    refresh token that came with it."""
    sub, login = carol
    spend = services.families.spend

    async def demoted_meanwhile(*args: Any, **kwargs: Any) -> Spent | None:
        spent = await spend(*args, **kwargs)
        response = await client.patch(f"/admin/users/{sub}", json={"admin": False}, headers=root)
        assert response.status_code == 200, response.text
        return spent

    monkeypatch.setattr(services.families, "spend", demoted_meanwhile)
    raced = ok(await refresh(client, login["refresh_token"]))
    monkeypatch.setattr(services.families, "spend", spend)

    assert raced["scope"] == "profile admin"  # what the statement saw, before the demotion
    assert not await active(client, rs, raced["access_token"])
    mine = {"Authorization": f"Bearer {raced['access_token']}"}
    promote = await client.patch(f"/admin/users/{sub}", json={"admin": True}, headers=mine)
    assert_oauth_error(promote, 401, "invalid_token")
    assert_oauth_error(await refresh(client, raced["refresh_token"]), 400, "invalid_grant")


# --- plain scopes taken away -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/token", "/refresh"])
async def test_a_users_reduced_scopes_narrow_the_next_refresh(
    client: httpx.AsyncClient, bob: tuple[str, Any], root: dict[str, str], path: str
) -> None:
    sub, login = bob
    changed = await client.patch(f"/admin/users/{sub}", json={"scopes": ["profile"]}, headers=root)
    assert changed.status_code == 200, changed.text

    rotated = ok(await refresh(client, login["refresh_token"], path, "app"))
    assert rotated["scope"] == "profile"
    assert scope_of(rotated["access_token"]) == "profile"

    # Given back, the family's scope is what bounds the session again.
    given = await client.patch(
        f"/admin/users/{sub}", json={"scopes": ["profile", "billing"]}, headers=root
    )
    assert given.status_code == 200, given.text
    assert (
        ok(await refresh(client, rotated["refresh_token"], path, "app"))["scope"]
        == "profile billing"
    )


async def test_a_clients_reduced_scopes_narrow_the_next_refresh_on_every_instance(
    client: httpx.AsyncClient,
    bob: tuple[str, Any],
    root: dict[str, str],
    settings: Settings,
    clock: Clock,
) -> None:
    _, login = bob
    async with another_instance(settings, clock) as other:
        # The other instance now remembers the client with both scopes (SQLite: no NOTIFY).
        first = ok(await refresh(other, login["refresh_token"], client_id="app"))
        assert first["scope"] == "profile billing"

        changed = await client.patch(
            "/admin/clients/app", json={"scopes": ["billing"]}, headers=root
        )
        assert changed.status_code == 200, changed.text

        elsewhere = ok(await refresh(other, first["refresh_token"], client_id="app"))
        assert elsewhere["scope"] == "billing"
        here = ok(await refresh(client, elsewhere["refresh_token"], client_id="app"))
        assert here["scope"] == "billing"
        assert scope_of(here["access_token"]) == "billing"


# --- the refresh_token grant taken away ------------------------------------------------------


async def test_a_client_no_longer_allowed_to_refresh_is_refused_and_spends_nothing(
    client: httpx.AsyncClient,
    bob: tuple[str, Any],
    root: dict[str, str],
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    _, login = bob
    async with another_instance(settings, clock) as other:
        first = ok(
            await refresh(other, login["refresh_token"], client_id="app")
        )  # remembered there as allowed
        token = first["refresh_token"]

        changed = await client.patch(
            "/admin/clients/app", json={"grant_types": ["password"]}, headers=root
        )
        assert changed.status_code == 200, changed.text

        # RFC 6749 §5.2: "The authenticated client is not authorized to use this
        # authorization grant type."
        for path in ("/token", "/refresh"):
            assert_oauth_error(
                await refresh(client, token, path, "app"), 400, "unauthorized_client"
            )
        # Where the client is still remembered as allowed, the rotating statement refuses.
        assert (await refresh(other, token, client_id="app")).status_code == 400
        assert await spent_at(engine, token) is None
        assert (await family_row(engine, sid_of(first["access_token"]))).revoked_at is None

        given = await client.patch(
            "/admin/clients/app", json={"grant_types": ["password", "refresh_token"]}, headers=root
        )
        assert given.status_code == 200, given.text
        assert ok(await refresh(client, token, client_id="app"))["scope"] == "profile billing"


async def test_a_login_that_read_the_user_before_a_demotion_starts_no_admin_session(
    client: httpx.AsyncClient,
    carol: tuple[str, Any],
    root: dict[str, str],
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The login read carol as an admin, then the demotion committed (and answered) while her
    password was being checked: the session is not started with a scope she lost."""
    sub, _ = carol
    verify = services.passwords.verify

    async def demoted_meanwhile(stored_hash: str | None, password: str) -> Verdict:
        response = await client.patch(f"/admin/users/{sub}", json={"admin": False}, headers=root)
        assert response.status_code == 200, response.text
        return await verify(stored_hash, password)

    monkeypatch.setattr(services.passwords, "verify", demoted_meanwhile)
    response = await password_login(client, "carol", ADMIN_PASSWORD, scope="profile admin")
    assert_oauth_error(response, 400, "invalid_grant")
    monkeypatch.setattr(services.passwords, "verify", verify)
    again = ok(await password_login(client, "carol", ADMIN_PASSWORD, scope="profile admin"))
    assert again["scope"] == "profile"


@pytest.mark.parametrize("settings_overrides", [INSECURE_COOKIES])
async def test_a_code_issued_before_a_demotion_starts_no_admin_session(
    client: httpx.AsyncClient, carol: tuple[str, Any], root: dict[str, str], registry: Registry
) -> None:
    sub, _ = carol
    await web_client(registry, scopes=("openid", "profile", "admin"))
    flow = Flow.new(WEB, scope="openid admin")
    code = await code_for(client, flow, "carol", ADMIN_PASSWORD)
    demoted = await client.patch(f"/admin/users/{sub}", json={"admin": False}, headers=root)
    assert demoted.status_code == 200, demoted.text

    assert_oauth_error(await exchange(client, code, flow), 400, "invalid_grant")
    fresh = Flow.new(WEB, scope="openid admin")
    body = ok(await exchange(client, await code_for(client, fresh), fresh))
    assert body["scope"] == "openid"


async def test_admin_taken_from_a_client_ends_its_access_tokens(
    client: httpx.AsyncClient,
    carol: tuple[str, Any],
    root: dict[str, str],
    rs: tuple[str, str],
    registry: Registry,
    clock: Clock,
) -> None:
    """A client_credentials admin token has no session to end: the client's revocation mark
    ends it, so it cannot give its client the admin scope back. Its users' sessions go on,
    refreshed without admin."""
    secret = await registry.client("robot", scopes=("admin", "reports"))
    assert secret is not None
    issued = await client.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "admin"},
        auth=("robot", secret),
    )
    assert issued.status_code == 200, issued.text
    robot = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    _, login = carol

    for client_id in ("robot", "spa"):
        changed = await client.patch(
            f"/admin/clients/{client_id}", json={"scopes": ["reports", "profile"]}, headers=root
        )
        assert changed.status_code == 200, changed.text

    back = await client.patch("/admin/clients/robot", json={"scopes": ["admin"]}, headers=robot)
    assert_oauth_error(back, 401, "invalid_token")
    assert not await active(client, rs, login["access_token"])
    clock.advance(1)  # past the revocation mark, which is in whole seconds
    rotated = ok(await refresh(client, login["refresh_token"]))
    assert rotated["scope"] == "profile"
    assert await active(client, rs, rotated["access_token"])

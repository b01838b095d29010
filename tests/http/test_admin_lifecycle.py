"""The operator lifecycle (API.md): clients and users listed, changed, disabled, deleted, given a
new secret or password; sessions seen and ended by operators and by their users. Every change is
audited with its actor, and what becomes of existing tokens is checked, on a second instance too.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.app import create_app
from authserver.config import Settings
from authserver.services import Services
from authserver.tokens.refresh import Family, hash_token, new_family_id
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error, password_login

Credentials = tuple[str, str]
STRONG = "a long and uncommon passphrase"


@asynccontextmanager
async def another_instance(settings: Settings, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    """A second server on the same database: its own memory of clients, keys and so on."""
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as http:
            yield http


@pytest.fixture
async def root(client: httpx.AsyncClient, registry: Registry, spa: str) -> dict[str, str]:
    """An operator's automation: a client_credentials token with scope admin (a user's would
    end with the spa client's sessions, which these tests disable and delete)."""
    secret = await registry.client("ops", scopes=("admin",))
    assert secret is not None
    response = await client.post(
        "/token", data={"grant_type": "client_credentials", "scope": "admin"}, auth=("ops", secret)
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def rs(registry: Registry) -> Credentials:
    """A resource server that introspects."""
    secret = await registry.client("rs")
    assert secret is not None
    return ("rs", secret)


async def active(http: httpx.AsyncClient, rs: Credentials, token: str) -> bool:
    response = await http.post("/introspect", data={"token": token}, auth=rs)
    assert response.status_code == 200, response.text
    result: bool = response.json()["active"]
    return result


async def service_token(http: httpx.AsyncClient, client_id: str, secret: str) -> httpx.Response:
    return await http.post(
        "/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )


async def audit_rows(engine: AsyncEngine, action: str) -> list[tuple[str, str, dict[str, Any]]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT actor, target, detail FROM audit_events WHERE action = :a ORDER BY id"),
            {"a": action},
        )
        return [(r.actor, r.target, json.loads(r.detail)) for r in rows]


LIFECYCLE = [
    ("GET", "/admin/clients"),
    ("GET", "/admin/clients/svc"),
    ("PATCH", "/admin/clients/svc"),
    ("DELETE", "/admin/clients/svc"),
    ("POST", "/admin/clients/svc/secret"),
    ("GET", "/admin/users"),
    ("GET", "/admin/users/some-sub"),
    ("PATCH", "/admin/users/some-sub"),
    ("PUT", "/admin/users/some-sub/password"),
    ("DELETE", "/admin/users/some-sub"),
    ("GET", "/admin/users/some-sub/sessions"),
    ("POST", "/admin/sessions/some-sid/revoke"),
]


@pytest.mark.parametrize(("method", "path"), LIFECYCLE)
async def test_lifecycle_endpoints_need_an_admin_token(
    client: httpx.AsyncClient, login: Any, method: str, path: str
) -> None:
    assert_oauth_error(await client.request(method, path), 401, "invalid_token")
    no_admin = {"Authorization": f"Bearer {login.access_token}"}
    assert_oauth_error(
        await client.request(method, path, headers=no_admin), 403, "insufficient_scope"
    )


# --- clients -------------------------------------------------------------------------------


async def test_clients_are_listed_in_pages_and_shown_without_secrets(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry
) -> None:
    secrets = [await registry.client(f"svc-{i}") for i in range(2)]

    # The console's own client (registered at startup) is a client as any other.
    first = await client.get("/admin/clients", params={"limit": 3}, headers=root)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [c["client_id"] for c in page["clients"]] == ["authserver-console", "ops", "spa"]
    second = await client.get(
        "/admin/clients", params={"limit": 3, "after": page["next_after"]}, headers=root
    )
    assert [c["client_id"] for c in second.json()["clients"]] == ["svc-0", "svc-1"]
    shown = await client.get("/admin/clients/svc-1", headers=root)
    assert shown.status_code == 200
    assert set(shown.json()) == {
        "client_id", "public", "grant_types", "scopes", "refresh_delivery", "disabled",
        "created_at", "secret_rotated_at", "redirect_uris", "post_logout_redirect_uris",
        "client_name", "allowed_origins", "require_mfa", "dpop_bound_access_tokens", "consent",
        "registration", "resources",
    }  # fmt: skip
    for response in (first, second, shown):
        assert not any(s and s in response.text for s in secrets)
        assert "secret_hash" not in response.text
    assert_oauth_error(await client.get("/admin/clients/nobody", headers=root), 404, "not_found")
    assert_oauth_error(
        await client.get("/admin/clients?limit=0", headers=root), 400, "invalid_request"
    )


async def test_patch_changes_a_client_validated_as_at_creation(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry, engine: AsyncEngine
) -> None:
    await registry.client("svc")
    changed = await client.patch(
        "/admin/clients/svc", json={"scopes": ["read", "write"]}, headers=root
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["scopes"] == ["read", "write"]
    assert (await client.get("/admin/clients/svc", headers=root)).json() == changed.json()
    for bad in (
        {"grant_types": ["implicit"]},
        {"scopes": ["bad scope"]},
        {"refresh_delivery": "header"},
        {"disabled": "yes"},
        {"client_secret": "mine"},
    ):
        response = await client.patch("/admin/clients/svc", json=bad, headers=root)
        assert_oauth_error(response, 400, "invalid_request")
    public = await client.patch(
        "/admin/clients/spa", json={"grant_types": ["client_credentials"]}, headers=root
    )
    assert_oauth_error(public, 400, "invalid_request")
    assert await audit_rows(engine, "client.updated") == [
        ("ops", "svc", {"scopes": ["read", "write"]})
    ]


async def test_disabling_a_client_ends_its_sessions_and_tokens_and_enabling_brings_none_back(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    rs: Credentials,
    clock: Clock,
    settings: Settings,
) -> None:
    secret = await registry.client("svc")
    assert secret is not None
    await registry.user("alice", "correct horse")
    login = (await password_login(client)).json()
    cc_token = (await service_token(client, "svc", secret)).json()["access_token"]
    async with another_instance(settings, clock) as other:
        # The other instance has seen the client (its memory lasts 5 s).
        assert (await service_token(other, "svc", secret)).status_code == 200

        response = await client.patch("/admin/clients/spa", json={"disabled": True}, headers=root)
        assert response.status_code == 200 and response.json()["disabled"] is True
        await client.patch("/admin/clients/svc", json={"disabled": True}, headers=root)

        # At once, on both instances: the session's access token and the service's token.
        for http in (client, other):
            assert not await active(http, rs, login["access_token"])
            assert not await active(http, rs, cc_token)
        refreshed = await client.post(
            "/refresh", data={"client_id": "spa", "refresh_token": login["refresh_token"]}
        )
        assert_oauth_error(refreshed, 401, "invalid_client")  # the client is refused first
        assert_oauth_error(await service_token(client, "svc", secret), 401, "invalid_client")
        assert_oauth_error(await password_login(client), 401, "invalid_client")
        clock.advance(6)  # past the other instance's memory of the client
        assert_oauth_error(await service_token(other, "svc", secret), 401, "invalid_client")

        await client.patch("/admin/clients/svc", json={"disabled": False}, headers=root)
        await client.patch("/admin/clients/spa", json={"disabled": False}, headers=root)
        assert not await active(other, rs, cc_token)  # re-enabling brings none back
        assert not await active(other, rs, login["access_token"])
        # A token issued at once after the re-enabling, in the same second, is live.
        fresh = (await service_token(client, "svc", secret)).json()["access_token"]
        assert await active(other, rs, fresh)
        assert (await password_login(client)).status_code == 200
        # Re-enabling a client that is enabled revokes nothing, however often.
        for _ in range(3):
            clock.advance(5)
            await client.patch("/admin/clients/svc", json={"disabled": False}, headers=root)
        assert await active(other, rs, fresh)


async def test_tokens_issued_while_a_client_was_disabled_stay_dead_once_it_is_re_enabled(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    rs: Credentials,
    clock: Clock,
    services: Services,
) -> None:
    """Another instance remembering the client as enabled may issue it a token for up to
    5 s after the disabling (API.md); re-enabling must not bring that token back."""
    await registry.client("svc")
    await client.patch("/admin/clients/svc", json={"disabled": True}, headers=root)
    clock.advance(4)
    stale = await services.mint(sub="svc", client_id="svc", scope="", sid=None)
    clock.advance(60)
    await client.patch("/admin/clients/svc", json={"disabled": False}, headers=root)
    assert not await active(client, rs, stale.token)
    fresh = await services.mint(sub="svc", client_id="svc", scope="", sid=None)
    assert await active(client, rs, fresh.token)


async def test_a_rotated_secret_overlaps_with_the_old_one_for_its_window(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    clock: Clock,
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    old = await registry.client("svc")
    assert old is not None
    async with another_instance(settings, clock) as other:
        assert (await service_token(other, "svc", old)).status_code == 200  # remembered there

        rotated = await client.post(
            "/admin/clients/svc/secret", json={"old_secret_ttl": 60}, headers=root
        )
        assert rotated.status_code == 200, rotated.text
        body = rotated.json()
        assert body["client_id"] == "svc" and body["old_secret_expires_at"] == clock.now + 60
        new = body["client_secret"]
        assert new != old
        # The new secret works at once, also where the client was remembered; the old one too.
        for http in (client, other):
            assert (await service_token(http, "svc", new)).status_code == 200
            assert (await service_token(http, "svc", old)).status_code == 200
        clock.advance(59)
        assert (await service_token(other, "svc", old)).status_code == 200
        clock.advance(1)
        for http in (client, other):
            assert_oauth_error(await service_token(http, "svc", old), 401, "invalid_client")
            assert (await service_token(http, "svc", new)).status_code == 200

    shown = (await client.get("/admin/clients/svc", headers=root)).json()
    assert shown["secret_rotated_at"] == clock.now - 60
    assert new not in json.dumps(await audit_rows(engine, "client.secret_rotated"))
    async with engine.connect() as conn:
        stored = (
            (await conn.execute(text("SELECT * FROM clients WHERE client_id = 'svc'")))
            .one()
            ._mapping
        )
    assert new not in str(dict(stored)) and old not in str(dict(stored))  # hashes only


async def test_a_secret_rotated_with_no_window_stops_the_old_one_at_once(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry
) -> None:
    old = await registry.client("svc")
    assert old is not None
    rotated = await client.post(
        "/admin/clients/svc/secret", json={"old_secret_ttl": 0}, headers=root
    )
    assert rotated.status_code == 200
    assert_oauth_error(await service_token(client, "svc", old), 401, "invalid_client")
    assert (await service_token(client, "svc", rotated.json()["client_secret"])).status_code == 200
    public = await client.post("/admin/clients/spa/secret", headers=root)
    assert_oauth_error(public, 400, "invalid_request")
    for bad in ({"old_secret_ttl": -1}, {"old_secret_ttl": "60"}, {"old_secret_ttl": True}):
        response = await client.post("/admin/clients/svc/secret", json=bad, headers=root)
        assert_oauth_error(response, 400, "invalid_request")
    assert_oauth_error(
        await client.post("/admin/clients/nobody/secret", headers=root), 404, "not_found"
    )


async def test_a_service_rolls_its_secret_over_without_a_failed_request(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    clock: Clock,
    settings: Settings,
) -> None:
    """The service keeps asking for tokens on another instance, which remembers its client,
    with the old secret and then, once the operator hands it over, the new one."""
    old = await registry.client("svc")
    assert old is not None
    current = {"secret": old}
    statuses: list[int] = []
    done = anyio.Event()

    async with another_instance(settings, clock) as other:

        async def service() -> None:
            while not done.is_set():
                statuses.append((await service_token(other, "svc", current["secret"])).status_code)
                await anyio.sleep(0)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(service)
            while len(statuses) < 5:
                await anyio.sleep(0.01)
            rotated = await client.post("/admin/clients/svc/secret", headers=root)
            before = len(statuses)
            while len(statuses) < before + 5:
                await anyio.sleep(0.01)
            current["secret"] = rotated.json()["client_secret"]  # the service's config rolls
            after = len(statuses)
            while len(statuses) < after + 5:
                await anyio.sleep(0.01)
            done.set()

    assert len(statuses) >= 15 and set(statuses) == {200}, statuses


async def test_deleting_a_client_kills_its_tokens_everywhere_and_keeps_its_id_taken(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    rs: Credentials,
    clock: Clock,
    settings: Settings,
    engine: AsyncEngine,
) -> None:
    secret = await registry.client("svc")
    assert secret is not None
    cc_token = (await service_token(client, "svc", secret)).json()["access_token"]
    async with another_instance(settings, clock) as other:
        assert await active(other, rs, cc_token)

        deleted = await client.delete("/admin/clients/svc", headers=root)
        assert deleted.status_code == 204

        assert not await active(other, rs, cc_token)
        feed = (await other.get("/revocations", auth=rs)).json()
        assert feed["clients"] == {"svc": clock.now}
    assert_oauth_error(await client.get("/admin/clients/svc", headers=root), 404, "not_found")
    assert_oauth_error(await client.delete("/admin/clients/svc", headers=root), 404, "not_found")
    assert_oauth_error(await service_token(client, "svc", secret), 401, "invalid_client")
    again = await client.post("/admin/clients", json={"client_id": "svc"}, headers=root)
    assert_oauth_error(again, 409, "conflict")
    assert [target for _, target, _ in await audit_rows(engine, "client.deleted")] == ["svc"]
    async with engine.connect() as conn:
        hashes = (
            await conn.execute(
                text("SELECT secret_hash, old_secret_hash FROM clients WHERE client_id = 'svc'")
            )
        ).one()
    assert tuple(hashes) == (None, None)  # nothing of its secrets is kept


async def test_deleting_a_client_revokes_its_sessions(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    rs: Credentials,
    engine: AsyncEngine,
) -> None:
    await registry.user("alice", "correct horse")
    login = (await password_login(client)).json()
    counted = {"reason": "client_deleted"}
    before = REGISTRY.get_sample_value("authserver_families_revoked_total", counted) or 0

    assert (await client.delete("/admin/clients/spa", headers=root)).status_code == 204

    assert REGISTRY.get_sample_value("authserver_families_revoked_total", counted) == before + 1

    assert not await active(client, rs, login["access_token"])
    revoked = await audit_rows(engine, "family.revoked")
    assert [(actor, d["reason"]) for actor, _, d in revoked] == [("ops", "client_deleted")]


# --- users ---------------------------------------------------------------------------------


async def test_users_are_listed_by_username_prefix_and_shown(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry, clock: Clock
) -> None:
    subs = {name: await registry.user(name) for name in ("alice", "alina", "bob")}
    await password_login(client, "alice")

    found = await client.get("/admin/users", params={"username": "al", "limit": 1}, headers=root)
    assert found.status_code == 200, found.text
    assert [u["username"] for u in found.json()["users"]] == ["alice"]
    rest = await client.get(
        "/admin/users",
        params={"username": "al", "after": found.json()["next_after"]},
        headers=root,
    )
    assert [u["username"] for u in rest.json()["users"]] == ["alina"]
    assert rest.json()["next_after"] is None
    shown = (await client.get(f"/admin/users/{subs['alice']}", headers=root)).json()
    assert shown == {
        "sub": subs["alice"],
        "username": "alice",
        "scopes": ["profile"],
        "admin": False,
        "disabled": False,
        "created_at": clock.now,
        "last_login_at": clock.now,
        "email": None,
        "email_verified": False,
        "name": None,
        "given_name": None,
        "family_name": None,
        "locale": None,
        "roles": [],
        "factors": [],  # the kinds of second factor enrolled: none
    }
    assert_oauth_error(await client.get("/admin/users/nobody", headers=root), 404, "not_found")


async def test_patch_changes_scopes_admin_and_re_enables(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry, engine: AsyncEngine
) -> None:
    sub = await registry.user("alice")
    response = await client.patch(
        f"/admin/users/{sub}", json={"scopes": ["profile", "email"], "admin": True}, headers=root
    )
    assert response.status_code == 200, response.text
    assert response.json()["scopes"] == ["profile", "email"] and response.json()["admin"] is True

    disabled = await client.patch(f"/admin/users/{sub}", json={"disabled": True}, headers=root)
    assert disabled.json()["disabled"] is True
    assert_oauth_error(await password_login(client), 400, "invalid_grant")
    enabled = await client.patch(f"/admin/users/{sub}", json={"disabled": False}, headers=root)
    assert enabled.json()["disabled"] is False
    assert (await password_login(client)).status_code == 200
    for bad in ({"admin": "yes"}, {"scopes": "profile"}, {"username": "mallory"}):
        response = await client.patch(f"/admin/users/{sub}", json=bad, headers=root)
        assert_oauth_error(response, 400, "invalid_request")
    assert [detail for _, _, detail in await audit_rows(engine, "user.updated")] == [
        {"scopes": ["profile", "email"], "admin": True},
        {"disabled": True},
        {"disabled": False},
    ]


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("short one", "shorter than 12"),
        ("x" * 1025, "longer than 1024"),
        ("alice-the-user", "is the username"),
        ("ALICE-THE-USER", "is the username"),
        ("password1234", "commonly used"),
        ("Qwertyuiop123", "commonly used"),
    ],
)
async def test_the_password_policy_names_the_rule_and_never_the_password(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry, password: str, rule: str
) -> None:
    sub = await registry.user("alice-the-user")
    for response in (
        await client.put(f"/admin/users/{sub}/password", json={"password": password}, headers=root),
        await client.post(
            "/admin/users", json={"username": "alice-the-user", "password": password}, headers=root
        ),
    ):
        assert_oauth_error(response, 400, "invalid_request")
        assert rule in response.json()["error_description"]
        assert password not in response.text


async def test_a_new_password_ends_every_session_unless_told_not_to(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    rs: Credentials,
    engine: AsyncEngine,
) -> None:
    sub = await registry.user("alice")
    first = (await password_login(client)).json()

    kept = await client.put(
        f"/admin/users/{sub}/password",
        json={"password": STRONG, "revoke_sessions": False},
        headers=root,
    )
    assert kept.status_code == 204, kept.text
    assert await active(client, rs, first["access_token"])
    assert_oauth_error(await password_login(client), 400, "invalid_grant")  # the old password
    second = (await password_login(client, password=STRONG)).json()

    ended = await client.put(
        f"/admin/users/{sub}/password", json={"password": STRONG + "!"}, headers=root
    )
    assert ended.status_code == 204
    assert not await active(client, rs, first["access_token"])
    assert not await active(client, rs, second["access_token"])
    assert [d for _, _, d in await audit_rows(engine, "user.password_set")] == [
        {"revoke_sessions": False},
        {"revoke_sessions": True},
    ]


async def test_passwords_are_nfkc_normalised_so_either_form_logs_in(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry
) -> None:
    composed = "Ångström café ﬁre"  # a ligature and composed letters
    decomposed = unicodedata.normalize("NFD", composed)
    created = await client.post(
        "/admin/users", json={"username": "bob", "password": composed}, headers=root
    )
    assert created.status_code == 201, created.text
    assert (await password_login(client, "bob", decomposed)).status_code == 200
    assert (await password_login(client, "bob", composed)).status_code == 200
    assert (
        await password_login(client, "bob", unicodedata.normalize("NFKC", composed))
    ).status_code == 200


async def test_a_login_checked_against_the_old_password_starts_no_session(
    services: Services, registry: Registry, spa: str
) -> None:
    """The race settled in the database: the password was checked (argon2, in a thread), then
    changed and sessions revoked, then the login tries to start its session."""
    sub = await registry.user("alice")
    user = await services.users.by_id(sub)
    assert user is not None
    await services.users.set_password_hash(sub, await services.passwords.hash(STRONG), [])
    now = services.clock()
    family = Family(new_family_id(), sub, spa, "profile", now, now + 60)
    assert not await services.families.start(
        family, hash_token("t"), now + 60, password_hash=user.password_hash
    )
    assert await services.families.sessions(sub, now) == []


async def test_deleting_a_user_frees_the_username_and_leaves_only_the_sub(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    rs: Credentials,
    engine: AsyncEngine,
    services: Services,
    spa: str,
) -> None:
    created = await client.post(
        "/admin/users", json={"username": "alice", "password": STRONG}, headers=root
    )
    sub = created.json()["sub"]
    login = (await password_login(client, password=STRONG)).json()

    assert (await client.delete(f"/admin/users/{sub}", headers=root)).status_code == 204

    assert not await active(client, rs, login["access_token"])
    refreshed = await client.post(
        "/refresh", data={"client_id": "spa", "refresh_token": login["refresh_token"]}
    )
    assert_oauth_error(refreshed, 400, "invalid_grant")
    assert_oauth_error(await client.get(f"/admin/users/{sub}", headers=root), 404, "not_found")
    assert_oauth_error(await client.delete(f"/admin/users/{sub}", headers=root), 404, "not_found")
    assert_oauth_error(await password_login(client, password=STRONG), 400, "invalid_grant")
    # A login whose password was checked before the delete starts nothing after it.
    now = services.clock()
    family = Family(new_family_id(), sub, spa, "profile", now, now + 60)
    assert not await services.families.start(family, hash_token("late"), now + 60)
    async with engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM users WHERE id = :id"), {"id": sub})).one()
        trail = (await conn.execute(text("SELECT detail FROM audit_events"))).scalars().all()
    assert row.username is None and row.password_hash is None
    assert not any("alice" in detail for detail in trail)
    again = await client.post(
        "/admin/users", json={"username": "alice", "password": STRONG}, headers=root
    )
    assert again.status_code == 201 and again.json()["sub"] != sub
    assert (await password_login(client, password=STRONG)).json()["access_token"]


# --- sessions ------------------------------------------------------------------------------


async def test_sessions_show_the_user_agent_and_last_use(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry, clock: Clock
) -> None:
    sub = await registry.user("alice")
    started = clock.now
    first = await client.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": "correct horse",
              "client_id": "spa"},
        headers={"User-Agent": "Firefox/140 " + "x" * 300},
    )  # fmt: skip
    clock.advance(30)
    refreshed = await client.post(
        "/refresh", data={"client_id": "spa", "refresh_token": first.json()["refresh_token"]}
    )
    assert refreshed.status_code == 200

    listed = await client.get(f"/admin/users/{sub}/sessions", headers=root)
    assert listed.status_code == 200, listed.text
    (session,) = listed.json()["sessions"]
    sid = jwt_sid(first.json()["access_token"])
    assert session == {
        "sid": sid,
        "client_id": "spa",
        "created_at": started,
        "last_used_at": started + 30,
        "expires_at": refreshed.json()["refresh_expires_at"]
        if "refresh_expires_at" in refreshed.json()
        else session["expires_at"],
        "user_agent": ("Firefox/140 " + "x" * 300)[:200],
        "current": False,
    }
    assert session["expires_at"] > clock.now


def jwt_sid(token: str) -> str:
    import jwt

    sid: str = jwt.decode(token, options={"verify_signature": False})["sid"]
    return sid


async def test_users_see_and_end_their_own_sessions_only(
    client: httpx.AsyncClient, registry: Registry, spa: str, rs: Credentials, engine: AsyncEngine
) -> None:
    await registry.user("alice")
    await registry.user("bob")
    phone = (await password_login(client)).json()
    laptop = (await password_login(client)).json()
    bobs = (await password_login(client, "bob")).json()
    headers = {"Authorization": f"Bearer {laptop['access_token']}"}

    mine = await client.get("/sessions", headers=headers)
    assert mine.status_code == 200, mine.text
    listed = {s["sid"]: s["current"] for s in mine.json()["sessions"]}
    assert listed == {jwt_sid(phone["access_token"]): False, jwt_sid(laptop["access_token"]): True}

    other = await client.delete(f"/sessions/{jwt_sid(bobs['access_token'])}", headers=headers)
    assert_oauth_error(other, 404, "not_found")
    assert await active(client, rs, bobs["access_token"])
    ended = await client.delete(f"/sessions/{jwt_sid(phone['access_token'])}", headers=headers)
    assert ended.status_code == 204
    assert not await active(client, rs, phone["access_token"])
    assert await active(client, rs, laptop["access_token"])
    assert_oauth_error(await client.get("/sessions"), 401, "invalid_token")
    assert [d["reason"] for _, _, d in await audit_rows(engine, "family.revoked")] == [
        "user_revoked"
    ]


async def test_an_operator_revokes_one_session(
    client: httpx.AsyncClient,
    root: dict[str, str],
    registry: Registry,
    rs: Credentials,
    engine: AsyncEngine,
) -> None:
    await registry.user("alice")
    one = (await password_login(client)).json()
    two = (await password_login(client)).json()

    sid = jwt_sid(one["access_token"])
    response = await client.post(f"/admin/sessions/{sid}/revoke", headers=root)
    assert response.status_code == 204
    assert not await active(client, rs, one["access_token"])
    assert await active(client, rs, two["access_token"])
    missing = await client.post("/admin/sessions/nope/revoke", headers=root)
    assert_oauth_error(missing, 404, "not_found")
    revoked = await audit_rows(engine, "family.revoked")
    assert [(target, d["reason"]) for _, target, d in revoked] == [(sid, "admin_revoked")]

"""Accounts: who signs in (API.md, issue 23): the profile fields of a user through the admin
API, the identity scopes' claims in ID tokens and /userinfo, and `roles` in access tokens."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.users import User, UserStore
from authserver.config import Settings
from authserver.services import Services
from tests.conftest import ISSUER, Registry, assert_oauth_error, password_login
from tests.http.signin import INSECURE_COOKIES, WEB, Flow, code_for, exchange, web_client
from tests.http.test_admin_lifecycle import root

__all__ = ["root"]  # a fixture, used by name

PASSWORD = "a long and uncommon passphrase"
PROFILE: dict[str, Any] = {
    "email": "Alice@Example.org",
    "name": "Alice Liddell",
    "given_name": "Alice",
    "family_name": "Liddell",
    "locale": "en-GB",
    "roles": ["editor", "billing:read"],
}


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def create(
    client: httpx.AsyncClient, root: dict[str, str], username: str = "alice", **fields: Any
) -> httpx.Response:
    body = {"username": username, "password": PASSWORD, **fields}
    return await client.post("/admin/users", json=body, headers=root)


async def created(
    client: httpx.AsyncClient, root: dict[str, str], username: str = "alice", **fields: Any
) -> str:
    response = await create(client, root, username, **fields)
    assert response.status_code == 201, response.text
    sub: str = response.json()["sub"]
    return sub


async def shown(client: httpx.AsyncClient, root: dict[str, str], sub: str) -> dict[str, Any]:
    response = await client.get(f"/admin/users/{sub}", headers=root)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_admin_api_takes_and_shows_the_profile(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    sub = await created(client, root, **PROFILE, email_verified=True)

    user = await shown(client, root, sub)
    assert {k: user[k] for k in PROFILE} == PROFILE  # the address as given, for display
    assert user["email_verified"] is True

    bare = await shown(client, root, await created(client, root, "bob"))
    assert bare["email"] is None and bare["email_verified"] is False
    assert bare["name"] is None and bare["roles"] == []
    listed = (await client.get("/admin/users", headers=root)).json()["users"]
    assert [u["roles"] for u in listed] == [PROFILE["roles"], []]


async def test_changing_the_email_unverifies_it_unless_the_same_change_says(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    sub = await created(client, root, email="alice@example.org", email_verified=True)

    async def patch(**body: Any) -> dict[str, Any]:
        response = await client.patch(f"/admin/users/{sub}", json=body, headers=root)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    assert (await patch(name="Alice"))["email_verified"] is True  # email untouched
    assert (await patch(email="ALICE@example.org"))["email_verified"] is True  # same address
    changed = await patch(email="alice@example.net")
    assert changed["email"] == "alice@example.net" and changed["email_verified"] is False
    verified = await patch(email="alice@example.com", email_verified=True)
    assert verified["email_verified"] is True
    cleared = await patch(email=None, name=None, roles=[])
    assert cleared["email"] is None and cleared["email_verified"] is False
    assert cleared["name"] is None and cleared["roles"] == []


async def test_a_taken_email_is_a_conflict_in_any_case_until_its_user_is_deleted(
    client: httpx.AsyncClient, root: dict[str, str], engine: AsyncEngine
) -> None:
    alice = await created(client, root, email="alice@example.org")
    bob = await created(client, root, "bob")

    assert_oauth_error(
        await create(client, root, "carol", email="ALICE@example.ORG"), 409, "conflict"
    )
    taken = await client.patch(
        f"/admin/users/{bob}", json={"email": "Alice@Example.org", "name": "Bob"}, headers=root
    )
    assert_oauth_error(taken, 409, "conflict")
    assert (await shown(client, root, bob))["name"] is None  # nothing of the change landed

    assert (await client.delete(f"/admin/users/{alice}", headers=root)).status_code == 204
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT email, email_key, name, roles FROM users WHERE id = :id"),
                {"id": alice},
            )
        ).one()
    assert tuple(row) == (None, None, None, "")  # the row keeps only its sub
    await created(client, root, "carol", email="alice@example.org")


async def test_two_users_racing_for_one_address_one_gets_it(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    """Decided by the unique key, not by a read before: every request passes any check in
    Python at once."""
    answers: list[int] = []

    async def take(number: int) -> None:
        email = "Shared@Example.org" if number % 2 else "shared@example.ORG"
        answers.append((await create(client, root, f"racer{number}", email=email)).status_code)

    async with anyio.create_task_group() as group:
        for number in range(6):
            group.start_soon(take, number)

    assert sorted(answers) == [201, 409, 409, 409, 409, 409]


HOSTILE: list[dict[str, Any]] = [
    {"email": "no-at-sign"},
    {"email": "two@@example.org"},
    {"email": "a b@example.org"},
    {"email": "alice@example.org\n"},
    {"email": "x" * 250 + "@example.org"},
    {"email": 42},
    {"email": ""},
    {"email_verified": "yes"},
    {"name": "x" * 257},
    {"name": "Alice\u0007"},
    {"name": "Alice\u202eecilA"},
    {"name": "Alice\x00"},
    {"name": ["Alice"]},
    {"given_name": {"a": 1}},
    {"family_name": 3.5},
    {"locale": "en_GB"},
    {"locale": "x" * 40},
    {"locale": True},
    {"roles": "editor"},
    {"roles": ["has space"]},
    {"roles": ["r" * 65]},
    {"roles": [f"r{i}" for i in range(65)]},
    {"roles": [""]},
    {"roles": [7]},
    {"roles": ["caf\u00e9"]},
]


@pytest.mark.parametrize("fields", HOSTILE, ids=[repr(h)[:40] for h in HOSTILE])
async def test_hostile_profile_fields_are_invalid_requests(
    client: httpx.AsyncClient, root: dict[str, str], fields: dict[str, Any]
) -> None:
    assert_oauth_error(await create(client, root, **fields), 400, "invalid_request")
    sub = await created(client, root, "victim")
    patched = await client.patch(f"/admin/users/{sub}", json=fields, headers=root)
    assert_oauth_error(patched, 400, "invalid_request")


async def test_profile_changes_are_audited_as_user_changes_are(
    client: httpx.AsyncClient, root: dict[str, str], engine: AsyncEngine
) -> None:
    sub = await created(client, root, email="alice@example.org", roles=["editor"])
    await client.patch(f"/admin/users/{sub}", json={"name": "Alice", "roles": []}, headers=root)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT action, detail FROM audit_events WHERE target = :sub"
                    " AND action IN ('user.created', 'user.updated') ORDER BY id"
                ),
                {"sub": sub},
            )
        ).all()
    details = [(action, json.loads(detail)) for action, detail in rows]
    assert details[0][1]["email"] == "alice@example.org"
    assert details[0][1]["roles"] == ["editor"]
    assert details[1] == ("user.updated", {"name": "Alice", "roles": []})


# --- claims ------------------------------------------------------------------------------


@pytest.fixture
async def alice(client: httpx.AsyncClient, root: dict[str, str], registry: Registry) -> str:
    # No scopes of her own: openid, profile and email are held by every user.
    sub = await created(client, root, **PROFILE, email_verified=True, scopes=[])
    await web_client(registry, scopes=("openid", "profile", "email"))
    return sub


async def verified(client: httpx.AsyncClient, token: str, typ: str, audience: str) -> Any:
    header = jwt.get_unverified_header(token)
    assert header["typ"] == typ
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    [jwk] = [key for key in keys if key["kid"] == header["kid"]]
    return jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience=audience,
        issuer=ISSUER,
        options={"verify_iat": False},
    )


async def signed_in(client: httpx.AsyncClient, scope: str) -> dict[str, Any]:
    flow = Flow.new(WEB, scope=scope)
    response = await exchange(client, await code_for(client, flow, password=PASSWORD), flow)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def userinfo(client: httpx.AsyncClient, access_token: str) -> dict[str, Any]:
    response = await client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


PROFILE_CLAIMS = {
    "preferred_username": "alice",
    "name": "Alice Liddell",
    "given_name": "Alice",
    "family_name": "Liddell",
    "locale": "en-GB",
}
EMAIL_CLAIMS = {"email": "Alice@Example.org", "email_verified": True}


@pytest.mark.parametrize(
    ("scope", "claims"),
    [
        ("openid", {}),
        ("openid profile", PROFILE_CLAIMS),
        ("openid email", EMAIL_CLAIMS),
        ("openid profile email", {**PROFILE_CLAIMS, **EMAIL_CLAIMS}),
    ],
)
async def test_the_identity_scopes_select_the_claims_of_id_token_and_userinfo(
    client: httpx.AsyncClient, alice: str, scope: str, claims: dict[str, Any]
) -> None:
    tokens = await signed_in(client, scope)
    assert tokens["scope"] == scope  # held by a user whose row holds no scope

    id_token = await verified(client, tokens["id_token"], "JWT", WEB)
    assert {k: id_token[k] for k in id_token if k in {*PROFILE_CLAIMS, *EMAIL_CLAIMS}} == claims
    assert await userinfo(client, tokens["access_token"]) == {"sub": alice, **claims}


async def test_claims_not_set_are_left_out(
    client: httpx.AsyncClient, root: dict[str, str], registry: Registry
) -> None:
    sub = await created(client, root, email="alice@example.org")
    await web_client(registry, scopes=("openid", "profile", "email"))
    tokens = await signed_in(client, "openid profile email")
    expected = {
        "sub": sub,
        "preferred_username": "alice",
        "email": "alice@example.org",
        "email_verified": False,
    }
    assert await userinfo(client, tokens["access_token"]) == expected


async def test_access_tokens_carry_the_users_roles_now_also_after_a_refresh(
    client: httpx.AsyncClient, alice: str, root: dict[str, str], settings: Settings, spa: str
) -> None:
    tokens = await signed_in(client, "openid")
    access = await verified(client, tokens["access_token"], "at+jwt", settings.audience)
    assert access["roles"] == ["editor", "billing:read"]  # RFC 9068 §2.2.3.1

    login = await password_login(client, "alice", PASSWORD)
    assert login.status_code == 200, login.text
    by_password = await verified(client, login.json()["access_token"], "at+jwt", settings.audience)
    assert by_password["roles"] == ["editor", "billing:read"]

    patched = await client.patch(f"/admin/users/{alice}", json={"roles": ["viewer"]}, headers=root)
    assert patched.status_code == 200, patched.text
    refreshed = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": WEB,
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    access = await verified(client, refreshed.json()["access_token"], "at+jwt", settings.audience)
    assert access["roles"] == ["viewer"]

    await client.patch(f"/admin/users/{alice}", json={"roles": []}, headers=root)
    refreshed = await client.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refreshed.json()["refresh_token"],
            "client_id": WEB,
        },
    )
    access = await verified(client, refreshed.json()["access_token"], "at+jwt", settings.audience)
    assert "roles" not in access  # only when the user has any


class _CountedReads:
    """The app's user store, counting the reads by id (the store itself does the work)."""

    def __init__(self, users: UserStore) -> None:
        self._users = users
        self.by_id_reads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._users, name)

    async def by_id(self, user_id: str) -> User | None:
        self.by_id_reads.append(user_id)
        return await self._users.by_id(user_id)


async def test_the_exchange_reads_the_user_as_it_spends_the_code(
    client: httpx.AsyncClient,
    alice: str,
    root: dict[str, str],
    settings: Settings,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claims and roles are the user's as the code is exchanged, not as it was issued;
    read by the statement that spends the code (db/codes.py), with no second read of the user
    after it (the shortcut's test: it fails when the grant reads the user apart again)."""
    flow = Flow.new(WEB, scope="openid profile email")
    code = await code_for(client, flow, password=PASSWORD)
    changes = {"name": "Alice P. Liddell", "email": "alice@example.net", "roles": ["viewer"]}
    patched = await client.patch(f"/admin/users/{alice}", json=changes, headers=root)
    assert patched.status_code == 200, patched.text
    counted = _CountedReads(services.users)
    monkeypatch.setattr(services, "users", counted)

    response = await exchange(client, code, flow)

    assert response.status_code == 200, response.text
    tokens = response.json()
    id_token = await verified(client, tokens["id_token"], "JWT", WEB)
    assert id_token["preferred_username"] == "alice" and id_token["locale"] == "en-GB"
    assert id_token["name"] == "Alice P. Liddell"
    assert (id_token["email"], id_token["email_verified"]) == ("alice@example.net", False)
    access = await verified(client, tokens["access_token"], "at+jwt", settings.audience)
    assert access["roles"] == ["viewer"]
    assert counted.by_id_reads == []


async def test_discovery_lists_the_email_scope_and_every_claim(client: httpx.AsyncClient) -> None:
    metadata = (await client.get("/.well-known/openid-configuration")).json()
    assert {"openid", "profile", "email"} <= set(metadata["scopes_supported"])
    assert {
        *PROFILE_CLAIMS,
        *EMAIL_CLAIMS,
        "sub",
        "auth_time",
    } <= set(metadata["claims_supported"])

"""Usernames: no control or format characters (bidi overrides, zero-width ones), and one account
per name whatever its case or Unicode form (NFKC + casefold, as docs/operators.md says). The
name is shown as it was given; logins and the throttle find it in any case."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.throttle import USERNAME
from tests.conftest import Registry, password_login

PASSWORD = "a long enough password"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {"trusted_proxies": "127.0.0.1"}


@pytest.fixture
async def root(client: httpx.AsyncClient, registry: Registry, spa: str) -> dict[str, str]:
    await registry.user("root", "root password", scopes=(), admin=True)
    response = await password_login(client, "root", "root password", scope="admin")
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def create(client: httpx.AsyncClient, root: dict[str, str], username: str) -> httpx.Response:
    body: dict[str, Any] = {"username": username, "password": PASSWORD, "scopes": ["profile"]}
    # Every non-ASCII character escaped, as a client may send them.
    return await client.post(
        "/admin/users",
        content=json.dumps(body).encode("ascii"),
        headers={**root, "Content-Type": "application/json"},
    )


async def usernames(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT username FROM users ORDER BY username"))
        return [str(name) for name in found.scalars()]


@pytest.mark.parametrize(
    "twin",
    ["Alice", "ALICE", "\uff41\uff4c\uff49\uff43\uff45", "aLiCe"],
    ids=["capital", "upper", "full-width", "mixed"],
)
async def test_a_username_that_folds_to_a_taken_one_is_a_conflict(
    client: httpx.AsyncClient, root: dict[str, str], engine: AsyncEngine, twin: str
) -> None:
    assert (await create(client, root, "alice")).status_code == 201

    response = await create(client, root, twin)

    assert response.status_code == 409, response.text
    assert response.json()["error"] == "conflict"
    assert await usernames(engine) == ["alice", "root"]


@pytest.mark.parametrize(
    "name",
    [
        "al\u202eecila",  # RIGHT-TO-LEFT OVERRIDE: shows as "alalice"
        "\u2067alice\u2069",  # RIGHT-TO-LEFT ISOLATE ... POP DIRECTIONAL ISOLATE
        "al\u200eice",  # LEFT-TO-RIGHT MARK
        "ali\u200bce",  # ZERO WIDTH SPACE
        "\ufeffalice",  # BYTE ORDER MARK
        "alice\n",
        "al\tice",
        "alice\x7f",
    ],
    ids=repr,
)
async def test_a_username_with_a_control_or_format_character_is_refused(
    client: httpx.AsyncClient, root: dict[str, str], engine: AsyncEngine, name: str
) -> None:
    response = await create(client, root, name)

    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert "username" in response.json()["error_description"]
    assert await usernames(engine) == ["root"]


async def test_the_name_is_shown_as_given_and_logs_in_in_any_case(
    client: httpx.AsyncClient, root: dict[str, str], engine: AsyncEngine
) -> None:
    created = await create(client, root, "Alice")
    assert created.status_code == 201, created.text
    sub = created.json()["sub"]
    assert created.json()["username"] == "Alice"

    for typed in ("Alice", "alice", "ALICE", "\uff21lice"):
        response = await password_login(client, typed, PASSWORD)
        assert response.status_code == 200, (typed, response.text)
    shown = await client.get(f"/admin/users/{sub}", headers=root)
    assert shown.json()["username"] == "Alice"
    assert await usernames(engine) == ["Alice", "root"]


async def test_a_deleted_users_name_is_free_in_any_case(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    created = await create(client, root, "alice")
    deleted = await client.delete(f"/admin/users/{created.json()['sub']}", headers=root)
    assert deleted.status_code == 204, deleted.text

    assert (await create(client, root, "ALICE")).status_code == 201


async def test_the_throttle_counts_every_spelling_of_a_name_as_one(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    """Logins find `alice` in any case: so must the per-username failure budget, or each
    spelling would be a fresh one for a guesser."""
    assert (await create(client, root, "alice")).status_code == 201
    spellings = ["alice", "Alice", "ALICE", "aLice", "alIce", "aliCe", "alicE", "ALice"]
    client.headers["X-Forwarded-For"] = "203.0.113.1"
    for typed in spellings[: USERNAME.free + 1]:
        response = await password_login(client, typed, "wrong horse")
        assert response.status_code == 400, response.text
    blocked = await password_login(client, "alICE", PASSWORD)
    assert blocked.status_code == 429, blocked.text

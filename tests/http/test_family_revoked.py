"""Every way a family ends writes the `family.revoked` event that refresh.family_revoked builds,
member for member: a path that builds its own drifts from it and fails here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

import httpx
import pytest

from authserver.services import Services
from authserver.tokens.refresh import family_revoked
from tests.conftest import Registry, password_login
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    code_for,
    exchange,
    sign_out_form,
    web_client,
)


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def alice(registry: Registry, spa: str) -> str:
    await web_client(registry)
    return await registry.user("alice", "correct horse", scopes=("profile",))


async def _password_family(http: httpx.AsyncClient) -> dict[str, str]:
    response = await password_login(http, scope="profile")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _bearer(http: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await _password_family(http))['access_token']}"}


# How one path ends alice's family: (client of the family, actor: "alice", "admin" or a
# client_id, the action, given the client, alice's sub and an admin's headers).
Action = Callable[[httpx.AsyncClient, Services, str, dict[str, str]], Awaitable[None]]


async def _reuse(http: httpx.AsyncClient, _: Services, __: str, ___: dict[str, str]) -> None:
    token = (await _password_family(http))["refresh_token"]
    refresh = {"client_id": "spa", "refresh_token": token}
    assert (await http.post("/refresh", data=refresh)).status_code == 200
    # Again: a reuse, for grace is off by default.
    assert (await http.post("/refresh", data=refresh)).status_code == 400


async def _logout(http: httpx.AsyncClient, _: Services, __: str, ___: dict[str, str]) -> None:
    token = (await _password_family(http))["refresh_token"]
    assert (await http.post("/logout", data={"refresh_token": token})).is_success


async def _revoke(http: httpx.AsyncClient, _: Services, __: str, ___: dict[str, str]) -> None:
    token = (await _password_family(http))["refresh_token"]
    assert (await http.post("/revoke", data={"token": token, "client_id": "spa"})).is_success


async def _logout_all(http: httpx.AsyncClient, _: Services, __: str, ___: dict[str, str]) -> None:
    assert (await http.post("/logout/all", headers=await _bearer(http))).status_code == 204


async def _my_session(http: httpx.AsyncClient, s: Services, _: str, __: dict[str, str]) -> None:
    bearer = await _bearer(http)
    sid = s.verify(bearer["Authorization"].removeprefix("Bearer "))["sid"]
    assert (await http.delete(f"/sessions/{sid}", headers=bearer)).status_code == 204


async def _admin_session(
    http: httpx.AsyncClient, s: Services, _: str, root: dict[str, str]
) -> None:
    sid = s.verify((await _password_family(http))["access_token"])["sid"]
    assert (await http.post(f"/admin/sessions/{sid}/revoke", headers=root)).status_code == 204


def _admin(method: str, path: str, **body: object) -> Action:
    async def act(http: httpx.AsyncClient, _: Services, sub: str, root: dict[str, str]) -> None:
        await _password_family(http)
        response = await http.request(method, path.format(sub=sub), json=body or None, headers=root)
        assert response.is_success, response.text

    return act


async def _end_session(http: httpx.AsyncClient, _: Services, __: str, ___: dict[str, str]) -> None:
    flow = Flow.new(WEB)
    assert (await exchange(http, await code_for(http, flow), flow)).status_code == 200
    response = await http.post("/end-session", data=await sign_out_form(http))
    assert response.status_code < 400, response.text


async def _code_replay(http: httpx.AsyncClient, _: Services, __: str, ___: dict[str, str]) -> None:
    flow = Flow.new(WEB)
    code = await code_for(http, flow)
    assert (await exchange(http, code, flow)).status_code == 200
    assert (await exchange(http, code, flow)).status_code == 400


PATHS: dict[str, tuple[str, str, Action]] = {
    "reuse": ("spa", "spa", _reuse),
    "logout": ("spa", "alice", _logout),
    "revoked": ("spa", "spa", _revoke),
    "logout_all": ("spa", "alice", _logout_all),
    "user_revoked": ("spa", "alice", _my_session),
    "admin_revoked": ("spa", "admin", _admin_session),
    "admin_logout_all": ("spa", "admin", _admin("POST", "/admin/users/{sub}/logout-all")),
    "disabled": ("spa", "admin", _admin("POST", "/admin/users/{sub}/disable")),
    "password_changed": (
        "spa",
        "admin",
        _admin("PUT", "/admin/users/{sub}/password", password="a brand new passphrase"),
    ),
    "deleted": ("spa", "admin", _admin("DELETE", "/admin/users/{sub}")),
    "client_disabled": ("spa", "admin", _admin("PATCH", "/admin/clients/spa", disabled=True)),
    "end_session": (WEB, "alice", _end_session),
    "code_replay": (WEB, WEB, _code_replay),
}


@pytest.mark.parametrize("reason", list(PATHS))
async def test_every_path_writes_the_one_family_revoked_event(
    client: httpx.AsyncClient, services: Services, registry: Registry, alice: str, reason: str
) -> None:
    family_client, actor, act = PATHS[reason]
    root = await admin_headers(client, registry)
    admin = str(services.verify(root["Authorization"].removeprefix("Bearer "))["sub"])
    actors = {"alice": alice, "admin": admin}

    await act(client, services, alice, root)

    revoked = [
        e
        for e in await services.audit.recent(limit=100)
        if e.action == "family.revoked" and e.user == alice
    ]
    assert len(revoked) == 1, revoked
    (event,) = revoked
    assert event.family is not None
    expected = family_revoked(
        event.family,
        alice,
        family_client,
        reason=reason,
        actor=actors.get(actor, actor),
        now=event.at,
    )
    assert replace(event, id=None) == expected

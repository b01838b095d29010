"""The audit trail of security events, and GET /admin/audit, on both databases."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from authserver.services import Services
from tests.conftest import Clock, Login, Registry, password_login


@pytest.fixture
async def root(client: httpx.AsyncClient, registry: Registry, spa: str) -> dict[str, str]:
    """Headers of an admin user's token."""
    await registry.user("root", "correct horse", admin=True)
    response = await password_login(client, "root", scope="admin")
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def trail(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> list[dict[str, Any]]:
    response = await client.get("/admin/audit", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def sub_of(services: Services, token: str) -> str:
    return str(services.verify(token)["sub"])


async def test_login_success_and_failure_are_audited_without_the_password(
    client: httpx.AsyncClient, login: Login, services: Services, root: dict[str, str]
) -> None:
    failed = await password_login(client, "alice", "hunter2-wrong")
    assert failed.status_code == 400
    alice = sub_of(services, login.access_token)

    events = await trail(client, root)
    succeeded = [e for e in events if e["type"] == "login.succeeded" and e["user"] == alice]
    assert len(succeeded) == 1
    assert succeeded[0]["actor"] == alice
    assert succeeded[0]["family"] == services.verify(login.access_token)["sid"]
    [failure] = [e for e in events if e["type"] == "login.failed"]
    assert failure["actor"] == "anonymous"
    assert failure["target"] == "sha256:" + hashlib.sha256(b"alice").hexdigest()
    assert failure["detail"] == {"client_id": "spa"}
    text = str(events)
    assert "hunter2" not in text and "correct horse" not in text
    assert "'alice'" not in text  # the username of a failure is only hashed


async def test_reuse_is_audited_with_the_decision_and_the_revocation(
    client: httpx.AsyncClient, login: Login, services: Services, root: dict[str, str]
) -> None:
    first = await client.post(
        "/refresh", data={"refresh_token": login.refresh_token, "client_id": "spa"}
    )
    assert first.status_code == 200
    replay = await client.post(
        "/refresh", data={"refresh_token": login.refresh_token, "client_id": "spa"}
    )
    assert replay.status_code == 400
    sid = services.verify(login.access_token)["sid"]

    events = await trail(client, root, family=sid)
    # Newest first: the revocation and its reason, then the login. The successful rotation
    # wrote nothing (hot path).
    assert [e["type"] for e in events] == [
        "family.revoked",
        "refresh.reuse_detected",
        "login.succeeded",
    ]
    revoked, reuse = events[0], events[1]
    assert revoked["detail"]["reason"] == "reuse" and revoked["actor"] == "spa"
    assert reuse["detail"]["decision"] == "revoked"
    assert reuse["detail"]["reason"] == "grace is off"


@pytest.fixture
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, str]:
    if "grace" in request.node.name:
        return {"refresh_reuse_grace": "5"}
    return {}


async def test_reuse_tolerated_under_grace_is_audited(
    client: httpx.AsyncClient, login: Login, services: Services, root: dict[str, str]
) -> None:
    for _ in range(2):
        response = await client.post(
            "/refresh", data={"refresh_token": login.refresh_token, "client_id": "spa"}
        )
        assert response.status_code == 200, response.text
    sid = services.verify(login.access_token)["sid"]
    [reuse] = await trail(client, root, family=sid, type="refresh.reuse_detected")
    assert reuse["detail"]["decision"] == "tolerated"
    assert reuse["detail"]["reason"] == "within grace"


async def test_logout_revoke_and_logout_all_are_audited(
    client: httpx.AsyncClient,
    login: Login,
    services: Services,
    registry: Registry,
    root: dict[str, str],
) -> None:
    alice = sub_of(services, login.access_token)
    sid = services.verify(login.access_token)["sid"]
    assert (await client.post("/logout", data={"refresh_token": login.refresh_token})).is_success
    # Logging out twice revokes nothing more, and writes nothing more.
    assert (await client.post("/logout", data={"refresh_token": login.refresh_token})).is_success
    second = (await password_login(client)).json()
    await client.post("/revoke", data={"token": second["refresh_token"], "client_id": "spa"})
    second_sid = services.verify(second["access_token"])["sid"]
    third = (await password_login(client)).json()
    bearer = {"Authorization": f"Bearer {third['access_token']}"}
    assert (await client.post("/logout/all", headers=bearer)).status_code == 204
    third_sid = services.verify(third["access_token"])["sid"]

    revoked = await trail(client, root, user=alice, type="family.revoked")
    assert [(e["family"], e["detail"]["reason"], e["actor"]) for e in revoked] == [
        (third_sid, "logout_all", alice),
        (second_sid, "revoked", "spa"),
        (sid, "logout", alice),
    ]
    assert [e["family"] for e in await trail(client, root, type="logout")] == [sid]


async def test_admin_actions_on_users_are_audited_per_family(
    client: httpx.AsyncClient, login: Login, services: Services, root: dict[str, str]
) -> None:
    alice = sub_of(services, login.access_token)
    admin = sub_of(services, root["Authorization"].removeprefix("Bearer "))
    response = await client.post(f"/admin/users/{alice}/logout-all", headers=root)
    assert response.status_code == 204
    events = await trail(client, root, user=alice)
    assert [(e["type"], e["actor"]) for e in events[:2]] == [
        ("user.logged_out_everywhere", admin),
        ("family.revoked", admin),
    ]
    assert events[1]["detail"]["reason"] == "admin_logout_all"


async def test_pages_walk_back_with_before(
    client: httpx.AsyncClient, registry: Registry, clock: Clock, root: dict[str, str]
) -> None:
    for _ in range(5):
        assert (await password_login(client, "nobody", "x")).status_code == 400
    seen: list[int] = []
    before: int | None = None
    while True:
        params = {"limit": "2", "type": "login.failed"}
        if before is not None:
            params["before"] = str(before)
        response = await client.get("/admin/audit", params=params, headers=root)
        body = response.json()
        seen += [e["id"] for e in body["events"]]
        before = body["next_before"]
        if before is None:
            break
    assert len(seen) == 5 and seen == sorted(seen, reverse=True)


async def test_a_before_past_every_event_id_starts_from_the_newest(
    client: httpx.AsyncClient, root: dict[str, str]
) -> None:
    # Found by schemathesis: before=2877750161 overflowed Postgres's 32-bit id (a 500).
    assert (await password_login(client, "nobody", "x")).status_code == 400
    newest = await client.get("/admin/audit", params={"type": "login.failed"}, headers=root)
    for before in ("2147483648", "2877750161", str(2**63 - 1)):
        params = {"type": "login.failed", "before": before}
        response = await client.get("/admin/audit", params=params, headers=root)
        assert response.status_code == 200, response.text
        assert response.json() == newest.json()


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=ten",
        "before=-1",
        "before=%C2%B2",
        "colour=red",
        "user=a&user=b",
        # Found by schemathesis: a NUL in a filter reached Postgres, a 500.
        "family=%00",
        "user=a%00b",
    ],
)
async def test_bad_parameters_are_json_errors(
    client: httpx.AsyncClient, root: dict[str, str], query: str
) -> None:
    response = await client.get(f"/admin/audit?{query}", headers=root)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "invalid_request"


async def test_only_admins_read_the_trail(client: httpx.AsyncClient, login: Login) -> None:
    assert (await client.get("/admin/audit")).status_code == 401
    bearer = {"Authorization": f"Bearer {login.access_token}"}
    response = await client.get("/admin/audit", headers=bearer)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


async def test_the_families_revoked_metric_counts_only_real_revocations(
    client: httpx.AsyncClient, login: Login
) -> None:
    def logouts() -> float:
        value = REGISTRY.get_sample_value("authserver_families_revoked_total", {"reason": "logout"})
        return value or 0.0

    before = logouts()
    for _ in range(3):
        response = await client.post("/logout", data={"refresh_token": login.refresh_token})
        assert response.status_code == 204
    assert logouts() == before + 1


async def test_reuse_past_grace_is_revoked_with_its_reason(
    client: httpx.AsyncClient,
    login: Login,
    services: Services,
    clock: Clock,
    root: dict[str, str],
) -> None:
    first = await client.post(
        "/refresh", data={"refresh_token": login.refresh_token, "client_id": "spa"}
    )
    assert first.status_code == 200
    clock.advance(6)
    replay = await client.post(
        "/refresh", data={"refresh_token": login.refresh_token, "client_id": "spa"}
    )
    assert replay.status_code == 400
    sid = services.verify(first.json()["access_token"])["sid"]
    [reuse] = await trail(client, root, family=sid, type="refresh.reuse_detected")
    assert reuse["detail"]["decision"] == "revoked"
    assert reuse["detail"]["reason"] == "spent 6 s ago, past the 5 s grace"

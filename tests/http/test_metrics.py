"""GET /metrics: requests by route template and status, grants, rotations, theft, revocations,
the signing keys' age and changes, database connections in use.

Counters are process-wide and every test of the run adds to them, so each assertion is on the
change a test's own requests made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.config import Settings
from authserver.keys.manager import publication_lag
from authserver.services import Services
from tests._proxy import app_through_proxy
from tests.conftest import Clock, Login, Registry, password_login

CREATED = "authserver_signing_key_created_timestamp_seconds"
ACTIVATED = "authserver_signing_key_activated_timestamp_seconds"
CHANGES = "authserver_signing_key_changes_total"
IN_USE = "authserver_db_pool_connections_in_use"
HOUR = 3600


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Deltas:
    def __init__(self, *metrics: tuple[str, dict[str, str]]) -> None:
        self._metrics = metrics
        self._before = [value(name, **labels) for name, labels in metrics]

    def __call__(self) -> list[float]:
        return [
            value(name, **labels) - before
            for (name, labels), before in zip(self._metrics, self._before, strict=True)
        ]


async def test_metrics_count_grants_rotations_theft_and_revocations(
    client: httpx.AsyncClient, registry: Registry, login: Login, spa: str
) -> None:
    secret = await registry.client("svc", scopes=("profile",))
    assert secret is not None
    deltas = Deltas(
        ("authserver_tokens_issued_total", {"grant": "password"}),
        ("authserver_tokens_issued_total", {"grant": "refresh_token"}),
        ("authserver_tokens_issued_total", {"grant": "client_credentials"}),
        ("authserver_logins_failed_total", {}),
        ("authserver_refresh_rotations_total", {}),
        ("authserver_refresh_reuse_detected_total", {}),
        ("authserver_families_revoked_total", {"reason": "reuse"}),
        ("authserver_families_revoked_total", {"reason": "logout"}),
        ("authserver_families_revoked_total", {"reason": "logout_all"}),
    )

    refreshed = await client.post(
        "/refresh", data={"client_id": spa, "refresh_token": login.refresh_token}
    )
    assert refreshed.status_code == 200
    stolen = await client.post(
        "/refresh", data={"client_id": spa, "refresh_token": login.refresh_token}
    )
    assert stolen.status_code == 400
    assert (await password_login(client, password="wrong")).status_code == 400
    assert (
        await client.post("/token", data={"grant_type": "client_credentials"}, auth=("svc", secret))
    ).status_code == 200
    second = (await password_login(client)).json()
    third = (await password_login(client)).json()
    await client.post(
        "/logout",
        data={"refresh_token": second["refresh_token"]},
        headers={"Authorization": f"Bearer {second['access_token']}"},
    )
    await client.post("/logout/all", headers={"Authorization": f"Bearer {third['access_token']}"})

    issued_password, issued_refresh, issued_service, failed, rotations, reuse, *revoked = deltas()
    assert (issued_password, issued_refresh, issued_service) == (2, 1, 1)
    assert failed == 1
    assert rotations == 1
    assert reuse == 1
    by_reuse, by_logout, by_logout_all = revoked
    assert (by_reuse, by_logout) == (1, 1)
    assert by_logout_all == 1  # third's family; the first was revoked for reuse, second logged out


async def test_requests_are_counted_by_route_template_and_status(
    client: httpx.AsyncClient,
) -> None:
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    deltas = Deltas(
        ("authserver_http_requests_total", labels),
        ("authserver_http_request_duration_seconds_count", labels),
        ("authserver_http_requests_total", {**labels, "route": "<unmatched>", "status": "404"}),
        ("authserver_http_requests_total", {**labels, "route": "/token", "status": "405"}),
    )

    for _ in range(3):
        await client.get("/healthz")
    await client.get("/a/path/never/seen")
    await client.get("/token")

    assert deltas() == [3, 3, 1, 1]


async def test_metrics_endpoint_speaks_the_prometheus_text_format(
    client: httpx.AsyncClient, login: Login
) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {
        "authserver_http_requests",
        "authserver_http_request_duration_seconds",
        "authserver_tokens_issued",
        "authserver_refresh_rotations",
        "authserver_refresh_reuse_detected",
        "authserver_families_revoked",
        "authserver_logins_failed",
        "authserver_logins_throttled",
        "authserver_signing_key_created_timestamp_seconds",
        "authserver_signing_key_activated_timestamp_seconds",
        "authserver_signing_key_changes",
        "authserver_db_pool_connections_in_use",
    } <= names
    # Templates, never raw paths: no token, user id or kid can become a label.
    assert login.access_token not in response.text
    assert 'route="/token"' in response.text


async def test_failed_and_throttled_logins_are_counted_apart(
    client: httpx.AsyncClient, login: Login
) -> None:
    deltas = Deltas(
        ("authserver_logins_failed_total", {}), ("authserver_logins_throttled_total", {})
    )

    statuses = []
    for _ in range(30):  # wrong passwords until the throttle steps in
        statuses.append((await password_login(client, password="wrong")).status_code)
        if statuses[-1] == 429:
            break
    statuses.append((await password_login(client, password="wrong")).status_code)

    assert 429 in statuses, statuses
    assert deltas() == [statuses.count(400), statuses.count(429)]


async def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    with anyio.fail_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


def key_changes() -> Deltas:
    """Rotations, scheduled rotations and revocations, in that order."""
    return Deltas(*((CHANGES, {"action": action}) for action in ("rotate", "scheduled", "revoke")))


async def active_key(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    response = await client.get("/admin/keys", headers=admin)
    assert response.status_code == 200, response.text
    (active,) = [key for key in response.json()["keys"] if key["state"] == "active"]
    return dict(active)


@pytest.mark.usefixtures("fresh_keys")
async def test_signing_key_timestamps_follow_the_active_key_and_changes_are_counted(
    client: httpx.AsyncClient, registry: Registry, spa: str, clock: Clock, settings: Settings
) -> None:
    await registry.user("root", "correct horse", admin=True)
    login = await password_login(client, "root", scope="admin")
    admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
    deltas = key_changes()
    started = clock.now
    ready = settings.jwks_max_age + publication_lag(settings)  # a next key this old is promoted

    first = await active_key(client, admin)
    assert (first["created_at"], first["activated_at"]) == (started, started)
    assert (value(CREATED), value(ACTIVATED)) == (started, started)

    clock.advance(ready)
    assert (await client.post("/admin/keys/rotate", headers=admin)).status_code == 200
    # The next key made at start now signs: made then, active since now.
    assert (value(CREATED), value(ACTIVATED)) == (started, started + ready)
    clock.advance(ready)
    assert (await client.post("/admin/keys/rotate", headers=admin)).status_code == 200
    second = await active_key(client, admin)
    assert (value(CREATED), value(ACTIVATED)) == (started + ready, started + 2 * ready)
    assert (second["created_at"], second["activated_at"]) == (started + ready, started + 2 * ready)

    clock.advance(1)
    revoke = f"/admin/keys/{second['kid']}/revoke"
    assert (await client.post(revoke, headers=admin)).status_code == 200
    assert (await client.post(revoke, headers=admin)).status_code == 200  # changes nothing
    third = await active_key(client, admin)
    assert (value(CREATED), value(ACTIVATED)) == (third["created_at"], third["activated_at"])
    assert value(ACTIVATED) == started + 2 * ready + 1

    assert deltas() == [2, 0, 1]


@pytest.mark.usefixtures("fresh_keys")
@pytest.mark.parametrize("settings_overrides", [{"key_rotation_interval": str(HOUR)}])
async def test_a_scheduled_rotation_is_counted_as_scheduled(
    services: Services, clock: Clock
) -> None:
    deltas = key_changes()
    assert not await services.keys.rotate_if_due()
    clock.advance(HOUR)

    await services.keys.rotate_if_due()  # or the app's own schedule got there first: one rotates

    await wait_until(lambda: deltas() != [0, 0, 0])
    assert deltas() == [0, 1, 0]
    await wait_until(lambda: value(ACTIVATED) == clock.now)


def connections_in_use() -> float:
    return value(IN_USE)


async def test_a_connection_counts_as_in_use_while_a_request_waits_on_the_database(
    client: httpx.AsyncClient, login: Login, engine: AsyncEngine
) -> None:
    await wait_until(lambda: connections_in_use() == 0)  # the app's reload may hold one briefly
    answers: list[httpx.Response] = []

    async def log_in() -> None:
        answers.append(await password_login(client))

    # The test's own engine (not counted) takes a lock the login's queries must wait for.
    blocker = await engine.connect()
    try:
        if engine.dialect.name == "postgresql":
            await blocker.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
        else:  # a write takes the SQLite file's one write lock; the app begins IMMEDIATE
            await blocker.execute(text("DELETE FROM login_throttle"))
        async with anyio.create_task_group() as requests:
            requests.start_soon(log_in)
            # Asserted once the login is done: cancelling it mid-query would hang SQLite.
            with anyio.move_on_after(4):
                await wait_until(lambda: connections_in_use() >= 1)
            held = connections_in_use()
            await blocker.rollback()
    finally:
        await blocker.close()

    assert held >= 1
    assert [answer.status_code for answer in answers] == [200]
    await wait_until(lambda: connections_in_use() == 0)


async def test_connections_in_use_come_back_to_zero_after_an_outage(
    database_url: str, engine: AsyncEngine, tmp_path: Path
) -> None:
    # A checkout that fails (the pooled connection is dead and so is the reconnect) hands its
    # entry back without ever having been counted out: it must not push the gauge below zero.
    async with app_through_proxy(database_url, tmp_path / "keys") as (_, http, proxy):

        async def readiness(count: int) -> list[int]:
            statuses: list[int] = []

            async def one() -> None:
                statuses.append((await http.get("/readyz")).status_code)

            async with anyio.create_task_group() as group:
                for _ in range(count):
                    group.start_soon(one)
            return statuses

        assert await readiness(4) == [200] * 4  # a few connections now sit in the pool
        await wait_until(lambda: connections_in_use() == 0)
        await proxy.cut()
        assert await readiness(4) == [503] * 4
        assert connections_in_use() == 0
        await proxy.restore()
        assert await readiness(4) == [200] * 4
        await wait_until(lambda: connections_in_use() == 0)

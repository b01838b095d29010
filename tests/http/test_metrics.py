"""GET /metrics: requests by route template and status, grants, rotations, theft, revocations.

Counters are process-wide and every test of the run adds to them, so each assertion is on the
change a test's own requests made.
"""

from __future__ import annotations

import httpx
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Login, Registry, password_login


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

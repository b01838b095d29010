"""Login throttling: per username and per client address, shared through the database,
answered 429 `slow_down` with Retry-After, and an exponential backoff that ends by itself."""

from __future__ import annotations

import anyio
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request

from authserver.app import create_app
from authserver.config import Settings, load_settings
from authserver.db.throttle import SqlThrottleStore
from authserver.http.addresses import client_address
from authserver.throttle import ADDRESS, USERNAME, username_bucket
from tests.conftest import ISSUER, Clock, Registry, password_login

WRONG = "wrong horse"


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    # The test client's socket peer is 127.0.0.1: a proxy we trust, so each test picks the
    # client's address with X-Forwarded-For.
    return {"trusted_proxies": "127.0.0.1"}


@pytest.fixture
async def alice(registry: Registry, spa: str) -> None:
    await registry.user("alice", "correct horse")


async def attempt(
    client: httpx.AsyncClient,
    username: str = "alice",
    password: str = WRONG,
    address: str = "203.0.113.7",
) -> httpx.Response:
    client.headers["X-Forwarded-For"] = address
    try:
        return await password_login(client, username, password)
    finally:
        del client.headers["X-Forwarded-For"]


def assert_slow_down(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "slow_down"
    assert response.headers["retry-after"] == str(retry_after)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def fail(client: httpx.AsyncClient, times: int, **where: str) -> None:
    for _ in range(times):
        assert_invalid_grant(await attempt(client, **where))


async def test_free_failures_then_a_block_that_even_the_right_password_waits_out(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    await fail(client, USERNAME.free + 1)
    assert_slow_down(await attempt(client, password="correct horse"), 1)
    clock.advance(1)
    response = await attempt(client, password="correct horse")
    assert response.status_code == 200, response.text


async def test_the_backoff_doubles_up_to_its_cap_and_then_ends(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    await fail(client, USERNAME.free)
    waits = []
    for _ in range(12):
        assert_invalid_grant(await attempt(client))
        blocked = await attempt(client)
        assert blocked.status_code == 429
        waits.append(int(blocked.headers["retry-after"]))
        clock.advance(waits[-1])
    assert waits[:9] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert waits[9:] == [USERNAME.cap] * 3
    # No permanent lock: once the wait is over, the real user gets in.
    response = await attempt(client, password="correct horse")
    assert response.status_code == 200, response.text


async def test_a_success_clears_the_username_count(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    await fail(client, USERNAME.free)
    assert (await attempt(client, password="correct horse")).status_code == 200
    await fail(client, USERNAME.free)  # a fresh budget: no block yet
    assert (await attempt(client, password="correct horse")).status_code == 200


async def test_a_quiet_period_forgets_the_failures(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    await fail(client, USERNAME.free + 1)
    clock.advance(USERNAME.forget + 1)
    await fail(client, USERNAME.free)
    assert (await attempt(client, password="correct horse")).status_code == 200


async def test_the_username_is_throttled_from_every_address(
    client: httpx.AsyncClient, alice: None
) -> None:
    for i in range(USERNAME.free + 1):
        assert_invalid_grant(await attempt(client, address=f"198.51.100.{i}"))
    assert_slow_down(await attempt(client, address="192.0.2.200"), 1)
    # Another user is not affected.
    response = await attempt(client, username="bob", address="192.0.2.200")
    assert_invalid_grant(response)


async def test_unknown_usernames_are_throttled_like_real_ones(
    client: httpx.AsyncClient, alice: None
) -> None:
    await fail(client, USERNAME.free + 1, username="nobody")
    assert_slow_down(await attempt(client, username="nobody"), 1)


async def test_an_address_spraying_many_usernames_is_throttled(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    for i in range(ADDRESS.free + 1):
        assert_invalid_grant(await attempt(client, username=f"user{i}"))
    # Even alice's right password waits, from that address only.
    assert_slow_down(await attempt(client, password="correct horse"), 1)
    response = await attempt(client, password="correct horse", address="192.0.2.1")
    assert response.status_code == 200, response.text
    clock.advance(1)
    response = await attempt(client, password="correct horse")
    assert response.status_code == 200, response.text


async def test_the_table_holds_no_username_or_address(
    client: httpx.AsyncClient, alice: None, engine: AsyncEngine
) -> None:
    await fail(client, 1)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT bucket, failures FROM login_throttle"))).all()
    assert sorted(failures for _, failures in rows) == [1, 1]
    assert username_bucket("alice") in {bucket for bucket, _ in rows}
    assert not any("alice" in bucket or "203.0.113.7" in bucket for bucket, _ in rows)


async def test_other_grants_are_not_throttled(
    client: httpx.AsyncClient, alice: None, registry: Registry
) -> None:
    await fail(client, USERNAME.free + 1)
    secret = await registry.client("service")
    assert secret is not None
    response = await client.post(
        "/token", data={"grant_type": "client_credentials"}, auth=("service", secret)
    )
    assert response.status_code == 200, response.text


async def test_the_block_holds_across_instances(
    client: httpx.AsyncClient, alice: None, settings: Settings, clock: Clock
) -> None:
    other = create_app(settings, clock=clock)
    async with other.router.lifespan_context(other), second_client(other) as elsewhere:
        await fail(client, USERNAME.free)
        assert_invalid_grant(await attempt(elsewhere))
        assert_slow_down(await attempt(client), 1)


def second_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)


async def test_concurrent_failures_are_each_counted(engine: AsyncEngine, clock: Clock) -> None:
    """The upsert is atomic: racing instances each add their own failure."""
    store = SqlThrottleStore(engine)
    now = clock()

    async def one() -> None:
        await store.record_failure("user:race", now, now - 60, USERNAME.delay)

    async with anyio.create_task_group() as group:
        for _ in range(12):
            group.start_soon(one)
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT failures, blocked_until FROM login_throttle WHERE bucket = 'user:race'"
                )
            )
        ).one()
    assert row.failures == 12
    assert row.blocked_until == now + USERNAME.delay(12)


# --- the client's address -------------------------------------------------------------------


class TestUntrustedPeer:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        return {}

    async def test_x_forwarded_for_is_ignored(self, client: httpx.AsyncClient, alice: None) -> None:
        # Without a trusted proxy, a guesser cannot get a fresh budget by inventing addresses.
        for i in range(ADDRESS.free + 1):
            assert_invalid_grant(await attempt(client, username=f"user{i}", address=f"10.0.0.{i}"))
        assert_slow_down(await attempt(client, username="someone", address="10.9.9.9"), 1)


def request_from(peer: str, *forwarded: str) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    scope = {"type": "http", "client": (peer, 1234), "headers": headers}
    return Request(scope)


TRUSTED = load_settings({"AUTHSERVER_TRUSTED_PROXIES": "10.0.0.0/8, ::1"}).trusted_proxies


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", ("198.51.100.1",), "203.0.113.9"),  # not a proxy of ours
        ("10.0.0.2", (), "10.0.0.2"),
        ("10.0.0.2", ("198.51.100.1",), "198.51.100.1"),
        ("10.0.0.2", ("6.6.6.6, 198.51.100.1",), "198.51.100.1"),  # the left is the client's say
        ("10.0.0.2", ("198.51.100.1, 10.0.0.3",), "198.51.100.1"),  # two proxies of ours
        ("10.0.0.2", ("6.6.6.6", "198.51.100.1"), "198.51.100.1"),  # two header lines
        ("10.0.0.2", ("garbage, 10.0.0.3",), "10.0.0.3"),
        ("::1", ("2001:db8::1",), "2001:db8::1"),
    ],
)
def test_client_address(peer: str, forwarded: tuple[str, ...], expected: str) -> None:
    assert client_address(request_from(peer, *forwarded), TRUSTED) == expected


def test_trusted_proxies_setting_is_validated() -> None:
    with pytest.raises(ValueError, match="AUTHSERVER_TRUSTED_PROXIES"):
        load_settings({"AUTHSERVER_TRUSTED_PROXIES": "10.0.0.0/8, proxy.local"})

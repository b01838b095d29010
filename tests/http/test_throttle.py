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

from authserver import throttle
from authserver.accounts.passwords import Verdict
from authserver.app import create_app
from authserver.config import Settings, load_settings
from authserver.db.throttle import SqlThrottleStore
from authserver.errors import TemporarilyUnavailable
from authserver.http.addresses import client_address
from authserver.services import Services
from authserver.throttle import (
    ADDRESS,
    USERNAME,
    USERNAME_EVERYWHERE,
    Bucket,
    Reservation,
    username_bucket,
)
from tests.conftest import ISSUER, Clock, Registry, assert_oauth_error, password_login
from tests.http.signin import admin_headers

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
    **extra: str,
) -> httpx.Response:
    client.headers["X-Forwarded-For"] = address
    try:
        return await password_login(client, username, password, **extra)
    finally:
        del client.headers["X-Forwarded-For"]


def assert_slow_down(response: httpx.Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"] == "slow_down"
    assert response.headers["retry-after"] == str(retry_after)
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


async def fail(client: httpx.AsyncClient, times: int, **where: str) -> None:
    for _ in range(times):
        assert_oauth_error(await attempt(client, **where), 400, "invalid_grant")


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
        assert_oauth_error(await attempt(client), 400, "invalid_grant")
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
    # Once failures from many address groups add up: the looser budget every address shares.
    for i in range(USERNAME_EVERYWHERE.free + 1):
        assert_oauth_error(await attempt(client, address=f"198.51.100.{i}"), 400, "invalid_grant")
    assert_slow_down(await attempt(client, address="192.0.2.200"), 1)
    # Another user is not affected.
    response = await attempt(client, username="bob", address="192.0.2.200")
    assert_oauth_error(response, 400, "invalid_grant")


async def test_unknown_usernames_are_throttled_like_real_ones(
    client: httpx.AsyncClient, alice: None
) -> None:
    await fail(client, USERNAME.free + 1, username="nobody")
    assert_slow_down(await attempt(client, username="nobody"), 1)


async def test_an_address_spraying_many_usernames_is_throttled(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    for i in range(ADDRESS.free + 1):
        assert_oauth_error(await attempt(client, username=f"user{i}"), 400, "invalid_grant")
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
    assert sorted(failures for _, failures in rows) == [1, 1, 1]
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
        assert_oauth_error(await attempt(elsewhere), 400, "invalid_grant")
        assert_slow_down(await attempt(client), 1)


async def test_attempts_refused_for_another_reason_cost_nothing(
    client: httpx.AsyncClient, alice: None, registry: Registry
) -> None:
    # Each attempt is reserved before anything is checked, and given back when it fails
    # otherwise than on the password: a wrong client, a missing field, a scope not allowed.
    await registry.client("service", grant_types=("client_credentials",))
    for _ in range(ADDRESS.free + 1):
        assert (await attempt(client, client_id="nobody")).status_code == 401
        assert (await attempt(client, client_id="service")).status_code == 401
        response = await attempt(client, password="")
        assert response.json()["error"] == "invalid_request", response.text
        response = await attempt(client, scope="nothing-granted")
        assert response.json()["error"] == "invalid_scope", response.text
    # The username's free failures and the address's are all still there.
    await fail(client, USERNAME.free)
    response = await attempt(client, password="correct horse")
    assert response.status_code == 200, response.text


async def test_a_database_error_costs_no_attempt(
    client: httpx.AsyncClient, alice: None, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down(username: str) -> None:
        raise TemporarilyUnavailable(detail="database unavailable: test")

    with monkeypatch.context() as patch:
        patch.setattr(services.users, "by_username", down)
        for _ in range(USERNAME.free + 1):
            assert (await attempt(client)).status_code == 503
    await fail(client, USERNAME.free)
    response = await attempt(client, password="correct horse")
    assert response.status_code == 200, response.text


async def test_a_wrong_password_counts_even_when_its_audit_event_cannot_be_written(
    client: httpx.AsyncClient, alice: None, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Else a guesser who keeps the audit table busy would get answers (503 for wrong, 200 for
    # right) without ever spending the budget.
    async def down(events: object) -> None:
        raise TemporarilyUnavailable(detail="database unavailable: test")

    monkeypatch.setattr(services.audit, "record", down)
    for _ in range(USERNAME.free + 1):
        assert (await attempt(client)).status_code == 503
    assert_slow_down(await attempt(client, password="correct horse"), 1)


def second_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ISSUER)


async def test_concurrent_reservations_meet_the_budget_one_after_another(
    engine: AsyncEngine, clock: Clock
) -> None:
    """Racing reservations (each on its own connection, as instances would be) lock the rows:
    free + 1 are let in and counted as in flight, the rest find the bucket busy and count
    nothing. Half of them name the buckets in the other order, which must not deadlock."""
    store = SqlThrottleStore(engine)
    now = clock()
    user, addr = Bucket("user:race", USERNAME, success_clears=True), Bucket("addr:race", ADDRESS)
    reservations: list[Reservation] = []

    async def one(buckets: list[Bucket]) -> None:
        reservations.append(await store.reserve(buckets, now))

    async with anyio.create_task_group() as group:
        for i in range(12):
            group.start_soon(one, [user, addr] if i % 2 else [addr, user])
    assert sum(r.admitted for r in reservations) == USERNAME.free + 1
    assert [r for r in reservations if not r.admitted] == [Reservation(busy=True)] * 6
    async with engine.connect() as conn:
        found = await conn.execute(text("SELECT bucket, failures, pending FROM login_throttle"))
        rows = {bucket: (failures, pending) for bucket, failures, pending in found}
    in_flight = (0, USERNAME.free + 1)
    assert rows == {"user:race": in_flight, "addr:race": in_flight}


# --- no lockout by one address (ASVS 5.0 §6.1.1: protection against malicious lockout) ------

OWNER = "192.0.2.55"  # the owner's address, apart from the guesser's 203.0.113.7


async def test_a_guesser_at_one_address_never_locks_the_owner_out_of_another(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    await fail(client, USERNAME.free + 1)
    assert_slow_down(await attempt(client, password="correct horse"), 1)
    response = await attempt(client, password="correct horse", address=OWNER)
    assert response.status_code == 200, response.text
    clock.advance(1)
    # Hours of guessing at the capped pace, one wrong password each time the block lapses.
    for _ in range(40):
        assert_oauth_error(await attempt(client), 400, "invalid_grant")
        blocked = await attempt(client)
        assert blocked.status_code == 429, blocked.text
        clock.advance(int(blocked.headers["retry-after"]))
    response = await attempt(client, password="correct horse", address=OWNER)
    assert response.status_code == 200, response.text


async def test_slow_rounds_from_address_after_address_never_add_up_to_a_lockout(
    client: httpx.AsyncClient, alice: None, clock: Clock
) -> None:
    # The count every address shares forgets by fixed windows, not after a quiet period:
    # rounds closer together than that period would otherwise keep it growing for good.
    for i in range(30):
        await fail(client, USERNAME.free, address=f"198.51.100.{i}")
        clock.advance(USERNAME_EVERYWHERE.forget // 2 + 1)
    response = await attempt(client, password="correct horse", address=OWNER)
    assert response.status_code == 200, response.text


async def test_a_username_re_created_after_a_delete_starts_with_a_clean_count(
    client: httpx.AsyncClient, registry: Registry, spa: str, clock: Clock
) -> None:
    root = await admin_headers(client, registry)
    body = {"username": "carol", "password": "a long and unguessable one 7"}
    created = await client.post("/admin/users", json=body, headers=root)
    assert created.status_code == 201, created.text
    await fail(client, USERNAME.free + 1, username="carol")
    response = await client.delete(f"/admin/users/{created.json()['sub']}", headers=root)
    assert response.status_code == 204, response.text
    clock.advance(1)  # past the block the guesses earned
    body = {"username": "carol", "password": "another long unguessable one 8"}
    assert (await client.post("/admin/users", json=body, headers=root)).status_code == 201
    await fail(client, USERNAME.free, username="carol")  # the new account's free failures
    response = await attempt(client, username="carol", password=body["password"])
    assert response.status_code == 200, response.text


# --- the client's address -------------------------------------------------------------------


class TestUntrustedPeer:
    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        return {}

    async def test_x_forwarded_for_is_ignored(self, client: httpx.AsyncClient, alice: None) -> None:
        # Without a trusted proxy, a guesser cannot get a fresh budget by inventing addresses.
        for i in range(ADDRESS.free + 1):
            assert_oauth_error(
                await attempt(client, username=f"user{i}", address=f"10.0.0.{i}"),
                400,
                "invalid_grant",
            )
        assert_slow_down(await attempt(client, username="someone", address="10.9.9.9"), 1)


async def test_an_ipv6_64_is_one_address_for_the_throttle(
    client: httpx.AsyncClient, alice: None
) -> None:
    # One host owns a whole /64 (RFC 7421): each of its addresses must not get a fresh budget.
    for i in range(ADDRESS.free + 1):
        where = {"username": f"user{i}", "address": f"2001:db8:1:2::{i + 1:x}"}
        assert_oauth_error(await attempt(client, **where), 400, "invalid_grant")
    assert_slow_down(await attempt(client, address="2001:db8:1:2:ffff:ffff:ffff:fffe"), 1)
    assert_oauth_error(
        await attempt(client, username="someone", address="2001:db8:1:3::1"), 400, "invalid_grant"
    )


async def test_an_ipv4_mapped_ipv6_address_is_its_ipv4_address(
    client: httpx.AsyncClient, alice: None
) -> None:
    for i in range(ADDRESS.free + 1):
        assert_oauth_error(
            await attempt(client, username=f"user{i}", address="::ffff:1.2.3.4"),
            400,
            "invalid_grant",
        )
    assert_slow_down(await attempt(client, username="someone", address="1.2.3.4"), 1)


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


# --- concurrency: a burst gets no more tries than a sequence --------------------------------

BURST = 40
TRIALS = 5  # the unfixed guard let all 40 through on the first, every time
FREE_TRIES = USERNAME.free + 1  # what a sequence of wrong passwords gets evaluated
RIGHT_BURST = ADDRESS.free + 4  # past what one address may have in flight


class TestBursts:
    """Many attempts at once, through the app, with an argon2 slow enough that they overlap:
    the throttle must have decided on each before any password is checked."""

    @pytest.fixture
    def settings_overrides(self) -> dict[str, str]:
        # ~50 ms a verify on this machine's cores: dozens of requests are in flight together.
        return {"trusted_proxies": "127.0.0.1", "argon2_memory_kib": "32768"}

    async def test_a_burst_of_wrong_passwords_gets_no_more_tries_than_a_sequence(
        self, client: httpx.AsyncClient, alice: None, clock: Clock, engine: AsyncEngine
    ) -> None:
        for trial in range(TRIALS):
            statuses = await burst(client, [WRONG] * BURST)
            evaluated = statuses.count(400)
            assert sorted(statuses) == [400] * evaluated + [429] * (BURST - evaluated), statuses
            assert evaluated == FREE_TRIES, f"trial {trial}: {evaluated} wrong passwords checked"
            clock.advance(ADDRESS.forget + 1)  # a quiet period: the next trial starts afresh
        async with engine.connect() as conn:
            failed = await conn.scalar(
                text("SELECT COUNT(*) FROM audit_events WHERE action = 'login.failed'")
            )
        assert failed == TRIALS * FREE_TRIES

    async def test_the_right_password_inside_a_burst_waits_like_the_rest(
        self,
        client: httpx.AsyncClient,
        alice: None,
        clock: Clock,
        services: Services,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        # Counts the passwords whose check has begun: once a sequence's worth of the burst's
        # wrong ones are being checked, the budget is spent, however slow argon2 is.
        checks = 0
        verify = services.passwords.verify

        async def counted(stored_hash: str | None, password: str) -> Verdict:
            nonlocal checks
            checks += 1
            return await verify(stored_hash, password)

        monkeypatch.setattr(services.passwords, "verify", counted)
        for trial in range(TRIALS):
            checks = 0
            statuses: list[int] = []
            async with anyio.create_task_group() as group:
                for _ in range(BURST):
                    group.start_soon(send, client, WRONG, statuses)
                with anyio.fail_after(10):
                    while checks < FREE_TRIES:
                        await anyio.sleep(0.001)
                await send(client, "correct horse", statuses)
            assert 200 not in statuses, f"trial {trial}: the right password got in mid-burst"
            assert statuses.count(400) == FREE_TRIES, statuses
            clock.advance(ADDRESS.forget + 1)

    async def test_a_burst_of_right_passwords_all_get_in(
        self, client: httpx.AsyncClient, alice: None, clock: Clock
    ) -> None:
        """Logins in flight hold a place without blocking anyone: the ones past the budget
        wait for a place, not a 429 (one user on several devices, many users behind one
        proxy address)."""
        statuses = await burst(client, ["correct horse"] * RIGHT_BURST)
        assert statuses == [200] * RIGHT_BURST

    async def test_many_users_behind_one_address_all_get_in(
        self, client: httpx.AsyncClient, registry: Registry, spa: str
    ) -> None:
        for i in range(RIGHT_BURST):
            await registry.user(f"user{i}", "correct horse")
        statuses: list[int] = []
        async with anyio.create_task_group() as group:
            for i in range(RIGHT_BURST):
                group.start_soon(send, client, "correct horse", statuses, f"user{i}")
        assert statuses == [200] * RIGHT_BURST


async def test_a_login_waiting_for_a_busy_bucket_goes_in_as_soon_as_one_here_settles(
    client: httpx.AsyncClient, alice: None, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The place an attempt frees goes to a waiter of this process at once (throttle.Turns),
    not at its next poll: here the polls are 30 s apart, and the waiter is in within 5 s."""
    monkeypatch.setattr(throttle, "BUSY_POLL", (30.0, 30.0))
    monkeypatch.setattr(throttle, "BUSY_WAIT", 60.0)
    await fail(client, USERNAME.free)  # the budget spent: one attempt in flight fills it
    release = anyio.Event()
    verify = services.passwords.verify

    async def held(stored_hash: str | None, password: str) -> Verdict:
        if not release.is_set():  # the first attempt's check waits until released
            await release.wait()
        return await verify(stored_hash, password)

    monkeypatch.setattr(services.passwords, "verify", held)
    statuses: list[int] = []
    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(send, client, "correct horse", statuses)
            await anyio.sleep(0.2)  # the first is in, held in its password check
            group.start_soon(send, client, "correct horse", statuses)
            await anyio.sleep(0.2)  # the second found the bucket busy and waits
            release.set()
    assert statuses == [200, 200]


async def send(
    client: httpx.AsyncClient, password: str, statuses: list[int], username: str = "alice"
) -> None:
    response = await client.post(
        "/token",
        data={
            "grant_type": "password",
            "client_id": "spa",
            "username": username,
            "password": password,
        },
        headers={"X-Forwarded-For": "203.0.113.7"},
    )
    statuses.append(response.status_code)


async def burst(client: httpx.AsyncClient, passwords: list[str]) -> list[int]:
    statuses: list[int] = []
    async with anyio.create_task_group() as group:
        for password in passwords:
            group.start_soon(send, client, password, statuses)
    return statuses

"""Cleanup keeps tables bounded: what no request needs is purged, what one may need survives."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.actions.revocation_feed import revocation_feed
from authserver.audit import AuditEvent
from authserver.clients import ClientCredentials
from authserver.config import Settings
from authserver.db.purge import PURGE_LOCK, purge, purge_periodically
from authserver.services import Services
from authserver.tokens.refresh import rotate, start_family
from tests.conftest import Clock, Registry
from tests.test_cli import make_cli

DAY = 86_400


async def count(engine: AsyncEngine, table: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(f"SELECT COUNT(*) FROM {table}"))).scalar_one())


async def family(services: Services, user_id: str, rotations: int = 0) -> str:
    """A family started now, its token rotated `rotations` times (each spent one kept)."""
    settings = services.settings
    rotation = await start_family(
        services.families,
        user_id=user_id,
        client_id="spa",
        scope="profile",
        now=services.clock(),
        refresh_ttl=settings.refresh_token_ttl,
        session_ttl=settings.session_ttl,
    )
    token = rotation.refresh_token
    for _ in range(rotations):
        token = (
            await rotate(
                services.families,
                token,
                client_id="spa",
                now=services.clock(),
                refresh_ttl=settings.refresh_token_ttl,
                grace=0,
            )
        ).refresh_token
    return rotation.family.id


async def family_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        ids = (await conn.execute(text("SELECT id FROM refresh_families"))).scalars()
        return {str(sid) for sid in ids}  # UUID objects from Postgres


async def test_purge_deletes_the_dead_and_keeps_the_live(
    services: Services,
    registry: Registry,
    spa: str,
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    alice = await registry.user()
    window = settings.access_token_ttl + settings.clock_leeway
    start = clock.now

    # Born at `start`: one ends by age, one is revoked long ago, one is revoked just now
    # though its session ended long ago (the feed still lists it), one lives.
    expired = await family(services, alice, rotations=2)
    revoked_long_ago = await family(services, alice)
    clock.advance(DAY)
    assert await services.families.revoke(revoked_long_ago, "logout", clock.now)
    assert not await services.families.revoke(revoked_long_ago, "logout", clock.now)
    revoked_late = await family(services, alice)
    clock.advance(settings.session_ttl + window + 1)
    live = await family(services, alice)
    assert await services.families.revoke(revoked_late, "revoked", clock.now)
    # (deny sweeps expired entries as of its `now`: the expired one goes in last.)
    await services.denylist.deny("live-jti", clock.now + window, clock.now)
    await services.denylist.deny("old-jti", clock.now - 1, clock.now - 2 * window)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO login_throttle (bucket, failures, last_failure_at, blocked_until)"
                " VALUES ('user:old', 3, :old, :old), ('user:new', 3, :now, :now)"
            ),
            {"old": start - 2 * DAY, "now": clock.now},
        )
    old_event = AuditEvent(clock.now - (settings.audit_retention_days + 1) * DAY, "x", "old", "t")
    await services.audit.record([old_event, AuditEvent(clock.now, "x", "new", "t")])
    # Each family's live token is in its row, with the one spent last; the expired one's
    # first token, spent before that, apart (0030).
    assert await count(engine, "spent_refresh_tokens") == 1

    purged = await purge(engine, settings, clock.now)

    assert purged is not None
    assert await family_ids(engine) == {revoked_late, live}
    assert expired not in await family_ids(engine)
    assert purged.families == 2 and purged.refresh_tokens == 4
    assert await count(engine, "spent_refresh_tokens") == 0
    assert purged.denied_access_tokens == 1 and purged.throttle_buckets == 1
    async with engine.connect() as conn:
        jtis = set((await conn.execute(text("SELECT jti FROM denied_access_tokens"))).scalars())
        buckets = set((await conn.execute(text("SELECT bucket FROM login_throttle"))).scalars())
        actions = set((await conn.execute(text("SELECT action FROM audit_events"))).scalars())
    assert jtis == {"live-jti"} and buckets == {"user:new"}
    assert "old" not in actions and "new" in actions
    # The revocation feed still names the family revoked within the window.
    secret = await registry.client("rs")
    assert secret is not None
    feed = await revocation_feed(services, ClientCredentials("rs", secret))
    assert revoked_late.encode() in feed.body

    # Once the window has passed, it goes too; the live session stays.
    clock.advance(window + 1)
    again = await purge(engine, settings, clock.now)
    assert again is not None and again.families == 1
    assert await family_ids(engine) == {live}
    assert await purge(engine, settings, clock.now) is not None  # idempotent


async def test_tables_stay_bounded_under_constant_traffic(
    services: Services,
    registry: Registry,
    spa: str,
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    """A session a day, each logged out, for many session lifetimes: the table stays at what
    the window needs, not at the number of days."""
    alice = await registry.user()
    step = settings.session_ttl // 4
    for _ in range(20):
        fid = await family(services, alice)
        clock.advance(step)
        await services.families.revoke(fid, "logout", clock.now)
        await purge(engine, settings, clock.now)
    assert await count(engine, "refresh_families") <= 2
    assert await count(engine, "spent_refresh_tokens") <= 2


async def test_one_instance_purges_at_a_time(
    engine: AsyncEngine, settings: Settings, clock: Clock
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer: no lock to take")
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PURGE_LOCK})
        try:
            assert await purge(engine, settings, clock.now) is None
        finally:
            await holder.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PURGE_LOCK})
    assert await purge(engine, settings, clock.now) is not None


async def test_the_periodic_job_runs_at_its_interval_and_is_off_at_zero(
    engine: AsyncEngine, settings: Settings, clock: Clock, services: Services
) -> None:
    await services.denylist.deny("old-jti", clock.now - 1, clock.now)
    off = Settings(**{**vars(settings), "purge_interval": 0})
    with anyio.fail_after(1):
        await purge_periodically(engine, off, clock)  # returns at once
    fast = Settings(**{**vars(settings), "purge_interval": 1})
    with anyio.move_on_after(1.5):
        await purge_periodically(engine, fast, clock)
    assert await count(engine, "denied_access_tokens") == 0


async def test_the_purge_command(
    engine: AsyncEngine, settings: Settings, services: Services, tmp_path: Path
) -> None:
    now = services.clock()
    await services.denylist.deny("old-jti", now - 1, now)
    result = make_cli(tmp_path, settings.database_url)("purge")
    assert result.returncode == 0, result.stderr
    assert "denied access tokens: 1" in result.stderr
    assert await count(engine, "denied_access_tokens") == 0


async def test_a_backlog_larger_than_a_batch_is_purged_in_one_round(
    services: Services,
    registry: Registry,
    spa: str,
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    """Each batch is one short transaction; the round goes on until a batch is not full."""
    alice = await registry.user()
    for n in range(7):
        await family(services, alice)
        async with engine.begin() as conn:  # (deny itself sweeps the expired ones)
            await conn.execute(
                text("INSERT INTO denied_access_tokens (jti, expires_at) VALUES (:jti, :at)"),
                {"jti": f"jti-{n}", "at": clock.now},
            )
    clock.advance(settings.session_ttl + settings.access_token_ttl + settings.clock_leeway + 1)
    live = await family(services, alice)

    purged = await purge(engine, settings, clock.now, batch=3)

    assert purged is not None
    assert (purged.families, purged.refresh_tokens) == (7, 7)
    assert purged.denied_access_tokens == 7
    assert await family_ids(engine) == {live}
    assert await count(engine, "denied_access_tokens") == 0


async def test_a_deleted_users_families_go_with_them(
    services: Services, registry: Registry, spa: str, engine: AsyncEngine, settings: Settings
) -> None:
    """No foreign key deletes them since 0029: the purge does, in the transaction that deletes
    the user (an abandoned sign-up here, made one by hand after it started a family)."""
    alice = await registry.user()
    bob = await registry.user("bob")
    await family(services, alice, rotations=2)  # live, parent in its row, one spent apart
    kept = await family(services, bob, rotations=2)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET disabled = true, signup_expires_at = :at WHERE id = :id"),
            {"at": services.clock() - 1, "id": alice},
        )

    purged = await purge(engine, settings, services.clock())

    assert purged is not None and purged.abandoned_sign_ups == 1
    assert (purged.families, purged.refresh_tokens) == (1, 3)
    assert await family_ids(engine) == {kept}
    assert await count(engine, "spent_refresh_tokens") == 1  # bob's

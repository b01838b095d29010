"""The purge keeps the browser sign-in's tables bounded, and keeps a used code only minutes after
it expired: long enough for its holder's replay to revoke what it started, not a session's
lifetime."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver import page_limits
from authserver.accounts import links
from authserver.accounts.links import VERIFY, Link, ResetRequest, Spent
from authserver.audit import AuditEvent
from authserver.config import Settings
from authserver.db.purge import purge
from authserver.services import Services
from authserver.tokens.refresh import hash_token
from tests.conftest import Clock, Registry
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    code_for,
    exchange,
    sign_out_form,
    web_client,
)

DAY = 86_400


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


async def rows(engine: AsyncEngine, query: str) -> list[str]:
    async with engine.connect() as conn:
        return [str(value) for value in (await conn.execute(text(query))).scalars()]


async def test_codes_and_login_sessions_are_purged_when_nothing_needs_them(
    client: httpx.AsyncClient,
    registry: Registry,
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    await registry.user("alice", "correct horse")
    await web_client(registry)
    used_flow, unused_flow = Flow.new(WEB), Flow.new(WEB)
    used = await code_for(client, used_flow)
    unused = await code_for(client, unused_flow)
    assert (await exchange(client, used, used_flow)).status_code == 200

    clock.advance(61)  # both codes expired
    purged = await purge(engine, settings, clock.now)
    assert purged is not None and purged.authorization_codes == 1
    codes = await rows(engine, "SELECT code_hash FROM authorization_codes")
    assert codes == [hash_token(used)] != [hash_token(unused)]  # a replay must still find it ...
    assert (await exchange(client, used, used_flow)).status_code == 400  # ... and revoke

    clock.advance(settings.session_ttl)  # no family it started can be alive now
    await purge(engine, settings, clock.now)
    assert await rows(engine, "SELECT code_hash FROM authorization_codes") == []
    # The login session passed its absolute end long ago.
    assert await rows(engine, "SELECT id FROM login_sessions") == []


async def test_a_used_code_is_purged_minutes_after_it_expired(
    client: httpx.AsyncClient,
    registry: Registry,
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    await registry.user("alice", "correct horse")
    await web_client(registry)
    flow = Flow.new(WEB)
    used = await code_for(client, flow)
    assert (await exchange(client, used, flow)).status_code == 200

    clock.advance(61 + 9 * 60)  # within the replay window
    await purge(engine, settings, clock.now)
    assert await rows(engine, "SELECT code_hash FROM authorization_codes") == [hash_token(used)]

    clock.advance(60)  # 60 s of life, then ten minutes
    purged = await purge(engine, settings, clock.now)
    assert purged is not None and purged.authorization_codes == 1
    assert await rows(engine, "SELECT code_hash FROM authorization_codes") == []


async def test_an_ended_login_session_is_purged_and_a_live_one_kept(
    client: httpx.AsyncClient,
    registry: Registry,
    engine: AsyncEngine,
    settings: Settings,
    clock: Clock,
) -> None:
    await registry.user("alice", "correct horse")
    await web_client(registry)
    await code_for(client, Flow.new(WEB))
    await purge(engine, settings, clock.now)
    assert len(await rows(engine, "SELECT id FROM login_sessions")) == 1

    confirmed = await sign_out_form(client, client_id=WEB)
    assert (await client.post("/end-session", data=confirmed)).status_code == 200
    await purge(engine, settings, clock.now)
    assert await rows(engine, "SELECT id FROM login_sessions") == []


async def test_spent_and_expired_links_old_reset_requests_and_page_counts_are_purged(
    services: Services, registry: Registry, engine: AsyncEngine, settings: Settings, clock: Clock
) -> None:
    alice = await registry.user("alice", "correct horse")
    now = clock.now

    async def link(expires_at: int) -> str:
        token = links.new_token()
        found = Link(links.token_hash(token), VERIFY, alice, now, expires_at, email="a@x.test")
        await services.links.issue(found)
        return links.token_hash(token)

    live, spent, expired = await link(now + DAY), await link(now + DAY), await link(now + 1)

    def audit(user_id: str, email: str) -> AuditEvent:
        return AuditEvent(now, user_id, "user.email_verified", user_id)

    assert await services.links.spend_verification(spent, now, audit) is Spent.DONE
    await services.links.ask_reset(ResetRequest("old@x.test", None), now - 1)
    await services.links.ask_reset(ResetRequest("new@x.test", None), now + 2)
    await page_limits.retry_after(services.page_limits, now, "192.0.2.1", "a@x.test")

    purged = await purge(engine, settings, now + 2)
    assert purged is not None and (purged.link_tokens, purged.reset_requests) == (2, 0)
    # The email's 900 s window is aligned to the clock: when `now` is its last second, it is
    # over at now + 2 and goes already (CI met that second once).
    over_already = int((now - now % 900) + 900 <= now + 2)
    assert purged.page_requests == over_already
    assert await rows(engine, "SELECT token_hash FROM link_tokens") == [live] != [expired]

    later = now + settings.password_reset_ttl  # the first request waited a link's lifetime
    await page_limits.retry_after(services.page_limits, later, "192.0.2.2")  # a live window
    purged = await purge(engine, settings, later)
    assert purged is not None and (purged.reset_requests, purged.page_requests) == (
        1,
        2 - over_already,
    )
    assert await rows(engine, "SELECT email FROM reset_requests") == ["new@x.test"]
    assert len(await rows(engine, "SELECT bucket FROM page_requests")) == 1
    assert await rows(engine, "SELECT token_hash FROM link_tokens") == [live]

"""Racing one authorization code: real commits on separate pooled connections, both databases.

Twenty exchanges of one code at once: the database lets at most one of them succeed (one
conditional UPDATE), and, the others being replays of a used code, the family the winner
started is revoked (RFC 6749 §4.1.2). A user disabled while the sign-in page checks the
password gets no login session, and one disabled while a code is exchanged keeps no family.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Registry
from tests.http.signin import (
    INSECURE_COOKIES,
    WEB,
    Flow,
    admin_headers,
    authorize,
    code_for,
    csrf_token,
    exchange,
    form_action,
    sign_out_form,
    web_client,
)

ROUNDS = 5
RACERS = 20


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return {**INSECURE_COOKIES, "argon2_time_cost": "2", "argon2_memory_kib": "32768"}


async def test_twenty_racing_exchanges_of_one_code_succeed_at_most_once(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    await registry.user("alice", "correct horse")
    await web_client(registry)
    for _ in range(ROUNDS):
        flow = Flow.new(WEB)
        code = await code_for(client, flow)

        responses = await asyncio.gather(*(exchange(client, code, flow) for _ in range(RACERS)))

        winners = [r for r in responses if r.status_code == 200]
        assert len(winners) <= 1, [r.status_code for r in responses]
        for response in responses:
            if response.status_code != 200:
                assert response.status_code == 400, response.text
                assert response.json()["error"] == "invalid_grant"
        if winners:  # the others were replays: what the winner got is revoked
            token = winners[0].json()["refresh_token"]
            refreshed = await client.post(
                "/refresh", data={"client_id": WEB, "refresh_token": token}
            )
            assert refreshed.status_code == 400
    async with engine.connect() as conn:
        live = (
            await conn.execute(
                text("SELECT count(*) FROM refresh_families WHERE revoked_at IS NULL")
            )
        ).scalar_one()
    assert live == 0


async def test_an_exchange_racing_one_without_the_verifier_keeps_the_winners_family(
    client: httpx.AsyncClient, registry: Registry
) -> None:
    """The holder's exchange racing others of the same code that lack its verifier (a
    double submit gone wrong, or whoever saw the code): the holder's wins whatever the order,
    and what it got stays live, since only a replay with the verifier revokes."""
    await registry.user("alice", "correct horse")
    await web_client(registry)
    for _ in range(ROUNDS):
        flow = Flow.new(WEB)
        code = await code_for(client, flow)
        others = [{"code_verifier": "wrong-" + "v" * 50}, {"code_verifier": ""}] * 3

        holder, *rest = await asyncio.gather(
            exchange(client, code, flow), *(exchange(client, code, flow, **o) for o in others)
        )

        assert holder.status_code == 200, holder.text
        assert {r.status_code for r in rest} == {400}
        token = holder.json()["refresh_token"]
        refreshed = await client.post("/refresh", data={"client_id": WEB, "refresh_token": token})
        assert refreshed.status_code == 200, refreshed.text


async def test_a_sign_in_racing_the_disable_leaves_no_login_session(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine
) -> None:
    root = await admin_headers(client, registry)
    await web_client(registry)
    for i in range(5):
        sub = await registry.user(f"user{i}", "correct horse")
        client.cookies.clear()
        login_url = (await authorize(client, Flow.new(WEB).params)).headers["location"]
        page = await client.get(login_url)
        form = {
            "csrf_token": csrf_token(page.text),
            "username": f"user{i}",
            "password": "correct horse",
        }
        sign_in = asyncio.create_task(client.post(form_action(page.text), data=form))
        await asyncio.sleep(0.01)  # inside argon2
        disabled = await client.post(f"/admin/users/{sub}/disable", headers=root)
        assert disabled.status_code == 204
        answer = await sign_in
        assert answer.status_code in (303, 400), answer.text
    async with engine.connect() as conn:
        live = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM login_sessions AS s JOIN users AS u ON u.id = s.user_id"
                    " WHERE u.disabled AND s.revoked_at IS NULL"
                )
            )
        ).scalar_one()
    assert live == 0


async def test_an_exchange_racing_end_session_leaves_no_live_family(
    client: httpx.AsyncClient, registry: Registry, engine: AsyncEngine
) -> None:
    """The exchange holds the login session FOR SHARE while it stores the family; the end's
    UPDATE of that row waits for it, and then revokes the family with the rest."""
    await registry.user("alice", "correct horse")
    await web_client(registry)
    for _ in range(ROUNDS):
        client.cookies.clear()
        flow = Flow.new(WEB)
        code = await code_for(client, flow)
        confirmed = await sign_out_form(client, client_id=WEB)  # ends nothing yet
        exchanged, ended = await asyncio.gather(
            exchange(client, code, flow), client.post("/end-session", data=confirmed)
        )
        assert exchanged.status_code in (200, 400), exchanged.text
        assert ended.status_code == 200, ended.text
    async with engine.connect() as conn:
        live = (
            await conn.execute(
                text("SELECT count(*) FROM refresh_families WHERE revoked_at IS NULL")
            )
        ).scalar_one()
    assert live == 0


async def test_an_exchange_racing_a_disable_leaves_no_live_family(
    client: httpx.AsyncClient, registry: Registry, spa: str, engine: AsyncEngine
) -> None:
    """The exchange holds the user's row FOR SHARE while it stores the family (and reads the
    profile for the tokens in that statement, not after it): the disable waits for it and then
    revokes the family, or commits first and the code is refused."""
    root = await admin_headers(client, registry)
    await web_client(registry)
    for i in range(ROUNDS):
        sub = await registry.user(f"user{i}", "correct horse")
        client.cookies.clear()
        flow = Flow.new(WEB)
        code = await code_for(client, flow, username=f"user{i}")
        exchanged, disabled = await asyncio.gather(
            exchange(client, code, flow), client.post(f"/admin/users/{sub}/disable", headers=root)
        )
        assert exchanged.status_code in (200, 400), exchanged.text
        assert disabled.status_code == 204, disabled.text
    async with engine.connect() as conn:
        live = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM refresh_families AS f JOIN users AS u ON u.id = f.user_id"
                    " WHERE u.disabled AND f.revoked_at IS NULL"
                )
            )
        ).scalar_one()
    assert live == 0

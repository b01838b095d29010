"""One user's second step raced across two instances (two apps, two engines, one database):
ten sign-ins posting one TOTP code at once sign in at most once, since the code's step is
accepted by one conditional UPDATE (db/second_factors.py), not by a read in Python; and a
burst of wrong codes gets no more tries than a sequence, as a burst of wrong passwords
(tests/http/test_throttle.py, TestBursts), since a wrong code spends the same budget."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pyotp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from authserver.app import create_app
from authserver.config import Settings
from authserver.http.sign_in import WRONG_CODE
from authserver.throttle import ADDRESS, USERNAME
from tests.conftest import ISSUER, Clock
from tests.http.signin import (
    CALLBACK,
    INSECURE_COOKIES,
    WEB,
    Flow,
    authorize,
    csrf_token,
    form_action,
    sign_in,
)
from tests.http.test_second_factor_sign_in import secret as secret  # the fixture

RACERS = 10
BURST = 40
TRIALS = 3
FREE_TRIES = USERNAME.free + 1  # what a sequence of wrong codes gets checked


@pytest.fixture
def settings_overrides() -> dict[str, str]:
    return INSECURE_COOKIES


@pytest.fixture
async def other(app: Starlette, settings: Settings, clock: Clock) -> AsyncIterator[Starlette]:
    """The second instance: its own app, engine and pools, on the same database."""
    second = create_app(settings, clock=clock)
    async with second.router.lifespan_context(second):
        yield second


def browsers_of(apps: list[Starlette], count: int) -> list[httpx.AsyncClient]:
    """`count` browsers, each with its own cookies, spread over the instances in turn."""
    return [
        httpx.AsyncClient(transport=httpx.ASGITransport(app=apps[n % len(apps)]), base_url=ISSUER)
        for n in range(count)
    ]


async def code_form(http: httpx.AsyncClient) -> tuple[str, str]:
    """The password step of a fresh authorization request: the code form's action and token."""
    response = await authorize(http, Flow.new(WEB).params)
    answered = await sign_in(http, response.headers["location"])
    assert answered.status_code == 303 and "/login/factor?" in answered.headers["location"]
    page = await http.get(answered.headers["location"])
    assert page.status_code == 200, page.text
    return form_action(page.text), csrf_token(page.text)


async def failures_audited(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        counted = await conn.scalar(
            text("SELECT COUNT(*) FROM audit_events WHERE action = 'login.second_factor_failed'")
        )
    return int(counted or 0)


async def test_ten_sign_ins_on_two_instances_racing_with_one_code_sign_in_once(
    app: Starlette, other: Starlette, secret: str, clock: Clock, engine: AsyncEngine
) -> None:
    browsers = browsers_of([app, other], RACERS)
    try:
        forms = [await code_form(http) for http in browsers]  # ten pending sign-ins
        code = pyotp.TOTP(secret).at(clock())

        answers = await asyncio.gather(
            *(
                http.post(action, data={"csrf_token": token, "code": code})
                for http, (action, token) in zip(browsers, forms, strict=True)
            )
        )
    finally:
        for http in browsers:
            await http.aclose()

    signed_in = [a for a in answers if a.status_code == 303]
    assert len(signed_in) <= 1, [a.status_code for a in answers]
    assert all(a.headers["location"].startswith(CALLBACK) for a in signed_in)
    refused = [a for a in answers if a.status_code != 303]
    # The losers were told the code is wrong or used (or, past the budget, to wait), and each
    # wrong-code answer was a failure counted against alice's budget.
    assert {a.status_code for a in refused} <= {400, 429}, [a.status_code for a in refused]
    wrong = [a for a in refused if a.status_code == 400]
    assert all(WRONG_CODE in a.text for a in wrong)
    assert len(wrong) >= min(len(refused), USERNAME.free)
    assert await failures_audited(engine) == len(wrong)


async def test_a_burst_of_wrong_codes_on_two_instances_gets_no_more_tries_than_a_sequence(
    app: Starlette, other: Starlette, secret: str, clock: Clock, engine: AsyncEngine
) -> None:
    for trial in range(TRIALS):
        # One pending sign-in per instance (the pending sign-in is in the database, so either
        # could take the other's): half the burst through each.
        browsers = browsers_of([app, other], 2)
        try:
            forms = [await code_form(http) for http in browsers]
            answers = await asyncio.gather(
                *(
                    browsers[n % 2].post(
                        forms[n % 2][0], data={"csrf_token": forms[n % 2][1], "code": "000000"}
                    )
                    for n in range(BURST)
                )
            )
        finally:
            for http in browsers:
                await http.aclose()
        statuses = [a.status_code for a in answers]
        checked = statuses.count(400)
        assert sorted(statuses) == [400] * checked + [429] * (BURST - checked), statuses
        assert checked == FREE_TRIES, f"trial {trial}: {checked} wrong codes checked"
        assert all("retry-after" in a.headers for a in answers if a.status_code == 429)
        clock.advance(ADDRESS.forget + 1)  # a quiet period: the next trial starts afresh
    assert await failures_audited(engine) == TRIALS * FREE_TRIES

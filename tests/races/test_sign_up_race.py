"""Sign-ups racing for one username or one address: real commits on separate pooled
connections, both databases. The unique keys settle them (users.username_key, email_key): one
account per name, the others a clear "taken" page, never an error."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from authserver.services import Services
from tests._smtp import SmtpServer
from tests.http.mailbox import mail_on
from tests.http.signin import INSECURE_COOKIES, csrf_token

RACERS = 8
SAME_ADDRESS = 5  # page_limits.PER_EMAIL: the sixth would be throttled


@pytest.fixture
def settings_overrides(smtp: SmtpServer) -> dict[str, str]:
    return {**INSECURE_COOKIES, **mail_on(smtp), "signup": "verified"}


async def race(client: httpx.AsyncClient, forms: list[dict[str, str]]) -> list[httpx.Response]:
    token = csrf_token((await client.get("/signup")).text)
    return await asyncio.gather(
        *(client.post("/signup", data={"csrf_token": token, **form}) for form in forms)
    )


async def test_one_username_one_account(client: httpx.AsyncClient, services: Services) -> None:
    forms = [
        {"username": "Zoe" if n % 2 else "zoe", "email": f"zoe{n}@example.test",
         "password": "a fine long passphrase"}
        for n in range(RACERS)
    ]  # fmt: skip

    answers = await race(client, forms)

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [400] * (RACERS - 1), [a.text[:200] for a in answers]
    assert all("This username is taken" in a.text for a in answers if a.status_code == 400)
    [user] = await services.users.page(10, None, None)
    assert user.username in ("Zoe", "zoe")


async def test_one_address_one_owner(client: httpx.AsyncClient, services: Services) -> None:
    forms = [
        {"username": f"yan{n}", "email": "Yan@example.test" if n % 2 else "yan@example.test",
         "password": "a fine long passphrase"}
        for n in range(SAME_ADDRESS)
    ]  # fmt: skip

    answers = await race(client, forms)

    assert [a.status_code for a in answers] == [200] * SAME_ADDRESS
    users = await services.users.page(20, None, None)
    assert len(users) == SAME_ADDRESS  # every name held, as the page said
    assert len([u for u in users if u.profile.email is not None]) == 1

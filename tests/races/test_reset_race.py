"""Racing password reset links: real commits on separate pooled connections, both databases
(API.md "Links in mail are not spent by a GET": two POSTs of one token racing, exactly one
succeeds; issue 23: two resets of one account with one link each, and a reset racing a
password change, at most one password wins and every link dies)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from authserver.accounts import links
from authserver.accounts.links import RESET, Link
from authserver.mail.compose import Mail
from authserver.services import Services
from tests._smtp import SmtpServer
from tests.conftest import Registry, password_login
from tests.http.mailbox import mail_on
from tests.http.signin import INSECURE_COOKIES, csrf_token

RACERS = 10


@pytest.fixture
def settings_overrides(smtp: SmtpServer) -> dict[str, str]:
    return {**INSECURE_COOKIES, **mail_on(smtp)}


@pytest.fixture
async def alice(registry: Registry, spa: str) -> str:
    return await registry.user("alice", "correct horse")


async def mailed_link(services: Services, user_id: str) -> str:
    """A reset link as the resolver stores it, its mail queued beside it."""
    user = await services.users.by_id(user_id)
    assert user is not None
    token, now = links.new_token(), services.clock()
    link = Link(
        links.token_hash(token), RESET, user_id, now, now + 1800,
        links.password_fingerprint(user.password_hash),
    )  # fmt: skip
    await services.links.issue(link, Mail("alice@example.test", "Reset", "text", "<p>html</p>"))
    return token


async def posts(
    client: httpx.AsyncClient, tokens_and_passwords: list[tuple[str, str]]
) -> list[httpx.Response]:
    page = await client.get("/password-reset/confirm", params={"token": "x"})
    csrf = csrf_token(page.text)
    return await asyncio.gather(
        *(
            client.post(
                "/password-reset/confirm",
                data={"csrf_token": csrf, "token": token, "password": password},
            )
            for token, password in tokens_and_passwords
        )
    )


async def test_racing_posts_of_one_link_set_one_password(
    client: httpx.AsyncClient, services: Services, alice: str
) -> None:
    token = await mailed_link(services, alice)
    passwords = [f"racing passphrase number {n}" for n in range(RACERS)]

    answers = await posts(client, [(token, p) for p in passwords])

    winners = [p for p, a in zip(passwords, answers, strict=True) if a.status_code == 200]
    assert len(winners) == 1, [a.status_code for a in answers]
    assert all(a.status_code in (200, 400) for a in answers)
    assert (await password_login(client, "alice", winners[0])).status_code == 200
    losers = [p for p in passwords if p != winners[0]]
    for password in losers[:3]:  # (more wrong passwords would meet the login throttle)
        assert (await password_login(client, "alice", password)).status_code == 400


async def test_two_links_of_one_account_racing_set_one_password(
    client: httpx.AsyncClient, services: Services, alice: str
) -> None:
    first, second = await mailed_link(services, alice), await mailed_link(services, alice)
    racing = [(first, f"first link passphrase {n}") for n in range(RACERS // 2)]
    racing += [(second, f"second link passphrase {n}") for n in range(RACERS // 2)]

    answers = await posts(client, racing)

    winners = [p for (_, p), a in zip(racing, answers, strict=True) if a.status_code == 200]
    assert len(winners) == 1, [a.status_code for a in answers]
    assert (await password_login(client, "alice", winners[0])).status_code == 200
    # Both links are dead now, the loser's too.
    again = await posts(client, [(first, "one more passphrase"), (second, "and another one")])
    assert [a.status_code for a in again] == [400, 400]


async def test_a_reset_racing_a_password_change_leaves_the_change_and_a_dead_link(
    client: httpx.AsyncClient, services: Services, alice: str
) -> None:
    token = await mailed_link(services, alice)
    changed = await services.passwords.hash("changed by the admin")

    answers, _ = await asyncio.gather(
        posts(client, [(token, "the reset's passphrase")]),
        services.users.set_password_hash(alice, changed, []),
    )

    assert answers[0].status_code in (200, 400)
    # Whichever came first, the change was last or the link found the hash changed.
    assert (await password_login(client, "alice", "changed by the admin")).status_code == 200
    assert (await password_login(client, "alice", "the reset's passphrase")).status_code == 400
    assert [a.status_code for a in await posts(client, [(token, "late passphrase")])] == [400]

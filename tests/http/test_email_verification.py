"""Changing the email address over real mail (API.md "Accounts: Email verification"): the link
is followed from what a real SMTP server received, through the ASGI app."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from authserver.services import Services
from tests._smtp import SmtpServer
from tests.conftest import Registry
from tests.http.mailbox import link_in, mail_on, next_mail, text_part
from tests.http.signin import (
    INSECURE_COOKIES,
    assert_strict_headers,
    csrf_token,
    hidden_fields,
    sign_in,
)

PASSWORD = "correct horse"
OLD = "alice@example.test"
NEW = "alice@new.example"


@pytest.fixture
def settings_overrides(smtp: SmtpServer) -> dict[str, str]:
    return {**INSECURE_COOKIES, **mail_on(smtp)}


@pytest.fixture
async def alice(registry: Registry, client: httpx.AsyncClient) -> str:
    user_id = await registry.user("alice", PASSWORD)
    await registry.profile("alice", email=OLD, email_verified=True)
    signed_in = await sign_in(client, "/login")
    assert signed_in.status_code == 200, signed_in.text
    return user_id


async def ask_change(
    client: httpx.AsyncClient, email: str = NEW, password: str = PASSWORD
) -> httpx.Response:
    page = await client.get("/account/email")
    assert page.status_code == 200, page.text
    form = {"csrf_token": csrf_token(page.text), "email": email, "password": password}
    return await client.post("/account/email", data=form)


async def open_link(client: httpx.AsyncClient, link: str) -> httpx.Response:
    parts = urlsplit(link)
    page = await client.get(f"{parts.path}?{parts.query}")
    assert page.status_code == 200, page.text
    assert_strict_headers(page)
    return await client.post("/verify-email", data=hidden_fields(page.text))


async def test_a_new_address_is_the_users_once_its_link_is_opened(
    client: httpx.AsyncClient, smtp: SmtpServer, alice: str, services: Services
) -> None:
    answer = await ask_change(client)
    assert answer.status_code == 200, answer.text
    await next_mail(smtp, 2)
    by_recipient = {r.envelope_to[0]: r for r in smtp.received}
    assert NEW in text_part(by_recipient[OLD])  # the old address is told
    link = link_in(by_recipient[NEW], "/verify-email")
    # Until then the verified address stays the user's.
    user = await services.users.by_id(alice)
    assert user is not None and (user.profile.email, user.profile.email_verified) == (OLD, True)

    verified = await open_link(client, link)

    assert verified.status_code == 200, verified.text
    user = await services.users.by_id(alice)
    assert user is not None and (user.profile.email, user.profile.email_verified) == (NEW, True)
    assert (await open_link(client, link)).status_code == 400  # once
    events = [e.action for e in await services.audit.recent() if e.user == alice]
    assert "user.email_verified" in events


async def test_a_get_of_the_link_changes_nothing(
    client: httpx.AsyncClient, smtp: SmtpServer, alice: str, services: Services
) -> None:
    await ask_change(client)
    await next_mail(smtp, 2)
    [to_new] = [r for r in smtp.received if r.envelope_to == [NEW]]
    parts = urlsplit(link_in(to_new, "/verify-email"))
    for _ in range(3):
        assert (await client.get(f"{parts.path}?{parts.query}")).status_code == 200
    user = await services.users.by_id(alice)
    assert user is not None and user.profile.email == OLD


async def test_the_current_password_is_asked_again(
    client: httpx.AsyncClient, smtp: SmtpServer, alice: str
) -> None:
    wrong = await ask_change(client, password="not the password")
    assert wrong.status_code == 400
    assert "The password is wrong." in wrong.text


async def test_an_address_in_use_gets_the_same_page_and_no_mail(
    client: httpx.AsyncClient, smtp: SmtpServer, alice: str, registry: Registry
) -> None:
    await registry.user("bob", "bob's passphrase")
    await registry.profile("bob", email="bob@example.test")

    taken = await ask_change(client, "BOB@example.test")
    free = await ask_change(client, "carol@example.test")

    assert taken.status_code == free.status_code == 200
    assert taken.text.replace("BOB@example.test", "X") == free.text.replace(
        "carol@example.test", "X"
    )
    await next_mail(smtp, 3)  # the old address twice, carol once
    recipients = sorted(r.envelope_to[0] for r in smtp.received)
    assert recipients == [OLD, OLD, "carol@example.test"]


async def test_hostile_values_are_escaped_and_foreign_posts_refused(
    client: httpx.AsyncClient, smtp: SmtpServer, alice: str
) -> None:
    hostile = '"><script>alert(1)</script>@x'
    answer = await ask_change(client, hostile)
    assert answer.status_code == 400 and hostile not in answer.text
    page = await client.get("/verify-email", params={"token": hostile})
    assert hostile not in page.text
    foreign = await client.post(
        "/account/email", data={"email": NEW, "password": PASSWORD, "csrf_token": "x.y"}
    )
    assert foreign.status_code == 403
    assert (await client.post("/verify-email", data={"token": "x"})).status_code == 403


async def test_without_a_session_the_form_goes_to_the_sign_in_and_back(
    client: httpx.AsyncClient, smtp: SmtpServer, registry: Registry
) -> None:
    await registry.user("alice", PASSWORD)
    for answer in (
        await client.get("/account/email"),
        await client.post("/account/email", data={"email": NEW, "password": PASSWORD}),
    ):
        assert answer.status_code in (303, 403), answer.text
    shown = await client.get("/account/email")
    assert shown.status_code == 303
    assert shown.headers["location"] == "/login?then=account_email"

    back = await sign_in(client, shown.headers["location"])

    assert back.status_code == 303 and back.headers["location"] == "/account/email"
    form = await client.get("/account/email")
    assert form.status_code == 200 and 'name="email"' in form.text

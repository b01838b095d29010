"""The outbox and its sender, on both databases, against a real SMTP server (tests/_smtp.py):
mail arrives whole, a dead server delays it with backoff and loses nothing, concurrent
senders deliver each mail once, and a lease that ends makes a mail due again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.config import Settings, load_settings
from authserver.db.engine import make_engine
from authserver.db.outbox import SqlOutbox
from authserver.mail.compose import Mail, compose
from authserver.mail.sender import (
    FIRST_RETRY,
    LEASE,
    MAX_ATTEMPTS,
    MailSender,
    Queued,
    Round,
    backoff,
)
from tests._smtp import REFUSED_DOMAIN, SmtpServer, Tls, make_tls, password_check, smtp_server
from tests.conftest import Clock

FROM = "Example Auth <auth@example.test>"


def smtp_settings(settings: Settings, url: str) -> Settings:
    """The test's settings with mail on, to `url`."""
    return load_settings(
        {
            "AUTHSERVER_DATABASE_URL": settings.database_url,
            "AUTHSERVER_ISSUER": settings.issuer,
            "AUTHSERVER_SMTP_URL": url,
            "AUTHSERVER_MAIL_FROM": FROM,
        }
    )


@pytest.fixture
async def store_engine(settings: Settings, engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The server's own kind of engine (SQLite's BEGIN IMMEDIATE, Postgres's pool); `engine`
    first, so the outbox starts empty."""
    made = make_engine(settings)
    yield made
    await made.dispose()


def sender_for(
    engine: AsyncEngine, settings: Settings, url: str, clock: Callable[[], int]
) -> MailSender:
    mail = smtp_settings(settings, url)
    assert mail.smtp_url is not None and mail.mail_from is not None
    return MailSender(SqlOutbox(engine), mail.smtp_url, mail.mail_from, clock, timeout=5)


def a_mail(settings: Settings, to: str = "alice@example.test") -> Mail:
    return compose(settings, "test", to, "en")


async def outbox_rows(engine: AsyncEngine) -> list[tuple[str, int, int, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, attempts, next_attempt_at, claim FROM mail_outbox ORDER BY id")
        )
        return [tuple(row) for row in rows]


def parts(message: EmailMessage) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.iter_parts()}


async def test_a_queued_mail_arrives_with_text_and_html(
    settings: Settings, store_engine: AsyncEngine, smtp: SmtpServer, clock: Clock
) -> None:
    mail = a_mail(settings)
    mail_id = await SqlOutbox(store_engine).enqueue(mail, clock())

    done = await sender_for(store_engine, settings, smtp.url, clock).deliver_due()

    assert done == Round(sent=1)
    [received] = smtp.wait_for(1)
    assert received.envelope_from == "auth@example.test"
    assert received.envelope_to == ["alice@example.test"]
    message = received.message
    assert message["From"] == FROM
    assert message["To"] == "alice@example.test"
    assert message["Subject"] == "Test mail from authserver"
    assert message["Message-ID"] == f"<{mail_id}@example.test>"
    assert message.get_content_type() == "multipart/alternative"
    body = parts(message)
    assert list(body) == ["text/plain", "text/html"]
    assert f"authorization server at {settings.issuer}" in body["text/plain"]
    assert f"authorization server at {settings.issuer}" in body["text/html"]
    assert await outbox_rows(store_engine) == []  # sent: deleted


async def test_a_dead_server_backs_off_and_the_mail_arrives_when_it_is_back(
    settings: Settings,
    store_engine: AsyncEngine,
    dead_smtp_port: int,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = SqlOutbox(store_engine)
    mail = a_mail(settings)
    mail_id = await outbox.enqueue(mail, clock())
    sender = sender_for(store_engine, settings, f"smtp://127.0.0.1:{dead_smtp_port}", clock)

    with caplog.at_level(logging.WARNING, "authserver.mail.compose"):
        assert await sender.deliver_due() == Round(retried=1)
    assert await outbox_rows(store_engine) == [(mail_id, 1, clock() + FIRST_RETRY, None)]
    # The log says what and why, never the body (a reset mail's holds its link).
    [line] = [r for r in caplog.records if r.name == "authserver.mail.compose"]
    assert mail_id in line.getMessage() and "ConnectionRefusedError" in line.getMessage()
    assert mail.text.splitlines()[0] not in caplog.text and "alice@" not in caplog.text

    # Not due yet: nothing is tried.
    clock.advance(FIRST_RETRY - 1)
    assert await sender.deliver_due() == Round()
    # Due: tried again, and put off twice as long.
    clock.advance(1)
    assert await sender.deliver_due() == Round(retried=1)
    assert await outbox_rows(store_engine) == [(mail_id, 2, clock() + 2 * FIRST_RETRY, None)]

    with smtp_server(dead_smtp_port) as smtp:
        clock.advance(2 * FIRST_RETRY)
        assert await sender.deliver_due() == Round(sent=1)
        [received] = smtp.wait_for(1)
    assert received.message["Message-ID"] == f"<{mail_id}@example.test>"
    assert await outbox_rows(store_engine) == []


def test_backoff_doubles_up_to_an_hour() -> None:
    assert [backoff(n) for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]


async def test_a_mail_is_given_up_after_the_last_attempt(
    settings: Settings,
    store_engine: AsyncEngine,
    dead_smtp_port: int,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mail_id = await SqlOutbox(store_engine).enqueue(a_mail(settings), clock())
    sender = sender_for(store_engine, settings, f"smtp://127.0.0.1:{dead_smtp_port}", clock)
    for attempt in range(1, MAX_ATTEMPTS):
        assert await sender.deliver_due() == Round(retried=1)
        clock.advance(backoff(attempt))

    with caplog.at_level(logging.WARNING, "authserver.mail.compose"):
        assert await sender.deliver_due() == Round(dropped=1)

    assert await outbox_rows(store_engine) == []
    assert f"mail {mail_id} given up after {MAX_ATTEMPTS} attempt(s)" in caplog.text


async def test_a_recipient_refused_for_good_is_dropped_at_once(
    settings: Settings,
    store_engine: AsyncEngine,
    smtp: SmtpServer,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox = SqlOutbox(store_engine)
    refused = await outbox.enqueue(a_mail(settings, f"nobody{REFUSED_DOMAIN}"), clock())
    await outbox.enqueue(a_mail(settings, "bob@example.test"), clock() + 1)
    clock.advance(1)

    with caplog.at_level(logging.WARNING, "authserver.mail.compose"):
        done = await sender_for(store_engine, settings, smtp.url, clock).deliver_due()

    # The refusal ends that mail only: the one after it in the same session is sent.
    assert done == Round(sent=1, dropped=1)
    assert [r.envelope_to for r in smtp.wait_for(1)] == [["bob@example.test"]]
    assert await outbox_rows(store_engine) == []
    [line] = [r for r in caplog.records if r.name == "authserver.mail.compose"]
    assert line.getMessage().startswith(f"mail {refused} given up after 1 attempt(s)")
    assert "550" in line.getMessage()
    assert line.__dict__["recipient_domain"] == REFUSED_DOMAIN.lstrip("@")


async def test_a_claim_whose_lease_ended_is_sent_by_another_sender(
    settings: Settings, store_engine: AsyncEngine, smtp: SmtpServer, clock: Clock
) -> None:
    outbox = SqlOutbox(store_engine)
    mail_id = await outbox.enqueue(a_mail(settings), clock())
    # A sender claims it and dies before sending: its lease holds the mail...
    [claimed] = await outbox.claim("dead-sender", clock(), LEASE, 10)
    assert claimed.id == mail_id and claimed.attempts == 1
    other = sender_for(store_engine, settings, smtp.url, clock)
    assert await other.deliver_due() == Round()
    clock.advance(LEASE - 1)
    assert await other.deliver_due() == Round()

    # ... until it ends: then the mail is due again, and sent.
    clock.advance(1)
    assert await other.deliver_due() == Round(sent=1)
    assert len(smtp.wait_for(1)) == 1
    # The dead sender's late words change nothing.
    await outbox.retry("dead-sender", mail_id, clock() + 60)
    assert await outbox_rows(store_engine) == []


async def test_a_late_sender_does_not_push_back_the_new_holders_claim(
    settings: Settings, store_engine: AsyncEngine, clock: Clock
) -> None:
    outbox = SqlOutbox(store_engine)
    mail_id = await outbox.enqueue(a_mail(settings), clock())
    await outbox.claim("first", clock(), LEASE, 10)
    clock.advance(LEASE)
    await outbox.claim("second", clock(), LEASE, 10)

    await outbox.retry("first", mail_id, clock() + 5)
    await outbox.drop("first", mail_id)

    assert await outbox_rows(store_engine) == [(mail_id, 2, clock() + LEASE, "second")]


async def test_two_senders_draining_at_once_deliver_each_mail_once(
    settings: Settings, store_engine: AsyncEngine, smtp: SmtpServer, clock: Clock
) -> None:
    outbox = SqlOutbox(store_engine)
    count = 24
    ids = {
        await outbox.enqueue(a_mail(settings, f"user{n}@example.test"), clock())
        for n in range(count)
    }
    # Two engines: separate connections, as two instances have.
    second_engine = make_engine(settings)
    try:
        senders = [
            sender_for(engine, settings, smtp.url, clock)
            for engine in (store_engine, second_engine)
        ]

        async def drain(sender: MailSender) -> int:
            sent = 0
            while (done := await sender.deliver_due(limit=3)).claimed:
                sent += done.sent
            return sent

        per_sender = await asyncio.gather(*(drain(s) for s in senders))
    finally:
        await second_engine.dispose()

    assert sum(per_sender) == count
    received = smtp.wait_for(count)
    await asyncio.sleep(0.2)  # a duplicate would have arrived by now
    ids_received = [r.message["Message-ID"] for r in smtp.received]
    assert sorted(ids_received) == sorted(f"<{i}@example.test>" for i in ids)
    assert len(received) == count
    assert await outbox_rows(store_engine) == []


async def test_claims_made_at_the_same_moment_take_disjoint_mails(
    settings: Settings, store_engine: AsyncEngine, clock: Clock
) -> None:
    outbox = SqlOutbox(store_engine)
    for n in range(40):
        await outbox.enqueue(a_mail(settings, f"user{n}@example.test"), clock())
    # One engine per claimant, each connection opened beforehand, so the claims meet.
    engines = [make_engine(settings) for _ in range(8)]
    try:
        for engine in engines:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        claims = await asyncio.gather(
            *(SqlOutbox(e).claim(f"c{n}", clock(), LEASE, 5) for n, e in enumerate(engines))
        )
    finally:
        for engine in engines:
            await engine.dispose()

    taken = [queued.id for claim in claims for queued in claim]
    assert len(taken) == len(set(taken)) == 40


# TLS and login, as the URL's scheme and user information say

USER, PASSWORD = "relay-user", "p@ss:w/rd"


def tls_options(security: str, tls: Tls) -> dict[str, Any]:
    """aiosmtpd's options for a server that takes mail only over TLS and after a login."""
    options: dict[str, Any] = {
        "authenticator": password_check(USER, PASSWORD),
    }
    if security == "smtps":
        # aiosmtpd counts only its own STARTTLS as TLS: it offers AUTH over TLS from the first
        # byte only when told TLS is not required (and then it cannot require AUTH; the
        # wrong password's 535 below shows the login is checked all the same).
        return {**options, "ssl_context": tls.context, "auth_require_tls": False}
    return {**options, "tls_context": tls.context, "require_starttls": True, "auth_required": True}


@pytest.mark.parametrize("security", ["smtps", "smtp+starttls"])
async def test_mail_goes_over_tls_and_after_a_login_as_the_url_says(
    security: str,
    settings: Settings,
    store_engine: AsyncEngine,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tls = make_tls(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))  # the operator's private CA
    await SqlOutbox(store_engine).enqueue(a_mail(settings), clock())

    with smtp_server(**tls_options(security, tls)) as smtp:
        url = f"{security}://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{smtp.port}"
        done = await sender_for(store_engine, settings, url, clock).deliver_due()
        assert done == Round(sent=1)
        assert len(smtp.wait_for(1)) == 1


@pytest.mark.parametrize(
    ("security", "trusted", "password", "reason"),
    [
        ("smtps", False, PASSWORD, "SSLCertVerificationError"),
        ("smtp+starttls", False, PASSWORD, "SSLCertVerificationError"),
        ("smtps", True, "wrong", "SMTPAuthenticationError: 535"),
    ],
)
async def test_an_untrusted_certificate_or_a_wrong_password_sends_nothing_and_retries(
    security: str,
    trusted: bool,
    password: str,
    reason: str,
    settings: Settings,
    store_engine: AsyncEngine,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    tls = make_tls(tmp_path)
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_file))
    mail_id = await SqlOutbox(store_engine).enqueue(a_mail(settings), clock())

    with smtp_server(**tls_options(security, tls)) as smtp, caplog.at_level(logging.WARNING):
        url = f"{security}://{USER}:{quote(password, safe='')}@127.0.0.1:{smtp.port}"
        assert await sender_for(store_engine, settings, url, clock).deliver_due() == Round(
            retried=1
        )
        assert smtp.received == []

    assert [row[:2] for row in await outbox_rows(store_engine)] == [(mail_id, 1)]
    assert reason in caplog.text
    assert password not in caplog.text and quote(password, safe="") not in caplog.text


async def test_a_mail_the_server_cannot_take_waits_and_the_others_go(
    settings: Settings, store_engine: AsyncEngine, clock: Clock
) -> None:
    outbox = SqlOutbox(store_engine)
    # An address that needs SMTPUTF8 (RFC 6531), which this server does not offer.
    held = await outbox.enqueue(a_mail(settings, "jürgen@example.test"), clock())
    await outbox.enqueue(a_mail(settings, "bob@example.test"), clock() + 1)
    clock.advance(1)

    with smtp_server(enable_SMTPUTF8=False) as smtp:
        done = await sender_for(store_engine, settings, smtp.url, clock).deliver_due()
        assert [r.envelope_to for r in smtp.wait_for(1)] == [["bob@example.test"]]

    assert done == Round(sent=1, retried=1)
    assert [row[:2] for row in await outbox_rows(store_engine)] == [(held, 1)]


class _HeldAtSent:
    """The real outbox, with `sent` held until the test lets it go: where a stop can land."""

    def __init__(self, outbox: SqlOutbox) -> None:
        self._outbox = outbox
        self.entered, self.go_on = anyio.Event(), anyio.Event()

    async def claim(self, claim: str, now: int, lease: int, limit: int) -> list[Queued]:
        return await self._outbox.claim(claim, now, lease, limit)

    async def sent(self, mail_id: str) -> None:
        self.entered.set()
        await self.go_on.wait()
        await self._outbox.sent(mail_id)

    async def retry(self, claim: str, mail_id: str, at: int) -> None:
        await self._outbox.retry(claim, mail_id, at)

    async def drop(self, claim: str, mail_id: str) -> None:
        await self._outbox.drop(claim, mail_id)


async def test_a_stopping_server_lets_a_round_settle_what_it_sent(
    settings: Settings, store_engine: AsyncEngine, smtp: SmtpServer, clock: Clock
) -> None:
    """As the password reset's Resolver: the stop waits for the round's statements, so a mail
    sent is deleted, not sent again after its lease."""
    await SqlOutbox(store_engine).enqueue(a_mail(settings), clock())
    mail = smtp_settings(settings, smtp.url)
    assert mail.smtp_url is not None and mail.mail_from is not None
    queue = _HeldAtSent(SqlOutbox(store_engine))
    sender = MailSender(queue, mail.smtp_url, mail.mail_from, clock, timeout=5)
    stop = anyio.CancelScope()

    async def serve() -> None:
        with stop:
            await sender.run()

    async def stop_while_it_settles() -> None:
        await queue.entered.wait()
        stop.cancel()  # the server stops while the round settles
        await anyio.sleep(0.05)
        queue.go_on.set()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(serve)
            tasks.start_soon(stop_while_it_settles)

    assert len(smtp.wait_for(1)) == 1
    assert await outbox_rows(store_engine) == []  # settled: it will not go twice

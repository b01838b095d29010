"""Mail as the use cases make it (authserver/mail/compose.py): composed from the templates beside
the pages, HTML escaped, in the language asked for; and, with mail on, sent by the server itself
off the request path (app.py's lifespan runs the sender)."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.applications import Starlette

from authserver.app import create_app
from authserver.cli import main
from authserver.config import Settings, load_settings
from authserver.mail.compose import Mail, MailOff, NoOutbox, compose
from authserver.mail.sender import POLL
from authserver.services import Services
from tests._smtp import SmtpServer
from tests.conftest import ISSUER as TEST_ISSUER
from tests.conftest import KEK, Clock, make_settings

ISSUER = "https://auth.example.test"


def plain_settings(**extra: str) -> Settings:
    return load_settings({"AUTHSERVER_ISSUER": ISSUER, **extra})


def test_the_test_mail_has_a_subject_a_text_and_an_html_part() -> None:
    mail = compose(plain_settings(), "test", "alice@example.test", "en")

    assert mail.to == "alice@example.test"
    assert mail.subject == "Test mail from authserver"
    assert mail.template == "test"
    assert f"authorization server at {ISSUER}." in mail.text
    assert "{%" not in mail.text and "subject" not in mail.text
    assert mail.html.startswith("<!doctype html>")
    assert '<html lang="en">' in mail.html
    assert f"authorization server at {ISSUER}." in mail.html


def write_templates(folder: Path) -> None:
    (folder / "mail").mkdir()
    (folder / "mail" / "hello.txt").write_text(
        '{% set subject = "Hello " ~ name %}{{ locale }}: Hello {{ name }} & co\n'
    )
    (folder / "mail" / "hello.html").write_text(
        '{% extends "mail/base.html" %}{% block content %}<p>Hello {{ name }}</p>{% endblock %}'
    )


def test_templates_get_the_locale_and_html_escapes_what_the_caller_passes(
    tmp_path: Path,
) -> None:
    write_templates(tmp_path)
    settings = plain_settings(AUTHSERVER_TEMPLATES_DIR=str(tmp_path))
    name = '<script>alert("x")</script>'

    mail = compose(settings, "hello", "bob@example.test", "de", {"name": name})

    assert mail.subject == f"Hello {name}"  # a header, not HTML
    assert mail.text == f"de: Hello {name} & co\n"  # plain text is not escaped
    assert name not in mail.html
    assert "<p>Hello &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</p>" in mail.html
    assert '<html lang="de">' in mail.html  # the built-in base, under the operator's template


def test_the_templates_folder_replaces_a_built_in_mail_by_name(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "test.txt").write_text('{% set subject = "Ours" %}our words\n')
    settings = plain_settings(AUTHSERVER_TEMPLATES_DIR=str(tmp_path))

    mail = compose(settings, "test", "alice@example.test", None)

    assert (mail.subject, mail.text) == ("Ours", "our words\n")
    assert "This is a test mail" in mail.html  # the built-in HTML part is still found
    assert '<html lang="en">' in mail.html  # no locale: the default


def test_a_template_without_a_subject_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "test.txt").write_text("no subject\n")
    with pytest.raises(LookupError, match="sets no subject"):
        compose(plain_settings(AUTHSERVER_TEMPLATES_DIR=str(tmp_path)), "test", "a@b.test", "en")


@pytest.mark.parametrize(
    ("to", "subject"),
    [
        ("alice@example.test\r\nBcc: eve@example.test", "Hi"),
        ("alice@example.test", "Hi\nBcc: eve@example.test"),
        ("not an address", "Hi"),
    ],
)
def test_a_mail_refuses_headers_smuggled_in_and_a_recipient_that_is_no_address(
    to: str, subject: str
) -> None:
    with pytest.raises(ValueError, match="one line|an address"):
        Mail(to, subject, "text", "<p>html</p>")


async def test_with_mail_off_nothing_can_be_queued() -> None:
    mail = compose(plain_settings(), "test", "alice@example.test", "en")
    with pytest.raises(MailOff):
        await NoOutbox().enqueue(mail, 0)
    assert plain_settings().mail_enabled is False


async def test_the_server_sends_what_a_request_queues_without_waiting_for_a_poll(
    settings: Settings, smtp: SmtpServer, tmp_path: Path, clock: Clock, engine: object
) -> None:
    mail_on = make_settings(
        settings.database_url,
        tmp_path / "keys",
        smtp_url=smtp.url,
        mail_from="auth@example.test",
    )
    assert mail_on.mail_enabled
    app: Starlette = create_app(mail_on, clock=clock)
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        mail = compose(mail_on, "test", "alice@example.test", "en")
        await anyio.sleep(0.1)  # the sender's first look found nothing: it waits for POLL
        sent_before = REGISTRY.get_sample_value("authserver_mail_total", {"outcome": "sent"})
        started = time.monotonic()
        await services.outbox.enqueue(mail, clock())
        with anyio.fail_after(5):
            while not smtp.received:
                await anyio.sleep(0.01)
        # Woken by the enqueue, not found by the next look at the outbox a second later.
        assert time.monotonic() - started < POLL - 0.3
        with anyio.fail_after(5):  # counted once its row is deleted, just after
            while REGISTRY.get_sample_value("authserver_mail_total", {"outcome": "sent"}) == (
                sent_before
            ):
                await anyio.sleep(0.01)
        sent_after = REGISTRY.get_sample_value("authserver_mail_total", {"outcome": "sent"})
        assert sent_before is not None and sent_after == sent_before + 1
    [received] = smtp.received
    assert received.message["Subject"] == "Test mail from authserver"


async def test_with_mail_off_the_server_queues_nothing(services: Services) -> None:
    assert services.settings.mail_enabled is False
    assert isinstance(services.outbox, NoOutbox)


def test_the_start_up_line_says_whether_mail_is_on_and_never_the_password() -> None:
    from authserver.cli.server import mail_for_humans

    assert mail_for_humans(plain_settings()) == "off (AUTHSERVER_SMTP_URL unset)"
    mail_on = plain_settings(
        AUTHSERVER_SMTP_URL="smtps://auth%40example.com:hunter2@smtp.example.com",
        AUTHSERVER_MAIL_FROM="auth@example.com",
    )
    assert mail_for_humans(mail_on) == "on via smtps://auth@example.com:***@smtp.example.com:465"


def cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **settings: str) -> Path:
    """`authserver`'s environment for an in-process run on a SQLite file of its own."""
    database = tmp_path / "cli.db"
    environ = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "KEY_ENCRYPTION_KEY": KEK,
        "KEYS_DIR": str(tmp_path / "keys"),
        **settings,
    }
    for name, value in environ.items():
        monkeypatch.setenv(f"AUTHSERVER_{name}", value)
    return database


def test_mail_test_queues_the_test_mail_for_the_running_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = cli_environment(
        monkeypatch, tmp_path, SMTP_URL="smtp://127.0.0.1:2525", MAIL_FROM="auth@example.test"
    )

    assert main(["mail", "test", "ops@example.test", "--locale", "de"]) == 0

    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT id, recipient, subject, html_body FROM mail_outbox").fetchall()
    [(mail_id, recipient, subject, html)] = rows
    assert (recipient, subject) == ("ops@example.test", "Test mail from authserver")
    assert '<html lang="de">' in html
    assert f"queued test mail {mail_id} to ops@example.test" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("environ", "address", "problem"),
    [
        ({}, "ops@example.test", "mail is off: set AUTHSERVER_SMTP_URL and AUTHSERVER_MAIL_FROM"),
        (
            {"SMTP_URL": "smtp://127.0.0.1:2525", "MAIL_FROM": "auth@example.test"},
            "not an address",
            "a mail's recipient must be an address",
        ),
    ],
)
def test_mail_test_says_in_one_line_why_it_queued_nothing(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    environ: dict[str, str],
    address: str,
    problem: str,
) -> None:
    cli_environment(monkeypatch, tmp_path, **environ)

    assert main(["mail", "test", address]) == 1

    assert capsys.readouterr().err == f"authserver: {problem}\n"


@contextmanager
def black_hole() -> Iterator[int]:
    """A port that takes connections and never says a word: a mail server that hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes; nothing ever answers
        yield listener.getsockname()[1]


async def test_a_hanging_mail_server_slows_no_page_nor_the_shutdown(
    settings: Settings, tmp_path: Path, clock: Clock, engine: object
) -> None:
    with black_hole() as port:
        mail_on = make_settings(
            settings.database_url,
            tmp_path / "keys",
            smtp_url=f"smtp://127.0.0.1:{port}",
            mail_from="auth@example.test",
        )
        app: Starlette = create_app(mail_on, clock=clock)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        try:
            services: Services = app.state.services
            mail = compose(mail_on, "test", "alice@example.test", "en")
            await services.outbox.enqueue(mail, clock())
            await anyio.sleep(0.3)  # the sender now waits on the server's greeting
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
                started = time.monotonic()
                jwks = await http.get("/.well-known/jwks.json")
                await services.outbox.enqueue(mail, clock())
                assert time.monotonic() - started < 0.5
            assert jwks.status_code == 200
        finally:
            started = time.monotonic()
            await lifespan.__aexit__(None, None, None)
            # The SMTP conversation is left to its thread; its lease keeps the mail queued.
            assert time.monotonic() - started < 3

"""Mail as the use cases see it: a `Mail` composed from templates, handed to the `Outbox`.

A use case never talks SMTP. It composes the mail (plain text and HTML, from the templates
beside the hosted pages, in the user's language) and enqueues it: one row in the database,
written in the request's time. `mail/sender.py` delivers it later, off the request path, so a
slow or dead mail server never slows a page nor changes what it answers.

Templates live in `authserver/http/templates/mail/` (AUTHSERVER_TEMPLATES_DIR overrides them
by name, as it does the pages): `NAME.txt` (plain text, which also sets the subject with
`{% set subject = "…" %}`) and `NAME.html` (autoescaped). Both get the caller's context plus
`locale` (the language to write in) and `issuer`. `mail/test.txt` and `mail/test.html` are the
example the others follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, Protocol

from authserver.config import Settings
from authserver.i18n import languages, translations

FOLDER = "mail"


class MailOff(RuntimeError):
    """Mail was asked for while AUTHSERVER_SMTP_URL is unset: the caller should have asked
    `settings.mail_enabled` first (pages that need mail answer 404 then)."""


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    text: str
    html: str
    template: str = ""  # its name, for the logs: they never show a body (it may hold a link)

    def __post_init__(self) -> None:
        # Header values: a line break would let a value write headers of its own.
        for name, value in (("to", self.to), ("subject", self.subject)):
            if "\r" in value or "\n" in value:
                raise ValueError(f"a mail's {name} must be one line")
        if "@" not in parseaddr(self.to)[1]:
            raise ValueError("a mail's recipient must be an address")


class Outbox(Protocol):
    """Where use cases put mail. `enqueue` is one short transaction of its own; the mail is
    sent later, and retried, by the server (mail/sender.py)."""

    async def enqueue(self, mail: Mail, now: int) -> str:
        """Stores the mail, due at once; returns its id."""
        ...


class NoOutbox:
    """The outbox while mail is off: nothing may be queued that nothing would send."""

    async def enqueue(self, mail: Mail, now: int) -> str:
        raise MailOff("mail is off: AUTHSERVER_SMTP_URL is not set")


def compose(
    settings: Settings,
    template: str,
    to: str,
    locale: str | None,
    context: dict[str, Any] | None = None,
) -> Mail:
    """Renders `mail/TEMPLATE.txt` and `mail/TEMPLATE.html` into a `Mail` to `to`.
    `locale` (a language tag, or None for the default) is handed to the templates, and picks
    the catalog their sentences are translated with (translations.py)."""
    folder = settings.templates_dir
    language = languages.choose(locale, None, translations.languages(folder))
    environment = translations.mail_environment(folder, language)
    values = {"issuer": settings.issuer, "locale": locale or "en", **(context or {})}
    text = environment.get_template(f"{FOLDER}/{template}.txt")
    html = environment.get_template(f"{FOLDER}/{template}.html")
    # The subject is the text template's own `{% set subject %}`: one file holds the words.
    module = text.make_module(values)
    subject = " ".join(str(getattr(module, "subject", "")).split())
    if not subject:
        raise LookupError(f"{FOLDER}/{template}.txt sets no subject")
    return Mail(to, subject, str(module), html.render(values), template)

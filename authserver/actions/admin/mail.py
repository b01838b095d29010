"""An operator's test mail (`authserver mail test ADDRESS`): queued like every other mail, so
it proves the whole way: the outbox, a running server's sender, the SMTP server, the inbox."""

from __future__ import annotations

from authserver.errors import InvalidRequest
from authserver.mail.compose import MailOff, compose
from authserver.services import Services


async def queue_test_mail(services: Services, to: str, locale: str | None = None) -> str:
    """Queues the `test` mail to `to`; returns its id. Raises MailOff with mail off."""
    settings = services.settings
    if not settings.mail_enabled:
        raise MailOff("mail is off: set AUTHSERVER_SMTP_URL and AUTHSERVER_MAIL_FROM")
    try:
        mail = compose(settings, "test", to, locale)
    except ValueError as exc:  # not an address, or a line break in it
        raise InvalidRequest(str(exc)) from None
    return await services.outbox.enqueue(mail, services.clock())

"""The mail sender: a background task of the server that drains the outbox over SMTP.

Each round claims the due mails in one statement (`MailQueue.claim`: the rows are leased to
this sender for `LEASE` seconds, so any number of instances and workers drain one outbox and
no mail is taken by two), sends them over one SMTP connection, deletes the sent ones and puts
the others back with exponential backoff (`backoff`). A mail the server refuses for good (a
5xx answer to its recipient or content) is dropped at once, and any mail after `MAX_ATTEMPTS`
attempts: each with a warning that names its id, template and the recipient's domain, never
its body (it may carry a link that signs someone in).

A sender that dies between claim and send loses nothing: its lease ends and the mail is due
again. The price is at-least-once: a sender that sent a mail and died before deleting it
sends it again after the lease (one Message-ID, so mail clients can tell).

SMTP is the standard library's `smtplib`, run in a worker thread: it is one blocking
conversation per round, off the event loop, with a timeout on every socket operation; no
runtime dependency is added for it, and its TLS is the `ssl` module's default context
(certificates and host names checked).
"""

from __future__ import annotations

import logging
import secrets
import smtplib
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Literal, Protocol

import anyio

from authserver.config import SmtpServer
from authserver.errors import TemporarilyUnavailable
from authserver.mail.compose import Mail, Outbox

log = logging.getLogger("authserver.mail.compose")

BATCH = 10  # mails claimed, and sent over one connection, per round
TIMEOUT = 20.0  # seconds for each SMTP socket operation (connect, every command)
# Seconds a claim holds its mails: past the longest round (BATCH mails, each a few commands).
LEASE = 600
POLL = 1.0  # seconds between looks at the outbox when nothing wakes the sender sooner
FIRST_RETRY, LONGEST_RETRY = 30, 3600  # seconds: 30 s, 1 min, 2 min, … up to an hour
MAX_ATTEMPTS = 12  # about eight hours of trying, then the mail is dropped with a warning


def backoff(attempts: int) -> int:
    """Seconds until the next attempt after `attempts` failed ones."""
    return int(min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_RETRY))


@dataclass(frozen=True)
class Queued:
    """A claimed mail: its row id and the attempts made, this one included."""

    id: str
    mail: Mail
    attempts: int


class MailQueue(Protocol):
    """The outbox as the sender sees it (db/outbox.py). Each method is one statement."""

    async def claim(self, claim: str, now: int, lease: int, limit: int) -> list[Queued]:
        """Takes up to `limit` mails due at `now` (never sent, or retried, or whose previous
        holder's lease ended) for `lease` seconds under the token `claim`, counting an attempt
        on each, in one statement: two senders never take one mail."""
        ...

    async def sent(self, mail_id: str) -> None:
        """Deletes a sent mail."""
        ...

    async def retry(self, claim: str, mail_id: str, at: int) -> None:
        """Makes a mail due again at `at`, if `claim` still holds it."""
        ...

    async def drop(self, claim: str, mail_id: str) -> None:
        """Deletes a mail given up on, if `claim` still holds it."""
        ...


@dataclass(frozen=True)
class Outcome:
    status: Literal["sent", "retry", "refused"]
    reason: str = ""


@dataclass(frozen=True)
class Round:
    """What one round did."""

    sent: int = 0
    retried: int = 0
    dropped: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.retried + self.dropped


class MailSender:
    def __init__(
        self,
        queue: MailQueue,
        server: SmtpServer,
        sender: str,
        clock: Callable[[], int],
        *,
        timeout: float = TIMEOUT,
        lease: int = LEASE,
    ) -> None:
        self._queue, self._server, self._from = queue, server, sender
        self._clock, self._timeout, self._lease = clock, timeout, lease
        self._wake = anyio.Event()

    def nudge(self) -> None:
        """A mail was queued in this process: look now, not at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """The server's background task: rounds until cancelled. A database outage skips a
        round with a warning; the next one tries again."""
        while True:
            try:
                done = await self.deliver_due()
            except TemporarilyUnavailable as exc:
                log.warning("mail round skipped: %s", exc.detail)
                done = Round()
            except Exception:
                log.exception("mail round failed")
                done = Round()
            if done.claimed >= BATCH:
                continue  # more may be due
            with anyio.move_on_after(POLL):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def deliver_due(self, limit: int = BATCH) -> Round:
        """One round: claim what is due, send it, settle each row."""
        claim = secrets.token_hex(16)
        # The database statements are shielded, as the password reset's Resolver's rounds are:
        # a server stopping waits for them (the database bounds them) instead of cutting a
        # transaction short, which can leave an SQLite connection closing forever behind it.
        # The stop is taken at the SMTP conversation, or at the wait between rounds.
        with anyio.CancelScope(shield=True):
            claimed = await self._queue.claim(claim, self._clock(), self._lease, limit)
        if not claimed:
            return Round()
        # A mail claimed this often kept its senders from finishing (a crash each time?):
        # sending it again is what failed, so it goes without another try.
        spent = [q for q in claimed if q.attempts > MAX_ATTEMPTS]
        to_send = [q for q in claimed if q.attempts <= MAX_ATTEMPTS]
        with anyio.CancelScope(shield=True):
            for queued in spent:
                await self._give_up(claim, queued, "claimed too often without being settled")
        # Abandoned on cancel (shutdown): the thread finishes or times out on its own, and
        # whatever it did not settle is due again when the lease ends.
        outcomes = await anyio.to_thread.run_sync(
            self._send_all,
            [q.mail for q in to_send],
            [q.id for q in to_send],
            abandon_on_cancel=True,
        )
        # Settled whole once sent: a mail sent but left unsettled would go again after its lease.
        with anyio.CancelScope(shield=True):
            sent, retried = await self._settle(claim, to_send, outcomes)
        return Round(sent=sent, retried=retried, dropped=len(claimed) - sent - retried)

    async def _settle(
        self, claim: str, to_send: Sequence[Queued], outcomes: Sequence[Outcome]
    ) -> tuple[int, int]:
        """Each sent mail deleted, each other one retried later or given up on: (sent, retried)."""
        sent = retried = 0
        for queued, outcome in zip(to_send, outcomes, strict=True):
            if outcome.status == "sent":
                await self._queue.sent(queued.id)
                sent += 1
            elif outcome.status == "refused" or queued.attempts >= MAX_ATTEMPTS:
                await self._give_up(claim, queued, outcome.reason)
            else:
                delay = backoff(queued.attempts)
                await self._queue.retry(claim, queued.id, self._clock() + delay)
                log.warning(
                    "mail %s not sent (attempt %d of %d), next try in %d s: %s",
                    queued.id,
                    queued.attempts,
                    MAX_ATTEMPTS,
                    delay,
                    outcome.reason,
                    extra=_about(queued),
                )
                retried += 1
        return sent, retried

    async def _give_up(self, claim: str, queued: Queued, reason: str) -> None:
        await self._queue.drop(claim, queued.id)
        log.warning(
            "mail %s given up after %d attempt(s): %s",
            queued.id,
            queued.attempts,
            reason,
            extra=_about(queued),
        )

    def _send_all(self, mails: Sequence[Mail], ids: Sequence[str]) -> list[Outcome]:
        """In a worker thread: one SMTP session for the round's mails."""
        outcomes: list[Outcome] = []
        if not mails:
            return outcomes
        try:
            with self._connect() as smtp:
                for mail, mail_id in zip(mails, ids, strict=True):
                    outcomes.append(self._send_one(smtp, mail, mail_id))
        except (OSError, smtplib.SMTPException) as exc:
            # No session (refused, timed out, TLS or login failed) or it broke: the mails not
            # yet sent are retried, as the server may be back at the next attempt; those sent
            # keep their outcome (a QUIT that fails after them changes nothing).
            failed = Outcome("retry", _reason(exc))
            outcomes += [failed] * (len(mails) - len(outcomes))
        return outcomes

    def _connect(self) -> smtplib.SMTP:
        server, context = self._server, ssl.create_default_context()
        smtp: smtplib.SMTP
        if server.security == "tls":
            smtp = smtplib.SMTP_SSL(
                server.host, server.port, timeout=self._timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(server.host, server.port, timeout=self._timeout)
        try:
            if server.security == "starttls":
                smtp.starttls(context=context)  # raises when the server does not offer it
            if server.username is not None:
                smtp.login(server.username, server.password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _send_one(self, smtp: smtplib.SMTP, mail: Mail, mail_id: str) -> Outcome:
        """One mail over the open session. A refusal of this mail leaves the session usable
        for the next (smtplib sends RSET after each); a lost session raises."""
        try:
            smtp.send_message(message(mail, self._from, mail_id))
        except smtplib.SMTPServerDisconnected:
            raise
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError) as exc:
            # RFC 5321 §4.2.1: "5yz Permanent Negative Completion reply ... The SMTP client
            # SHOULD NOT repeat the exact request (in the same sequence)."
            status: Literal["refused", "retry"] = "refused" if _code(exc) >= 500 else "retry"
            return Outcome(status, _reason(exc))
        except (smtplib.SMTPException, ValueError) as exc:
            # Our From refused (a setting to fix), an address the server cannot take (no
            # SMTPUTF8), a header that cannot be encoded: this mail waits, the others go.
            return Outcome("retry", _reason(exc))
        return Outcome("sent")


class NudgingOutbox:
    """An outbox that wakes this process's sender when a mail is queued, so it leaves within
    a round trip rather than at the next poll."""

    def __init__(self, outbox: Outbox, sender: MailSender) -> None:
        self._outbox, self._sender = outbox, sender

    async def enqueue(self, mail: Mail, now: int) -> str:
        mail_id = await self._outbox.enqueue(mail, now)
        self._sender.nudge()
        return mail_id


def message(mail: Mail, sender: str, mail_id: str) -> EmailMessage:
    """The MIME message: text first, HTML as its alternative (RFC 2046 §5.1.4: the last part
    is the richest, and a reader shows the last it can)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    # One id for every attempt: a mail sent twice (a sender died after sending) is one mail.
    domain = parseaddr(sender)[1].rpartition("@")[2] or "authserver"
    msg["Message-ID"] = f"<{mail_id}@{domain}>"
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


def _code(exc: smtplib.SMTPException) -> int:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return min((code for code, _ in exc.recipients.values()), default=0)
    return int(getattr(exc, "smtp_code", 0))


def _reason(exc: BaseException) -> str:
    """The server's or the socket's words, one line: never the mail's content."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, words = next(iter(exc.recipients.values()), (0, b""))
        return f"recipient refused: {code} {_decode(words)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{type(exc).__name__}: {exc.smtp_code} {_decode(exc.smtp_error)}"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def _decode(words: bytes | str) -> str:
    text = words.decode("utf-8", "replace") if isinstance(words, bytes) else words
    return " ".join(text.split())[:200]


def _about(queued: Queued) -> dict[str, object]:
    """The log's fields of a mail: the recipient's domain only (an address is personal data)."""
    domain = parseaddr(queued.mail.to)[1].rpartition("@")[2]
    return {
        "mail_id": queued.id,
        "template": queued.mail.template,
        "recipient_domain": domain,
        "attempts": queued.attempts,
    }

"""Password reset (API.md "Accounts: Password reset"): asking for a link, and setting a new
password with it.

Asking never tells whether an address has an account: `ask` stores the request as it is (one
INSERT, whatever the address) and the page always says the same. `Resolver` takes the requests
off the request path, looks the address up, and for an account stores a link (links.py) and
its mail in one transaction; the outbox sends it later. So the page's words, its bytes and its
time are the same for a known and an unknown address, and a mail server that fails changes
nothing the asker sees.

`confirm` is the POST of the link's page: the password policy, then the link spent and the
password set in one transaction (LinkStore.spend_reset), then every session of the user ended.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlencode

import anyio

from authserver import page_limits
from authserver.accounts import links
from authserver.accounts.links import RESET, Link, ResetRequest
from authserver.accounts.password_policy import check_password
from authserver.accounts.profiles import email_problem
from authserver.accounts.users import MAX_PASSWORD
from authserver.actions.end_sessions import end_sessions
from authserver.audit import AuditEvent
from authserver.errors import InvalidRequest
from authserver.i18n.translations import N_
from authserver.inputs import storable
from authserver.mail.compose import compose
from authserver.services import Services

log = logging.getLogger("authserver.password_reset")

PATH = "/password-reset/confirm"
POLL = 1.0  # seconds between looks at the requests when nothing wakes the resolver sooner
BATCH = 20


@dataclass(frozen=True)
class SlowDown:
    """Too many requests from this address group, or for this email address."""

    retry_after: int


@dataclass(frozen=True)
class BadInput:
    """The form again, with a sentence saying what to fix (the catalogs' id)."""

    message: str


def plausible_email(email: str) -> bool:
    """An address as a profile may hold it (profiles.email_problem). Whether it has an
    account is for the resolver to find out, not the page."""
    return storable(email) and email_problem(email) is None


async def ask(
    services: Services, *, email: str, locale: str | None, address: str | None
) -> SlowDown | BadInput | None:
    """POST /password-reset: None when the request is queued (the page says a link is on its
    way, if an account uses the address)."""
    email = email.strip()
    if not plausible_email(email):
        return BadInput(N_("Enter your email address."))
    now = services.clock()
    wait = await page_limits.retry_after(services.page_limits, now, address, email)
    if wait is not None:
        return SlowDown(wait)
    await services.links.ask_reset(ResetRequest(email, locale), now)
    services.wake_resolver()
    return None


async def resolve(services: Services) -> int:
    """Turns queued requests into links and mail; returns how many requests it took."""
    requests = await services.links.take_reset_requests(BATCH)
    for request in requests:
        target = await services.links.reset_target(request.email)
        if target is None:
            continue  # no account uses it: nothing is sent, and the asker was told the same
        settings, now = services.settings, services.clock()
        token = links.new_token()
        link = Link(
            links.token_hash(token), RESET, target.user_id, now,
            now + settings.password_reset_ttl, links.password_fingerprint(target.password_hash),
        )  # fmt: skip
        context = {
            "link": f"{settings.issuer}{PATH}?{urlencode({'token': token})}",
            "minutes": settings.password_reset_ttl // 60,
        }
        # The user's own language, else the one of the page they asked on.
        locale = target.locale or request.locale
        mail = compose(settings, "password_reset", target.email, locale, context)
        await services.links.issue(link, mail)
    return len(requests)


class Resolver:
    """Runs `resolve` in the server's background: woken by a request of this process, else
    every POLL seconds (a request another instance took in is resolved by any instance)."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._wake = anyio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                while await self._resolve_whole():
                    pass
            except Exception:
                # The requests taken are lost; their askers ask again. The server goes on.
                log.exception("resolving password reset requests failed")
            with anyio.move_on_after(POLL):
                await self._wake.wait()
            self._wake = anyio.Event()

    async def _resolve_whole(self) -> int:
        # Shielded: the server stopping waits for a round's statements to end (the database
        # bounds them) instead of cutting a transaction short, which left an SQLite
        # connection closing forever behind it; the stop is taken at the wait below.
        with anyio.CancelScope(shield=True):
            taken = await resolve(self._services)
        return taken


@dataclass(frozen=True)
class Done:
    user_id: str


@dataclass(frozen=True)
class Dead:
    """The link is unknown, used, expired, or the password changed since it was mailed."""


async def confirm(
    services: Services, *, token: str, password: str, address: str | None
) -> Done | Dead | BadInput | SlowDown:
    """POST /password-reset/confirm."""
    now = services.clock()
    wait = await page_limits.retry_after(services.page_limits, now, address)
    if wait is not None:
        return SlowDown(wait)
    if not token or len(token) > links.MAX_TOKEN:
        return Dead()
    hashed = links.token_hash(token)
    user_id = await services.links.user_of(hashed, RESET, now)
    user = await services.users.by_id(user_id) if user_id else None
    if user is None or user.disabled:
        return Dead()
    if not password or (len(password) <= MAX_PASSWORD and not storable(password)):
        return BadInput(N_("Enter a new password."))
    try:
        normalised = check_password(password, user.username, services.settings.password_min_length)
    except InvalidRequest as exc:
        return BadInput(exc.description)
    new_hash = await services.passwords.hash(normalised)
    now = services.clock()

    def audit(spent_by: str) -> AuditEvent:
        return AuditEvent(now, spent_by, "user.password_reset", spent_by, {}, user=spent_by)

    if await services.links.spend_reset(hashed, new_hash, now, audit) is None:
        return Dead()
    # Whoever had the old password (or a session from it) is out: a reset is often the answer
    # to a stolen one.
    await end_sessions(services, user.id, reason="password_reset", actor=user.id, now=now)
    return Done(user.id)

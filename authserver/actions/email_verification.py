"""Email verification (API.md "Accounts: Email verification"): a signed-in user asks for a new
address (POST /account/email, the current password typed again), and the link mailed to it
makes it the user's `email`, verified (GET shows a button, POST /verify-email spends it).

Until the link is spent the verified address stays the user's `email` (a hijacked session
cannot redirect reset mail); the pending address lives only in the link's row. The old address
is told of the request. An address another account uses gets no mail at all, and the page says
the same as for any other: the requester learns nothing of who uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from authserver import page_limits
from authserver.accounts import links
from authserver.accounts.links import SIGNUP, VERIFY, Link, Spent
from authserver.accounts.profiles import Profile, email_key
from authserver.accounts.users import User
from authserver.actions.authorize import live_session
from authserver.actions.password_reset import Dead, SlowDown, plausible_email
from authserver.actions.sign_in import Credentials, check_password
from authserver.audit import AuditEvent
from authserver.errors import InvalidGrant
from authserver.errors import SlowDown as TooManyTries
from authserver.i18n.translations import N_
from authserver.mail.compose import Mail, compose
from authserver.services import Services

PATH = "/verify-email"


@dataclass(frozen=True)
class Asked:
    """The page says a link is on its way to the new address."""

    email: str


@dataclass(frozen=True)
class Verified:
    email: str


@dataclass(frozen=True)
class Activated:
    """A sign-up's link (AUTHSERVER_SIGNUP=verified): the account may sign in from now on."""

    email: str


@dataclass(frozen=True)
class SignInFirst:
    """No live login session: the page sends the browser to sign in."""


@dataclass(frozen=True)
class Form:
    """The form again (or the first time), with the user's address as it stands."""

    current: Profile
    error: str | None = None


async def form(services: Services, *, cookie: str | None) -> Form | SignInFirst:
    """GET /account/email."""
    session = await live_session(services, cookie)
    user = await services.users.by_id(session.user_id) if session else None
    return SignInFirst() if user is None else Form(user.profile)


@dataclass(frozen=True)
class Taken:
    """The address became another account's since the link was mailed."""


async def ask_change(
    services: Services,
    *,
    cookie: str | None,
    password: str,
    email: str,
    locale: str | None,
    address: str | None,
) -> Asked | Form | SlowDown | SignInFirst:
    """POST /account/email by the user of the login session `cookie` names."""
    session = await live_session(services, cookie)
    user = await services.users.by_id(session.user_id) if session else None
    if user is None:
        return SignInFirst()
    email = email.strip()
    if not plausible_email(email):
        return Form(user.profile, N_("Enter your email address."))
    now = services.clock()
    wait = await page_limits.retry_after(services.page_limits, now, address, email)
    if wait is not None:
        return SlowDown(wait)

    async def prepare() -> Credentials[None]:
        audit: dict[str, str | None] = {"via": "account_email"}
        return Credentials(user.username, password, audit, None)

    async def then(_: None, checked: User) -> User:
        return checked

    try:
        # The sign-in's check, throttled as it is (a stolen session cannot guess the password).
        checked = await check_password(
            services, username=user.username, address=address, prepare=prepare, then=then
        )
    except InvalidGrant:
        return Form(user.profile, N_("The password is wrong."))
    except TooManyTries as exc:
        return SlowDown(exc.retry_after or 1)
    if checked.id != user.id:
        return Form(user.profile, N_("The password is wrong."))
    await _send(services, checked, email, locale, now)
    return Asked(email)


async def send_first_link(
    services: Services, user: User, locale: str | None, *, activates: bool = False
) -> None:
    """A sign-up's: its address is already the user's `email`, unverified; the link verifies
    it, and with `activates` (AUTHSERVER_SIGNUP=verified) also lets the account sign in."""
    assert user.profile.email is not None
    await _send(
        services, user, user.profile.email, locale, services.clock(), tell_old=False,
        kind=SIGNUP if activates else VERIFY,
    )  # fmt: skip


async def _send(
    services: Services,
    user: User,
    email: str,
    locale: str | None,
    now: int,
    *,
    tell_old: bool = True,
    kind: str = VERIFY,
) -> None:
    settings = services.settings
    language = user.profile.locale or locale
    current = user.profile.email
    told: list[Mail] = []
    if tell_old and current and email_key(current) != email_key(email):
        told.append(
            compose(settings, "email_change_requested", current, language, {"email": email})
        )
    if await services.links.email_in_use(email, user.id):
        # Nothing to the address: a mail there would tell its owner, who may be the requester,
        # that it has an account here. The old address hears of the request all the same.
        for mail in told:
            await services.outbox.enqueue(mail, now)
        return
    token = links.new_token()
    expires_at = now + settings.email_verify_ttl
    link = Link(links.token_hash(token), kind, user.id, now, expires_at, email=email)
    context = {
        "link": f"{settings.issuer}{PATH}?{urlencode({'token': token})}",
        "hours": settings.email_verify_ttl // 3600,
    }
    verify = compose(settings, "verify_email", email, language, context)
    await services.links.issue(link, verify, *told)


async def verify(
    services: Services, *, token: str, address: str | None
) -> Verified | Activated | Dead | Taken | SlowDown:
    """POST /verify-email."""
    now = services.clock()
    wait = await page_limits.retry_after(services.page_limits, now, address)
    if wait is not None:
        return SlowDown(wait)
    if not token or len(token) > links.MAX_TOKEN:
        return Dead()
    found: list[str] = []

    def audit(user_id: str, email: str) -> AuditEvent:
        found.append(email)
        return AuditEvent(now, user_id, "user.email_verified", user_id, {}, user=user_id)

    spent = await services.links.spend_verification(links.token_hash(token), now, audit)
    if spent is Spent.EMAIL_TAKEN:
        return Taken()
    if spent is Spent.DEAD:
        return Dead()
    return Activated(found[0]) if spent is Spent.ACTIVATED else Verified(found[0])

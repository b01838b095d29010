"""Sign-up (API.md "Accounts: Sign-up"): GET|POST /signup, with AUTHSERVER_SIGNUP `open` or
`verified` (`off`: the page is not there).

`sign_up` is all of POST /signup in one call: the authorization request the page carries checked
again (as the sign-in page does), the request budget (page_limits: per client address group and
per email address), the username, address and password policy, the account stored, audited
(`user.signed_up`), its first link mailed, and then:

- `open`: the new user is signed in (a login session) and the authorization request goes on,
  or the browser goes to /account when there is none;
- `verified`: the account is stored disabled, and the page says "check your mail"; the link
  (links.SIGNUP) verifies the address and enables the account in one statement.

A username that is taken is said plainly: usernames are public to whoever signs in. An address
that is taken is not (no enumeration of addresses): the account is made all the same, without
the address, the page answers as it would for a new one, and the address's owner gets a mail
saying someone tried to use it. So the username is held in both cases, and trying the same
username again tells nothing either. Both are settled by the database's unique keys
(`username_key`, `email_key`): two sign-ups racing for one name make one account and one
"taken", never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from authserver import page_limits
from authserver.accounts.login_sessions import start_login_session
from authserver.accounts.password_policy import WeakPassword, check_password
from authserver.accounts.profiles import Profile
from authserver.accounts.users import (
    MAX_PASSWORD,
    EmailTaken,
    User,
    new_user,
    username_problem,
)
from authserver.actions.authorize import (
    AuthorizationRequest,
    Params,
    Redirect,
    complete,
    resume,
)
from authserver.actions.email_verification import send_first_link
from authserver.actions.password_reset import SlowDown, plausible_email
from authserver.actions.sign_in_steps import SignedIn
from authserver.audit import AuditEvent
from authserver.errors import InvalidGrant
from authserver.i18n.translations import N_
from authserver.inputs import storable
from authserver.mail.compose import compose
from authserver.services import Services

OPEN, VERIFIED = "open", "verified"
ACCOUNT_PAGE = "/account"  # where an `open` sign-up with no authorization request goes


@dataclass(frozen=True)
class Form:
    """The form again, with what was typed (never the password) and why: a sentence of the
    catalogs, filled with `values`."""

    request: AuthorizationRequest | None
    username: str
    email: str
    problem: str
    values: dict[str, int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckMail:
    """`verified`: the account waits for its link, mailed to `email`."""

    email: str


async def sign_up(
    services: Services,
    params: Params,
    *,
    username: str,
    email: str,
    password: str,
    locale: str | None,
    address: str | None,
    replaces: str | None = None,
    user_agent: str | None = None,
) -> Redirect | Form | SlowDown | CheckMail | SignedIn:
    """POST /signup (see the module's docstring)."""
    target = await resume(services, params, address=address)
    if isinstance(target, Redirect):
        return target
    username, email = username.strip(), email.strip()

    def again(problem: str, **values: int | str) -> Form:
        return Form(target, username, email, problem, values)

    wait = await page_limits.retry_after(
        services.page_limits, services.clock(), address, email if plausible_email(email) else None
    )
    if wait is not None:
        return SlowDown(wait)
    if not username:
        return again(N_("Choose a username."))
    if username_problem(username) is not None:
        return again(N_("This username cannot be used: choose another."))
    if not plausible_email(email):
        return again(N_("Enter your email address."))
    if not password or (len(password) <= MAX_PASSWORD and not storable(password)):
        return again(N_("Choose a password."))
    try:
        normalised = check_password(password, username, services.settings.password_min_length)
    except WeakPassword as exc:
        return again(exc.sentence, **exc.values)
    verified = services.settings.signup == VERIFIED
    profile = Profile(email=email)
    user = new_user(username, await services.passwords.hash(normalised), [], False, profile)
    # `verified`: disabled until the link is opened; every statement that starts a session
    # refuses a disabled user (db/predicates.user_enabled), so nothing needs a new rule.
    user = replace(user, disabled=verified)
    # Abandoned (the link never opened), the account goes with the link's lifetime, and its
    # username is free again (db/purge.py).
    expires = services.clock() + services.settings.email_verify_ttl if verified else None
    stored, address_taken = await _store(services, user, expires)
    if not stored:
        # Taken in any case or Unicode form (users.username_key).
        return again(N_("This username is taken: choose another."))
    if address_taken:
        user = replace(user, profile=Profile())
    now = services.clock()
    # A new account: failures against the name before (a deleted account's, guesses at a name
    # not yet taken) are not its own.
    await services.throttle.forget(username)
    detail: dict[str, str | None] = {"username": username, "mode": services.settings.signup}
    await services.audit.record(
        [AuditEvent(now, user.id, "user.signed_up", user.id, detail, user=user.id)]
    )
    await _mail(services, user, email, locale, address_taken=address_taken, activates=verified)
    if verified:
        return CheckMail(email)
    return await _signed_in(services, user, target, replaces, user_agent)


async def _store(services: Services, user: User, expires: int | None) -> tuple[bool, bool]:
    """(stored, whether the address was another's): an address taken, the account is stored
    without it, as the module's docstring says."""
    now, users = services.clock(), services.users
    try:
        return await users.create(user, now, expires), False
    except EmailTaken:
        return await users.create(replace(user, profile=Profile()), now, expires), True


async def _mail(
    services: Services,
    user: User,
    email: str,
    locale: str | None,
    *,
    address_taken: bool,
    activates: bool,
) -> None:
    if not services.settings.mail_enabled:
        return  # `open` without mail: the address stays unverified (an operator may verify it)
    if address_taken:
        # Its owner hears of it (they may have forgotten they have an account); the person
        # signing up learns nothing from the page.
        context = {"reset": f"{services.settings.issuer}/password-reset"}
        notice = compose(services.settings, "signup_address_taken", email, locale, context)
        await services.outbox.enqueue(notice, services.clock())
        return
    await send_first_link(services, user, locale, activates=activates)


async def _signed_in(
    services: Services,
    user: User,
    target: AuthorizationRequest | None,
    replaces: str | None,
    user_agent: str | None,
) -> SignedIn | Form:
    now, client_id = services.clock(), target.client.client_id if target else None
    try:
        session, cookie = await start_login_session(
            services.login_sessions, user.id, now, services.settings.login_session_ttl,
            client_id, replaces, user_agent,
        )  # fmt: skip
    except InvalidGrant:  # an operator disabled or deleted it a moment ago
        return Form(target, user.username, "", N_("This username cannot be used: choose another."))
    then = Redirect(ACCOUNT_PAGE) if target is None else await complete(services, target, session)
    # `open`: signed in at once, and on to the client with a code, or to the account page.
    return SignedIn(session, cookie, then)

"""The account page (API.md, "The account page"): what a signed-in user sees of their own
account, and what they change there. The browser is signed in by its login-session cookie,
alive as /authorize's single sign-on decides (not ended, not idle, not over, its user enabled),
and every use case here acts on that user only: an id of another user's session is answered
as an unknown one (NotFound), so the page enumerates nothing.

A password change asks for the current password through the sign-in's own check
(sign_in.check_password: the same throttle, argon2 and `login.failed` audit), applies the
password policy, and ends every other session of the user (end_sessions): this browser's
login session and the apps it signed in stay, every other browser and app signs in again.

Two-step verification (second_factors.py): an authenticator app is enrolled in two posts
(enrolment.py), the secret sealed for this login session's id. Removing every factor asks for
the current password, as a password change does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authserver.accounts.consents import consent_event
from authserver.accounts.login_sessions import (
    MAX_COOKIE,
    Browser,
    LoginSession,
    hash_session_token,
)
from authserver.accounts.passkeys import PASSKEY, StoredPasskey
from authserver.accounts.password_policy import WeakPassword
from authserver.accounts.password_policy import check_password as policy
from authserver.accounts.profiles import Profile
from authserver.accounts.users import MAX_PASSWORD, User
from authserver.actions.end_sessions import end_sessions
from authserver.actions.enrolment import (
    Enrolled,
    TotpEnrolment,
    confirm_enrolment,
    new_enrolment,
)
from authserver.actions.sign_in import Credentials, check_password
from authserver.audit import AuditEvent
from authserver.errors import InvalidGrant, NotFound, SlowDown
from authserver.i18n.translations import N_
from authserver.services import Services
from authserver.tokens.refresh import Session, family_revoked

# What the two kinds of sessions the page lists are called in its forms.
BROWSER = "browser"  # a login session: a browser signed in on the hosted page
APP = "app"  # a refresh family: an application holding a refresh token

WRONG_CURRENT = N_("The current password is wrong.")
NO_SUCH_SESSION = N_("You have no such session.")
NO_SUCH_APP = N_("You have not allowed that app anything.")


@dataclass(frozen=True)
class AllowedApp:
    client_id: str
    client_name: str  # its registered name, else its id
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    granted_at: int


@dataclass(frozen=True)
class AccountPage:
    """Everything the page shows; the template renders it."""

    user_id: str
    username: str
    this_browser: str  # the id of the login session the page was opened with
    browsers: tuple[Browser, ...]
    apps: tuple[Session, ...]  # refresh families, with the client's name
    # The third-party apps the user allowed (accounts/consents.py), newest first.
    allowed_apps: tuple[AllowedApp, ...] = ()
    # The user's profile (profiles.py), shown by templates/account_profile.html. EMAIL: the
    # email change form goes in templates/account_email.html, its use case next to
    # change_password below.
    profile: Profile = field(default_factory=Profile)
    factors: tuple[str, ...] = ()  # the kinds of second factor enrolled (second_factors.py)
    passkeys: tuple[StoredPasskey, ...] = ()  # the user's passkeys, oldest first (passkeys.py)


@dataclass(frozen=True)
class PasswordChanged:
    sessions_ended: int  # the refresh families of other browsers and apps that ended


@dataclass(frozen=True)
class PasswordRefused:
    """The page again, with why: `problem` is a sentence of the catalogs (`values` fill it),
    `retry_after` set when the throttle refused (too many failures)."""

    page: AccountPage
    problem: str
    values: dict[str, int | str] = field(default_factory=dict)
    retry_after: int | None = None


async def open_account(services: Services, cookie: str | None) -> AccountPage | None:
    """The page of the browser's user; None when the browser has no live login session."""
    signed_in = await _signed_in(services, cookie)
    return None if signed_in is None else await _page(services, *signed_in)


async def change_password(
    services: Services,
    cookie: str | None,
    *,
    current: str,
    new: str,
    address: str | None,
) -> PasswordChanged | PasswordRefused | None:
    """None when the browser has no live login session; PasswordRefused for a new password the
    policy refuses (checked first: no argon2, no throttle turn), a wrong current password (a
    failure of the sign-in's throttle, as a wrong password on the sign-in page) or too many
    of them."""
    signed_in = await _signed_in(services, cookie)
    if signed_in is None:
        return None
    user, session = signed_in
    try:
        password = policy(new, user.username, services.settings.password_min_length)
    except WeakPassword as exc:
        return PasswordRefused(await _page(services, user, session), exc.sentence, exc.values)
    checked = await _current_password(services, user, session, current, address)
    if isinstance(checked, PasswordRefused):
        return checked
    now = services.clock()
    new_hash = await services.passwords.hash(password)
    event = AuditEvent(
        now, user.id, "user.password_set", user.id, {"via": "account_page"}, user=user.id
    )
    # Only over the hash just checked: a change that raced this one (another browser, an
    # operator) wins, and this one changes nothing.
    expected = checked.password_hash
    if not await services.users.set_password_hash(user.id, new_hash, [event], expected):
        return PasswordRefused(await _page(services, user, session), WRONG_CURRENT)
    # Keycloak's "sign out other devices" and Auth0's password change: whoever knew the old
    # password is signed out everywhere; the person changing it stays signed in here.
    ended = await end_sessions(
        services, user.id, reason="password_changed", actor=user.id, now=now,
        keep_login_session=session.id,
    )  # fmt: skip
    return PasswordChanged(ended)


async def end_session(
    services: Services, cookie: str | None, kind: str, session_id: str
) -> bool | None:
    """Ends one of the user's sessions: a browser (its login session, with the apps it signed
    in) or an app (its refresh family). True when it was this browser's own login session
    (the browser is signed out); None when the browser has no live login session; NotFound
    for an id that is not a live session of the user's."""
    signed_in = await _signed_in(services, cookie)
    if signed_in is None:
        return None
    user, session = signed_in
    now = services.clock()
    if kind == BROWSER:
        if await services.login_sessions.end_by_id(session_id, user.id, now) is None:
            raise NotFound(NO_SUCH_SESSION)
        return session_id == session.id
    family = await services.families.get(session_id) if kind == APP else None
    if family is None or family.user_id != user.id:
        raise NotFound(NO_SUCH_SESSION)
    event = family_revoked(
        session_id, user.id, family.client_id, reason="user_revoked", actor=user.id, now=now
    )
    if not await services.families.revoke(session_id, "user_revoked", now, [event]):
        raise NotFound(NO_SUCH_SESSION)  # ended already
    return False


async def revoke_consent(services: Services, cookie: str | None, client_id: str) -> bool | None:
    """Forgets what the user allowed the client and ends its refresh families for the user
    (a refresh then fails; the next authorization asks again). None when the browser has no
    live login session; NotFound when the user allowed that client nothing."""
    signed_in = await _signed_in(services, cookie)
    if signed_in is None:
        return None
    user, _ = signed_in
    now = services.clock()
    event = consent_event("revoked", user.id, client_id[:128], now)
    if not await services.consents.revoke(user.id, client_id, now, event):
        raise NotFound(NO_SUCH_APP)
    return True


async def sign_out_everywhere(services: Services, cookie: str | None) -> int | None:
    """Ends every login session and refresh family of the user, this browser's too, as POST
    /logout/all does; how many families ended, or None when the browser has no live login
    session."""
    signed_in = await _signed_in(services, cookie)
    if signed_in is None:
        return None
    user, _ = signed_in
    now = services.clock()
    return await end_sessions(services, user.id, reason="logout_all", actor=user.id, now=now)


async def start_totp(services: Services, cookie: str | None) -> TotpEnrolment | None:
    """A new secret to set up; None without a live login session."""
    signed_in = await _signed_in(services, cookie)
    if signed_in is None:
        return None
    user, session = signed_in
    return new_enrolment(services, user, _enrolment_label(session))


async def confirm_totp(
    services: Services, cookie: str | None, token: str, code: str
) -> Enrolled | TotpEnrolment | None:
    """Stores the factor if `code` is the app's for the secret `token` carries; the setup page
    again with why otherwise (enrolment.confirm_enrolment); None without a live login
    session."""
    signed_in = await _signed_in(services, cookie)
    if signed_in is None:
        return None
    user, session = signed_in
    label = _enrolment_label(session)
    return await confirm_enrolment(services, user, label, token, code, "account_page")


async def remove_factors(
    services: Services, cookie: str | None, *, current: str, address: str | None
) -> bool | PasswordRefused | None:
    """Removes every second factor and recovery code once the current password is right;
    None without a live login session."""
    signed_in = await _signed_in(services, cookie)
    if signed_in is None:
        return None
    user, session = signed_in
    checked = await _current_password(services, user, session, current, address)
    if isinstance(checked, PasswordRefused):
        return checked
    event = AuditEvent(
        services.clock(), user.id, "factor.removed", user.id, {"via": "account_page"}, user=user.id
    )
    return await services.second_factors.remove_all(user.id, [event]) > 0


async def _current_password(
    services: Services, user: User, session: LoginSession, current: str, address: str | None
) -> User | PasswordRefused:
    """The user as checked by the sign-in's own password check, or why not."""

    async def prepare() -> Credentials[None]:
        audit: dict[str, str | None] = {"client_id": None, "via": "account_page"}
        # Cut as the sign-in does (check_password refuses an oversized one as wrong).
        return Credentials(user.username, current[: MAX_PASSWORD + 1], audit, None)

    async def then(_: None, checked: User) -> User:
        return checked

    try:
        checked = await check_password(
            services, username=user.username, address=address, prepare=prepare, then=then
        )
    except InvalidGrant:
        return PasswordRefused(await _page(services, user, session), WRONG_CURRENT)
    except SlowDown as exc:
        page = await _page(services, user, session)
        return PasswordRefused(page, WRONG_CURRENT, retry_after=exc.retry_after or 1)
    if checked.id != user.id:  # the username was taken by another account meanwhile
        return PasswordRefused(await _page(services, user, session), WRONG_CURRENT)
    return checked


def _enrolment_label(session: LoginSession) -> str:
    return f"totp-enrolment:{session.id}"


async def signed_in(services: Services, cookie: str | None) -> tuple[User, LoginSession] | None:
    """The browser's user and login session, as every form of the page finds them (the
    passkeys' endpoints too, actions/passkeys.py); None without a live one."""
    return await _signed_in(services, cookie)


async def _signed_in(services: Services, cookie: str | None) -> tuple[User, LoginSession] | None:
    if not cookie or len(cookie) > MAX_COOKIE:
        return None
    now, idle = services.clock(), services.settings.login_session_idle_ttl
    # One statement decides: not ended, not idle, not over, its user enabled (and it is
    # touched: the page is a use of the session, as a single sign-on is).
    session = await services.login_sessions.touch(hash_session_token(cookie), now, idle)
    if session is None:
        return None
    user = await services.users.by_id(session.user_id)
    if user is None or user.disabled:
        return None
    return user, session


async def _page(services: Services, user: User, session: LoginSession) -> AccountPage:
    now = services.clock()
    browsers = await services.login_sessions.browsers(
        user.id, now, services.settings.login_session_idle_ttl
    )
    apps = await services.families.sessions(user.id, now)
    factors = tuple(await services.second_factors.kinds(user.id))
    passkeys = tuple(await services.passkeys.of_user(user.id)) if PASSKEY in factors else ()
    allowed = []
    for held in await services.consents.grants(user.id):
        client = await services.clients.get(held.client_id)
        name = client.display_name if client is not None else held.client_id
        scopes, resources = tuple(sorted(held.scopes)), tuple(sorted(held.resources))
        allowed.append(AllowedApp(held.client_id, name, scopes, resources, held.granted_at))
    return AccountPage(
        user.id, user.username, session.id, tuple(browsers), tuple(apps), profile=user.profile,
        factors=factors, passkeys=passkeys, allowed_apps=tuple(allowed),
    )  # fmt: skip

"""The sign-in as steps, and where a browser is between them:

    password ──(no second factor)──────────────────────────────▶ signed in
        │
        └──(a factor enrolled)──▶ awaiting the second factor ──(TOTP or recovery code)──▶ signed in
                                      (5 minutes, single use)

    signed in (pwd) ──(/authorize asks for mfa: a step-up)──(TOTP or recovery code)──▶ signed in
                                                                                       (mfa)
    password ──(no factor, AUTHSERVER_MFA=required)──▶ enrolling ──(an app added)──▶ signed in

"Signed in" is a login session (login_sessions.py), and only that: the single sign-on of
/authorize, the account page and every token. "Awaiting the second factor" is a pending sign-in
(login_sessions.PendingSignIn), kept server-side by the SHA-256 of a cookie of its own, so
nothing the browser sends can say the password was checked or for whom; and since it is no login
session, nothing that looks for one finds it. A step-up (authorize.StepUp: `acr_values=mfa`
or a `require_mfa` client, and a session signed in with the password alone) needs no pending
sign-in: the browser's live login session is the state, and the factor upgrades it in place
(its amr, its auth_time, and a new cookie, in one statement). Later steps (a passkey alone)
are more arrows into the same states.

Throttling: the password step settles as a step, not a success (throttle.guard's `clears`), so
the username's failure counts are cleared only by a completed sign-in; a wrong code counts
against the same per-account budget as a wrong password.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from authserver import throttle
from authserver.accounts.login_sessions import (
    MAX_COOKIE,
    PASSWORD_AND_OTP,
    PENDING_TTL,
    LoginSession,
    PendingSignIn,
    acr_of,
    hash_session_token,
    new_session_token,
    start_login_session,
    stepped_up,
)
from authserver.accounts.second_factors import DIGITS, TOTP, accept_totp, spend_recovery_code
from authserver.accounts.users import User
from authserver.actions.authorize import (
    AuthorizationRequest,
    Params,
    Redirect,
    SignIn,
    complete,
    live_session,
    local_page_after,
    resume,
)
from authserver.actions.enrolment import TotpEnrolment, confirm_enrolment, new_enrolment
from authserver.audit import AuditEvent
from authserver.errors import InvalidGrant, SlowDown
from authserver.services import Services

TOTP_METHOD, RECOVERY_METHOD = "totp", "recovery_code"
OTP = ("otp",)  # RFC 8176 §2: either is a one-time password


@dataclass(frozen=True)
class AwaitingFactor:
    """The password was right and the user has a second factor: the browser holds `cookie`
    (the pending sign-in) and is asked for the code."""

    cookie: str
    expires_at: int
    enrol: bool = False  # AUTHSERVER_MFA=required, and no factor yet: one is added first


@dataclass(frozen=True)
class SignedIn:
    """A login session started (`cookie` is its value), and where the browser goes next:
    back to the client with a code (Redirect), the form again for a user disabled a moment
    ago (SignIn), a page of ours a bare sign-in was asked to go on to (Redirect to a path of
    authorize.THEN_PAGES), or, for a bare sign-in with no authorization request, None."""

    session: LoginSession
    cookie: str
    then: Redirect | SignIn | None


@dataclass(frozen=True)
class FactorAgain:
    """The code form again: a wrong code, or with `retry_after`, too many failures."""

    request: AuthorizationRequest | None
    retry_after: int | None = None


@dataclass(frozen=True)
class StartAgain:
    """No pending sign-in for this browser (none, expired, or already finished): back to the
    password form."""


async def after_password(
    services: Services,
    user: User,
    *,
    client_id: str | None,
    replaces: str | None,
    user_agent: str | None,
) -> tuple[LoginSession, str] | AwaitingFactor:
    """The step after a right password: signed in (the login session and its cookie), or, for
    a user with a second factor, awaiting it."""
    now = services.clock()
    has_factor = bool(await services.second_factors.kinds(user.id))
    if has_factor or services.settings.mfa == "required":
        cookie = new_session_token()
        pending = PendingSignIn(user.id, client_id, now, now + PENDING_TTL)
        await services.pending_sign_ins.hold(pending, hash_session_token(cookie))
        return AwaitingFactor(cookie, pending.expires_at, enrol=not has_factor)
    return await start_login_session(
        services.login_sessions, user.id, now, services.settings.login_session_ttl, client_id,
        replaces, user_agent,
    )  # fmt: skip


def password_step_clears(result: object) -> bool:
    """For throttle.guard: only a sign-in that is complete clears the username's counts."""
    return not isinstance(result, AwaitingFactor)


@dataclass(frozen=True)
class FactorPage:
    """The second-step page to show: for the authorization request (None for a bare
    sign-in), with the code field only for a user who has codes (an authenticator app and its
    recovery codes): a user whose only factor is a passkey is asked for it alone."""

    request: AuthorizationRequest | None
    codes: bool


async def pending_request(
    services: Services,
    params: Params,
    pending_cookie: str | None,
    session_cookie: str | None = None,
    *,
    address: str | None,
) -> FactorPage | Redirect | StartAgain:
    """GET /login/factor: the page for the authorization request (as `resume`), or
    StartAgain when the browser has no pending sign-in nor a login session to step up."""
    pending = await _pending(services, pending_cookie)
    session = None if pending or pending_cookie else await to_step_up(services, session_cookie)
    signing_in = pending or session
    if signing_in is None:
        return StartAgain()
    user_id = signing_in.user_id
    target = await resume(services, params, address=address)
    if isinstance(target, Redirect):
        return target
    return FactorPage(target, TOTP in await services.second_factors.kinds(user_id))


async def second_factor(
    services: Services,
    params: Params,
    *,
    pending_cookie: str | None,
    code: str,
    address: str | None,
    replaces: str | None = None,
    user_agent: str | None = None,
) -> Redirect | FactorAgain | StartAgain | SignedIn:
    """POST /login/factor: the authorization request checked again (as POST /login), the code
    checked against the pending sign-in's user (throttled as a password), the pending sign-in
    spent and the login session started, and the authorization request completed."""
    target = await resume(services, params, address=address)
    if isinstance(target, Redirect):
        return target
    if not pending_cookie:
        return await _step_up(services, params, target, replaces, code, address)
    pending = await _pending(services, pending_cookie)
    user = None if pending is None else await services.users.by_id(pending.user_id)
    if pending is None or user is None:
        return StartAgain()
    method = await _check_code(services, user, code, address, pending.client_id, "sign_in_page")
    if method is None:
        return FactorAgain(target)
    if isinstance(method, int):
        return FactorAgain(target, method)
    now = services.clock()
    # Spent once: of two tabs finishing one pending sign-in, one goes on.
    if await services.pending_sign_ins.release(hash_session_token(pending_cookie), now) is None:
        return StartAgain()
    detail = {"client_id": pending.client_id, "via": "sign_in_page", "method": method}
    await services.audit.record(
        [AuditEvent(now, user.id, "login.second_factor", user.id, detail, user=user.id)]
    )
    started = await _signed_in_with_otp(services, pending, now, replaces, user_agent)
    if started is None:
        return StartAgain()
    session, cookie = started
    if target is None:
        page = local_page_after(params)
        return SignedIn(session, cookie, None if page is None else Redirect(page))
    return SignedIn(session, cookie, await complete(services, target, session))


async def _signed_in_with_otp(
    services: Services, pending: PendingSignIn, now: int, replaces: str | None,
    user_agent: str | None,
) -> tuple[LoginSession, str] | None:  # fmt: skip
    """The login session of a pending sign-in finished with a one-time password; None when its
    user was disabled meanwhile."""
    try:
        return await start_login_session(
            services.login_sessions, pending.user_id, now, services.settings.login_session_ttl,
            pending.client_id, replaces, user_agent, PASSWORD_AND_OTP,
        )  # fmt: skip
    except InvalidGrant:
        return None


async def _check_code(
    services: Services, user: User, code: str, address: str | None, client_id: str | None,
    via: str,
) -> str | int | None:  # fmt: skip
    """The method of a right code (TOTP_METHOD, RECOVERY_METHOD), spent; None for a wrong one
    (audited, counted as a wrong password); the seconds to wait when throttled."""

    async def attempt() -> str:
        now = services.clock()
        typed = "".join(code.split())
        if len(typed) == DIGITS:
            sealer = services.factor_sealer
            if await accept_totp(services.second_factors, sealer, user.id, typed, now):
                return TOTP_METHOD
        elif await spend_recovery_code(services.second_factors, user.id, typed, now):
            return RECOVERY_METHOD
        detail = {"client_id": client_id, "via": via}
        failed = AuditEvent(
            now, user.id, "login.second_factor_failed", user.id, detail, user=user.id
        )
        await services.audit.record([failed])
        raise InvalidGrant(detail="wrong second-factor code")

    try:
        return await throttle.guard(
            services.throttle,
            username=user.username,
            address=address,
            clock=services.clock,
            turns=services.login_turns,
            attempt=attempt,
        )
    except InvalidGrant:
        return None
    except SlowDown as exc:
        return exc.retry_after or 1


async def to_step_up(services: Services, cookie: str | None) -> LoginSession | None:
    """The browser's live login session if a second factor (a code, or a passkey:
    actions/passkeys.py) would step it up: signed in without one, by a user who has one."""
    session = await live_session(services, cookie)
    if session is None or acr_of(session.amr) == "mfa":
        return None
    return session if await services.second_factors.kinds(session.user_id) else None


async def _step_up(
    services: Services, params: Params, target: AuthorizationRequest | None,
    cookie: str | None, code: str, address: str | None,
) -> Redirect | FactorAgain | StartAgain | SignedIn:  # fmt: skip
    """POST /login/factor for a live login session (no pending sign-in): the code checked as
    a sign-in's, then the session upgraded in one statement (login_sessions.step_up), and the
    authorization request completed with it."""
    session = await to_step_up(services, cookie)
    user = None if session is None else await services.users.by_id(session.user_id)
    if session is None or cookie is None or user is None:
        return StartAgain()
    client_id = target.client.client_id if target else None
    method = await _check_code(services, user, code, address, client_id, "step_up")
    if method is None:
        return FactorAgain(target)
    if isinstance(method, int):
        return FactorAgain(target, method)
    return await stepped_up_to(services, params, target, session, cookie, OTP, method)


async def stepped_up_to(
    services: Services, params: Params, target: AuthorizationRequest | None,
    session: LoginSession, cookie: str, methods: tuple[str, ...], method: str,
) -> SignedIn | StartAgain:  # fmt: skip
    """The step-up's end, once its factor (`method`, whose amr values are `methods`) was
    proved: the login session upgraded in one statement (login_sessions.step_up: its amr, its
    auth_time, a new cookie), audited, and the authorization request completed with it."""
    now, new_cookie = services.clock(), new_session_token()
    upgraded = await services.login_sessions.step_up(
        hash_session_token(cookie), session.user_id, stepped_up(session.amr, methods), now,
        services.settings.login_session_idle_ttl, hash_session_token(new_cookie),
    )  # fmt: skip
    if upgraded is None:  # ended, or stepped up by another tab, a moment ago
        return StartAgain()
    client_id = target.client.client_id if target else None
    detail = {"client_id": client_id, "via": "step_up", "method": method}
    user_id = session.user_id
    await services.audit.record(
        [AuditEvent(now, user_id, "login.second_factor", user_id, detail, user=user_id)]
    )
    if target is None:
        page = local_page_after(params)
        return SignedIn(upgraded, new_cookie, None if page is None else Redirect(page))
    return SignedIn(upgraded, new_cookie, await complete(services, target, upgraded))


async def _pending(services: Services, cookie: str | None) -> PendingSignIn | None:
    if not cookie or len(cookie) > MAX_COOKIE:
        return None
    return await services.pending_sign_ins.find(hash_session_token(cookie), services.clock())


@dataclass(frozen=True)
class Enrol:
    """The setup page of the sign-in (AUTHSERVER_MFA=required, a user without a factor): the
    authenticator app's secret to add, or after a wrong code the same with why."""

    request: AuthorizationRequest | None
    enrolment: TotpEnrolment


@dataclass(frozen=True)
class EnrolledSignedIn:
    """The app was added and the user signed in with it: the recovery codes to show once, and
    where "Continue" goes (the authorization request again, now answered by single sign-on:
    a code issued now would expire while the codes are read)."""

    signed_in: SignedIn
    recovery_codes: tuple[str, ...]
    continue_to: str


async def enrolment(
    services: Services, params: Params, pending_cookie: str | None, *, address: str | None
) -> Enrol | Redirect | StartAgain:
    """GET /login/enrol: a new secret for the pending sign-in's user, who has no factor."""
    target = await resume(services, params, address=address)
    if isinstance(target, Redirect):
        return target
    pending = await _pending(services, pending_cookie)
    user = await _enrolling(services, pending)
    if pending_cookie is None or user is None:
        return StartAgain()
    return Enrol(target, new_enrolment(services, user, _enrolment_label(pending_cookie)))


async def enrol(
    services: Services,
    params: Params,
    *,
    pending_cookie: str | None,
    token: str,
    code: str,
    address: str | None,
    replaces: str | None = None,
    user_agent: str | None = None,
) -> Enrol | Redirect | StartAgain | EnrolledSignedIn:
    """POST /login/enrol: the app's code for the secret offered; the factor and recovery codes
    stored (enrolment.confirm_enrolment), the pending sign-in spent and the login session
    started with the password and that one-time password."""
    target = await resume(services, params, address=address)
    if isinstance(target, Redirect):
        return target
    pending = await _pending(services, pending_cookie)
    user = await _enrolling(services, pending)
    if pending is None or pending_cookie is None or user is None:
        return StartAgain()
    label = _enrolment_label(pending_cookie)
    outcome = await confirm_enrolment(services, user, label, token, code, "sign_in_page")
    if isinstance(outcome, TotpEnrolment):
        return Enrol(target, outcome)
    now = services.clock()
    if await services.pending_sign_ins.release(hash_session_token(pending_cookie), now) is None:
        return StartAgain()  # the factor is stored: the password and its code sign in
    started = await _signed_in_with_otp(services, pending, now, replaces, user_agent)
    if started is None:
        return StartAgain()
    session, cookie = started
    # The request again, but for what the sign-in just did: prompt=login or max_age would ask
    # for the password once more.
    again = [(name, value) for name, value in params if name not in ("prompt", "max_age")]
    continue_to = local_page_after(params) or "/account"
    if target is not None:
        continue_to = "/authorize?" + urlencode(again)
    return EnrolledSignedIn(SignedIn(session, cookie, None), outcome.recovery_codes, continue_to)


async def _enrolling(services: Services, pending: PendingSignIn | None) -> User | None:
    """The pending sign-in's user, if they still have no factor to enrol (one who added one
    meanwhile signs in with it)."""
    user = None if pending is None else await services.users.by_id(pending.user_id)
    if user is None or await services.second_factors.kinds(user.id):
        return None
    return user


def _enrolment_label(pending_cookie: str) -> str:
    return f"totp-enrolment:pending:{hash_session_token(pending_cookie)}"

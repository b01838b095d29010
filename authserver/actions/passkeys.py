"""Passkeys (API.md, "Second factors and step-up"): registered on the account page, used after
the password as a second factor, or alone ("Sign in with a passkey").

Each ceremony is two calls: the options (a challenge held server-side for the browser that
asked, accounts/passkeys.py) and the browser's answer, checked against the challenge it spends.
A sign-in with a passkey is one more arrow of sign_in_steps.py's steps:

    password ──▶ awaiting the second factor ──(a passkey of that user)──▶ signed in
    (nothing) ──(a discoverable passkey, user verified)─────────────────▶ signed in
    signed in (pwd) ──(a step-up asked: a passkey of that user)──────────▶ signed in (mfa)

and ends as POST /login/factor does: the pending sign-in spent (if any), the login session
started with its `amr`, the authorization request completed; or, for a step-up (the page's
script says so: `step_up_cookie` is then the live login session's), as the code's step-up does:
the session upgraded in one statement. A user-verified passkey is two factors on its own
(RFC 8176 "hwk" + "user"), so `acr` is `mfa` either way.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from authserver import page_limits, throttle
from authserver.accounts.login_sessions import (
    MAX_COOKIE,
    PASSKEY_ONLY,
    PASSWORD_AND_PASSKEY,
    LoginSession,
    PendingSignIn,
    hash_session_token,
    start_login_session,
)
from authserver.accounts.passkeys import (
    CHALLENGE_TTL,
    PASSKEY,
    REGISTER,
    SIGN_IN,
    Challenge,
    PasskeyRefused,
    StoredPasskey,
    challenge_hash,
    challenge_of,
    clean_name,
    creation_options,
    credential_id_of,
    new_challenge,
    relying_party,
    request_options,
    verify_assertion,
    verify_new,
)
from authserver.actions.account import signed_in
from authserver.actions.authorize import Redirect, complete, local_page_after, resume
from authserver.actions.sign_in_steps import SignedIn, StartAgain, stepped_up_to, to_step_up
from authserver.audit import ANONYMOUS, AuditEvent
from authserver.errors import InvalidGrant, NotFound, SlowDown
from authserver.i18n.translations import N_
from authserver.services import Services

PASSKEY_REFUSED = N_("The passkey could not be verified. Try again.")
PASSKEY_UNKNOWN = N_("This passkey is not registered here.")
CEREMONY_EXPIRED = N_("This request has expired. Try again.")
REGISTERED_ALREADY = N_("This passkey is registered already.")
NO_PASSKEY = N_("You have no passkey. Enter a code instead.")
NO_SUCH_PASSKEY = N_("You have no such passkey.")
LAST_FACTOR = N_(
    "This passkey is your only second step. To remove it, turn two-step verification off "
    "with your password."
)
TOO_MANY = N_("Too many requests. Try again later.")
DEFAULT_NAME = "Passkey"
PROVED = ("hwk", "user")  # RFC 8176 §2: what a user-verified passkey adds to a session's amr


@dataclass(frozen=True)
class Refused:
    """A ceremony refused: `message` a sentence of the catalogs, `status` the HTTP status,
    `retry_after` when the throttle refused."""

    message: str
    status: int = 400
    retry_after: int | None = None


# --- registration, on the account page --------------------------------------------------------


async def registration_options(
    services: Services, cookie: str | None, browser: str
) -> dict[str, Any] | None:
    """Creation options for the browser's user, the challenge held for `browser`; None
    without a live login session."""
    found = await signed_in(services, cookie)
    if found is None:
        return None
    user, _ = found
    now = services.clock()
    challenge = new_challenge()
    held = Challenge(REGISTER, user.id, browser, now + CHALLENGE_TTL)
    await services.passkeys.hold_challenge(challenge_hash(challenge), held, now)
    existing = await services.passkeys.of_user(user.id)
    rp = relying_party(services.settings.issuer)
    return creation_options(rp, user.id, user.username, existing, challenge)


async def register(
    services: Services, cookie: str | None, browser: str, answer: object, name: str
) -> StoredPasskey | Refused | None:
    """Stores the credential the browser made if it answers a challenge this browser was given
    for this user (spent here); None without a live login session."""
    found = await signed_in(services, cookie)
    if found is None:
        return None
    user, _ = found
    now = services.clock()
    challenge = challenge_of(answer)
    if challenge is None or not isinstance(answer, dict):
        return Refused(PASSKEY_REFUSED)
    spent = await services.passkeys.spend_challenge(
        challenge_hash(challenge), REGISTER, browser, now
    )
    if spent is None or spent.user_id != user.id:
        return Refused(CEREMONY_EXPIRED)
    try:
        new = verify_new(relying_party(services.settings.issuer), answer, challenge)
    except PasskeyRefused:
        return Refused(PASSKEY_REFUSED)
    passkey = StoredPasskey(
        str(uuid.uuid4()), user.id, new.credential_id, new.public_key, new.sign_count,
        new.transports, clean_name(name, DEFAULT_NAME), now,
    )  # fmt: skip
    detail = {"kind": PASSKEY, "passkey": passkey.id}
    event = AuditEvent(now, user.id, "factor.enrolled", user.id, detail, user=user.id)
    if not await services.passkeys.add(passkey, [event]):
        return Refused(REGISTERED_ALREADY, 409)
    return passkey


async def remove_passkey(services: Services, cookie: str | None, passkey_id: str) -> bool | None:
    """Removes one of the user's passkeys (NotFound for any other id); None without a live
    login session; False, nothing removed, for the user's last second factor: turning
    two-step verification off asks for the current password (account.remove_factors), so a
    browser left signed in cannot do it a passkey at a time."""
    found = await signed_in(services, cookie)
    if found is None:
        return None
    user, _ = found
    detail = {"kind": PASSKEY, "passkey": passkey_id, "via": "account_page"}
    event = AuditEvent(services.clock(), user.id, "factor.removed", user.id, detail, user=user.id)
    removed = (
        await services.passkeys.remove(passkey_id, user.id, [event])
        if len(passkey_id) <= 36
        else False
    )
    if removed is False:
        raise NotFound(NO_SUCH_PASSKEY)
    return removed is True


# --- sign-in: a second factor, or alone -----------------------------------------------------


async def sign_in_options(
    services: Services, browser: str, pending_cookie: str | None,
    step_up_cookie: str | None = None, address: str | None = None,
) -> dict[str, Any] | Refused:  # fmt: skip
    """Request options: for a pending sign-in (`pending_cookie`, the password checked) or a
    step-up (`step_up_cookie`, the login session's), one of its user's passkeys; without
    either, any discoverable passkey (passwordless)."""
    now = services.clock()
    user_id = await _whose(services, pending_cookie, step_up_cookie, now)
    if isinstance(user_id, Refused):
        return user_id
    if user_id is None:
        # Nobody is known yet, and each answer holds a challenge row: limited per address.
        wait = await page_limits.retry_after(
            services.page_limits, now, address,
            prefix=page_limits.PASSKEY, per_address=page_limits.PASSKEY_CHALLENGES,
        )  # fmt: skip
        if wait is not None:
            return Refused(TOO_MANY, 429, retry_after=wait)
    allowed: list[StoredPasskey] = []
    if user_id is not None:
        allowed = await services.passkeys.of_user(user_id)
        if not allowed:
            return Refused(NO_PASSKEY)
    challenge = new_challenge()
    held = Challenge(SIGN_IN, user_id, browser, now + CHALLENGE_TTL)
    await services.passkeys.hold_challenge(challenge_hash(challenge), held, now)
    return request_options(relying_party(services.settings.issuer), allowed, challenge)


async def sign_in(
    services: Services,
    params: list[tuple[str, str]],
    *,
    browser: str,
    pending_cookie: str | None,
    answer: object,
    address: str | None,
    replaces: str | None = None,
    user_agent: str | None = None,
    step_up: bool = False,
) -> SignedIn | Redirect | Refused | StartAgain:
    """POST /login/passkey: the authorization request checked again (as POST /login), the
    assertion checked against the challenge it spends and the passkey it names, the counter
    raised, then signed in as after a second factor, or, with `step_up` (the login session
    `replaces` signed in with the password alone), that session stepped up. Raises ErrorPage."""
    target = await resume(services, params, address=address)
    if isinstance(target, Redirect):
        return target
    now = services.clock()
    pending = await _pending(services, pending_cookie, now)
    if pending_cookie is not None and pending is None:
        return StartAgain()
    weak: LoginSession | None = None
    if pending is None and step_up:
        weak = await to_step_up(services, replaces)
        if weak is None:  # signed out, or stepped up by another tab, meanwhile
            return StartAgain()
    challenge, credential_id = challenge_of(answer), credential_id_of(answer)
    if challenge is None or credential_id is None or not isinstance(answer, dict):
        return Refused(PASSKEY_REFUSED)
    spent = await services.passkeys.spend_challenge(
        challenge_hash(challenge), SIGN_IN, browser, now
    )
    user_id = pending.user_id if pending is not None else weak.user_id if weak else None
    if spent is None or spent.user_id != user_id:
        await _failed(services, user_id, "challenge", now)
        return Refused(CEREMONY_EXPIRED)
    stored = await services.passkeys.by_credential(credential_id)
    if stored is None or (user_id is not None and stored.user_id != user_id):
        await _failed(services, user_id, "unknown_passkey", now)
        return Refused(PASSKEY_UNKNOWN)
    rp = relying_party(services.settings.issuer)
    passkey, reply, expected = stored, answer, challenge  # as checked, for the closure

    async def attempt() -> None:
        try:
            count = verify_assertion(rp, reply, expected, passkey)
        except PasskeyRefused as exc:
            await _failed(services, passkey.user_id, "invalid", now, exc.reason, passkey.id)
            raise InvalidGrant(detail="passkey assertion refused") from exc
        if not await services.passkeys.use(passkey.id, count, now):
            # §6.1.1: a counter that did not go up means two copies of one private key exist.
            reason = f"sign count {count} not above {passkey.sign_count}"
            await _failed(services, passkey.user_id, "sign_count", now, reason, passkey.id)
            raise InvalidGrant(detail="passkey sign count went back: a cloned authenticator?")

    user = await services.users.by_id(stored.user_id)
    if user is None or user.disabled:
        return Refused(PASSKEY_UNKNOWN)
    try:
        if user_id is None:
            await attempt()  # a signature, nothing to guess: no failure budget to spend
        else:
            # A wrong answer after the password counts as a wrong code would (sign_in_steps).
            await throttle.guard(
                services.throttle, username=user.username, address=address,
                clock=services.clock, turns=services.login_turns, attempt=attempt,
            )  # fmt: skip
    except InvalidGrant:
        return Refused(PASSKEY_REFUSED)
    except SlowDown as exc:
        return Refused(PASSKEY_REFUSED, 429, exc.retry_after or 1)
    if weak is not None and replaces is not None:
        return await stepped_up_to(services, params, target, weak, replaces, PROVED, PASSKEY)
    amr: tuple[str, ...] = PASSKEY_ONLY
    client_id = None if target is None else target.client.client_id
    if pending is not None and pending_cookie is not None:
        # Spent once: of two tabs finishing one pending sign-in, one goes on.
        if await services.pending_sign_ins.release(hash_session_token(pending_cookie), now) is None:
            return StartAgain()
        amr, client_id = PASSWORD_AND_PASSKEY, pending.client_id
        detail = {"client_id": client_id, "via": "sign_in_page", "method": PASSKEY}
        await services.audit.record(
            [AuditEvent(now, user.id, "login.second_factor", user.id, detail, user=user.id)]
        )
    try:
        session, cookie = await start_login_session(
            services.login_sessions, user.id, now, services.settings.login_session_ttl,
            client_id, replaces, user_agent, amr,
        )  # fmt: skip
    except InvalidGrant:  # disabled meanwhile
        return StartAgain()
    if target is None:
        page = local_page_after(params)
        return SignedIn(session, cookie, None if page is None else Redirect(page))
    return SignedIn(session, cookie, await complete(services, target, session))


async def _whose(
    services: Services, pending_cookie: str | None, step_up_cookie: str | None, now: int
) -> str | Refused | None:
    """The user whose passkey a ceremony takes: the pending sign-in's, else the login session's
    to step up; None for anyone's (passwordless); Refused when the one named is gone."""
    if pending_cookie is not None:
        pending = await _pending(services, pending_cookie, now)
        return Refused(CEREMONY_EXPIRED) if pending is None else pending.user_id
    if step_up_cookie is not None:
        session = await to_step_up(services, step_up_cookie)
        return Refused(CEREMONY_EXPIRED) if session is None else session.user_id
    return None


async def _pending(services: Services, cookie: str | None, now: int) -> PendingSignIn | None:
    if not cookie or len(cookie) > MAX_COOKIE:
        return None
    return await services.pending_sign_ins.find(hash_session_token(cookie), now)


async def _failed(
    services: Services,
    user_id: str | None,
    why: str,
    now: int,
    reason: str | None = None,
    passkey_id: str | None = None,
) -> None:
    detail = {"why": why, "reason": reason, "passkey": passkey_id, "via": "sign_in_page"}
    # Before a passkey is found nobody is known: the anonymous actor, as login.failed's.
    who = user_id or ANONYMOUS
    event = AuditEvent(now, who, "login.passkey_failed", who, detail, user=user_id)
    await services.audit.record([event])

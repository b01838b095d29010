"""The password check of every login, and the hosted sign-in page's login that ends in a login
session instead of tokens.

`check_password` is the one check of the password grant (actions/grants/password.py) and of the
sign-in page: throttled (throttle.guard: the attempt is counted in the database before argon2
runs), refused with the same single InvalidGrant for every cause (users.authenticate: unknown
user, wrong password, disabled), and audited as `login.failed` with the username hashed.
Success starts a login session here, a refresh family there, each stored only if the user is
still enabled as it commits.

`finish` is all of POST /login in one call: the authorization request resumed, the password
checked, the login session started (or, for a user with a second factor, the next step awaited:
actions/sign_in_steps.py) and the request completed; the page renders its outcome.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from authserver import throttle
from authserver.accounts.login_sessions import LoginSession
from authserver.accounts.users import MAX_PASSWORD, User, authenticate
from authserver.actions.authorize import (
    AuthorizationRequest,
    Params,
    Redirect,
    complete,
    local_page_after,
    resume,
)
from authserver.actions.sign_in_steps import (
    AwaitingFactor,
    SignedIn,
    after_password,
    password_step_clears,
)
from authserver.audit import ANONYMOUS, AuditEvent, username_digest
from authserver.errors import InvalidGrant, SlowDown
from authserver.services import Services

P = TypeVar("P")
T = TypeVar("T")


@dataclass(frozen=True)
class Credentials(Generic[P]):
    """What a login presents, once its caller's own checks have passed."""

    username: str
    password: str
    audit: dict[str, str | None]  # the detail of its login.failed event
    context: P  # what the caller's own checks found (the grant: its client), for `then`


async def check_password(
    services: Services,
    *,
    username: str | None,
    address: str | None,
    prepare: Callable[[], Awaitable[Credentials[P]]],
    then: Callable[[P, User], Awaitable[T]],
    clears: Callable[[T], bool] | None = None,
) -> T:
    """`then(context, user)` once the password is right; SlowDown, InvalidGrant or what
    `prepare` raises otherwise. `username` is the one sent (the throttle's bucket), `prepare`
    the caller's checks that run inside the throttle, before the password; `clears` as
    throttle.guard's."""

    async def attempt() -> T:
        presented = await prepare()
        name, password = presented.username, presented.password
        try:
            if not name or not password or len(password) > MAX_PASSWORD:
                raise InvalidGrant(detail="username or password missing or oversized")
            user = await authenticate(services.users, services.passwords, name, password)
        except InvalidGrant:
            # The username is hashed (it may be a password typed in the wrong field); the
            # password never leaves `authenticate`. Success is audited by what `then` starts.
            event = AuditEvent(
                services.clock(), ANONYMOUS, "login.failed", username_digest(name),
                presented.audit,
            )  # fmt: skip
            await services.audit.record([event])
            raise
        return await then(presented.context, user)

    return await throttle.guard(
        services.throttle,
        username=username,
        address=address,
        clock=services.clock,
        turns=services.login_turns,
        attempt=attempt,
        clears=clears,
    )


async def sign_in(
    services: Services,
    *,
    username: str,
    password: str,
    address: str | None,
    client_id: str | None,
    replaces: str | None = None,
    user_agent: str | None = None,
) -> tuple[LoginSession, str] | AwaitingFactor:
    """(the new login session, its cookie value), or for a user with a second factor the
    pending sign-in awaiting it; InvalidGrant or SlowDown otherwise. `replaces`: the browser's
    login-session cookie, if any, ended by a success (see start_login_session); `user_agent`:
    the browser's, shown on the account page."""

    async def prepare() -> Credentials[None]:
        audit: dict[str, str | None] = {"client_id": client_id, "via": "sign_in_page"}
        return Credentials(username, password, audit, None)

    async def then(_: None, user: User) -> tuple[LoginSession, str] | AwaitingFactor:
        return await after_password(
            services, user, client_id=client_id, replaces=replaces, user_agent=user_agent
        )

    return await check_password(
        services, username=username or None, address=address, prepare=prepare, then=then,
        clears=password_step_clears,
    )  # fmt: skip


@dataclass(frozen=True)
class TryAgain:
    """The sign-in form again, with why: a refused password (one reason, whatever was wrong:
    an unknown user, a wrong password, a disabled account), or, with `retry_after`, too many
    failed sign-ins (the throttle's SlowDown). The page words it, in the reader's language."""

    request: AuthorizationRequest | None
    username: str
    retry_after: int | None = None


async def finish(
    services: Services,
    params: Params,
    *,
    username: str,
    password: str,
    address: str | None,
    replaces: str | None = None,
    user_agent: str | None = None,
) -> Redirect | TryAgain | SignedIn | AwaitingFactor:
    """POST /login: the authorization request in the page's query string checked again
    (actions/authorize.resume: a Redirect with its error, or ErrorPage raised), the password
    checked, the login session started, and the authorization request completed; or, for a
    user with a second factor, the pending sign-in (POST /login/factor goes on)."""
    target = await resume(services, params, address=address)
    if isinstance(target, Redirect):
        return target
    try:
        signed_in = await sign_in(
            services,
            username=username,
            password=password,
            address=address,
            client_id=target.client.client_id if target else None,
            replaces=replaces,
            user_agent=user_agent,
        )
    except InvalidGrant:
        return TryAgain(target, username)
    except SlowDown as exc:
        return TryAgain(target, username, exc.retry_after or 1)  # SlowDown makes it at least 1
    if isinstance(signed_in, AwaitingFactor):
        return signed_in
    session, cookie = signed_in
    if target is None:
        page = local_page_after(params)
        return SignedIn(session, cookie, None if page is None else Redirect(page))
    return SignedIn(session, cookie, await complete(services, target, session))

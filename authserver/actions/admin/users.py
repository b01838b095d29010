"""Operators' use cases for users: create, list, show, change, disable, delete, and a
password-reset link sent on the user's behalf."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.accounts.password_policy import check_password
from authserver.accounts.profiles import FIELDS as PROFILE_FIELDS
from authserver.accounts.profiles import Profile, ProfileChanges, profile_from
from authserver.accounts.users import (
    MAX_PASSWORD,
    MAX_USERNAME,
    EmailTaken,
    User,
    UserChanges,
    new_user,
    username_problem,
)
from authserver.actions import password_reset
from authserver.actions.admin import (
    DEFAULT_PAGE,
    Page,
    boolean_field,
    existing_user,
    only_known_fields,
    page_limit,
    string_field,
    string_list_field,
)
from authserver.actions.end_sessions import end_sessions
from authserver.audit import AuditEvent
from authserver.errors import Conflict, InvalidRequest, NotFound, SlowDown
from authserver.i18n.translations import N_
from authserver.inputs import storable
from authserver.services import Services
from authserver.tokens.scopes import ADMIN, valid_scope_tokens


@dataclass(frozen=True)
class CreatedUser:
    sub: str
    username: str


async def create_user(services: Services, actor: str, body: dict[str, Any]) -> CreatedUser:
    username = string_field(body, "username", MAX_USERNAME)
    problem = username_problem(username)
    if problem is not None:
        raise InvalidRequest(problem)
    password = _password(services, body, username)
    scopes = string_list_field(body, "scopes")
    if not valid_scope_tokens(scopes):
        raise InvalidRequest("A scope is malformed (RFC 6749 §3.3).")
    admin = boolean_field(body, "admin")
    changes = profile_from(body)
    profile = changes.applied_to(Profile())
    user = new_user(username, await services.passwords.hash(password), scopes, admin, profile)
    now = services.clock()
    try:
        stored = await services.users.create(user, now)
    except EmailTaken:
        raise _email_taken() from None
    if not stored:
        # Taken in any case or Unicode form (users.username_key).
        raise Conflict(f"The username {username!r} is taken.")
    # A new account: failures against the name before (a deleted account's, guesses at a name
    # not yet taken) are not its own.
    await services.throttle.forget(username)
    detail = {"username": username, "scopes": list(user.scopes), **_audited(changes)}
    await services.audit.record(
        [AuditEvent(now, actor, "user.created", user.id, detail, user=user.id)]
    )
    return CreatedUser(user.id, username)


async def logout_user_everywhere(services: Services, actor: str, sub: str) -> None:
    await existing_user(services, sub)
    await end_sessions(
        services,
        sub,
        reason="admin_logout_all",
        actor=actor,
        now=services.clock(),
        announce="user.logged_out_everywhere",
    )


async def reset_factors(services: Services, actor: str, sub: str) -> int:
    """Removes every second factor and recovery code of the user (one who lost both signs in
    with the password alone again, and may enrol anew), and ends every session: whoever
    signed in with the factors being reset is signed out. How many factors were removed."""
    await existing_user(services, sub)
    now = services.clock()
    event = AuditEvent(now, actor, "factor.removed", sub, {"via": "operator"}, user=sub)
    removed = await services.second_factors.remove_all(sub, [event])
    await end_sessions(
        services, sub, reason="factors_reset", actor=actor, now=now,
        announce="user.factors_reset",
    )  # fmt: skip
    return removed


async def disable_user(services: Services, actor: str, sub: str) -> None:
    """No more logins, and every session (with the access tokens bound to it) ends now."""
    if not await services.users.disable(sub):
        raise NotFound("No user has this sub.")
    await _end_sessions_disabled(services, actor, sub, services.clock())


async def _end_sessions_disabled(services: Services, actor: str, sub: str, now: int) -> None:
    """A disable, by POST .../disable or PATCH `disabled`: every session ends (with the
    access tokens bound to it) and `user.disabled` records how many."""
    await end_sessions(
        services, sub, reason="disabled", actor=actor, now=now, announce="user.disabled"
    )


def user_view(user: User) -> dict[str, Any]:
    return {
        "sub": user.id,
        "username": user.username,
        "scopes": [s for s in user.scopes if s != ADMIN],
        "admin": user.is_admin,
        "disabled": user.disabled,
        "created_at": user.created_at,
        "last_login_at": user.last_login_at,
        **profile_view(user.profile),
    }


def profile_view(profile: Profile) -> dict[str, Any]:
    return {name: _json(getattr(profile, name)) for name in PROFILE_FIELDS}


def _audited(changes: ProfileChanges) -> dict[str, Any]:
    """The profile fields a change sent, as sent (forgotten with the user: db/accounts.py)."""
    return {name: _json(getattr(changes.values, name)) for name in sorted(changes.given)}


def _json(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _email_taken() -> Conflict:
    # As a taken username: the operator may know every address anyway.
    return Conflict("The email address is another user's.")


async def list_users(
    services: Services, limit: int = DEFAULT_PAGE, after: str | None = None, prefix: str = ""
) -> Page:
    users = await services.users.page(page_limit(limit), after, prefix or None)
    next_after = users[-1].username if len(users) == page_limit(limit) else None
    return Page([user_view(u) for u in users], next_after)


async def show_user(services: Services, sub: str) -> dict[str, Any]:
    user = await existing_user(services, sub)
    # The kinds of second factor enrolled (`totp`); never a secret or a recovery code.
    return {**user_view(user), "factors": await services.second_factors.kinds(user.id)}


async def find_user(services: Services, name_or_sub: str) -> User:
    """The CLI's lookup: a username, else a sub."""
    user = await services.users.by_username(name_or_sub)
    if user is None:
        user = await services.users.by_id(name_or_sub)
    if user is None:
        raise NotFound(f"No user has the username or sub {name_or_sub!r}.")
    return user


async def update_user(
    services: Services, actor: str, sub: str, body: dict[str, Any]
) -> dict[str, Any]:
    only_known_fields(body, {"scopes", "admin", "disabled", *PROFILE_FIELDS})
    scopes = None
    if "scopes" in body:
        scopes = tuple(dict.fromkeys(string_list_field(body, "scopes")))
        if not valid_scope_tokens(list(scopes)):
            raise InvalidRequest("A scope is malformed (RFC 6749 §3.3).")
    admin = boolean_field(body, "admin") if "admin" in body else None
    disabled = boolean_field(body, "disabled") if "disabled" in body else None
    profile = profile_from(body)
    changes = UserChanges(scopes, admin, disabled, profile)
    now = services.clock()
    detail: dict[str, Any] = {k: body[k] for k in ("scopes", "admin", "disabled") if k in body}
    detail.update(_audited(profile))
    event = AuditEvent(now, actor, "user.updated", sub, detail, user=sub)
    try:
        user = await services.users.update(sub, changes, [event])
    except EmailTaken:
        raise _email_taken() from None
    if user is None:
        raise NotFound("No user has this sub.")
    if disabled:
        # As POST .../disable, after the `user.updated` of the fields sent.
        await _end_sessions_disabled(services, actor, sub, now)
    elif not user.is_admin:
        # A demotion ends the user's admin sessions now, with their access tokens (their
        # `sid` is revoked), rather than at the next refresh: an admin token could otherwise
        # give its user the admin scope back. After the row commits, so a refresh that races
        # this either sees the user demoted or yields a token of a family ended here. Quiet
        # (no family holds admin) unless the user was an admin until now.
        await services.families.revoke_user_holding(
            sub, ADMIN, reason="demoted", now=now, actor=actor
        )
    return user_view(user)


async def set_password(services: Services, actor: str, sub: str, body: dict[str, Any]) -> None:
    """Under the password policy; by default every session of the user ends with it."""
    only_known_fields(body, {"password", "revoke_sessions"})
    user = await existing_user(services, sub)
    password = _password(services, body, user.username)
    revoke = body.get("revoke_sessions", True)
    if not isinstance(revoke, bool):
        raise InvalidRequest("revoke_sessions must be true or false.")
    password_hash = await services.passwords.hash(password)
    now = services.clock()
    detail = {"revoke_sessions": revoke}
    event = AuditEvent(now, actor, "user.password_set", sub, detail, user=sub)
    if not await services.users.set_password_hash(sub, password_hash, [event]):
        raise NotFound("No user has this sub.")
    if revoke:
        # A login that checked the old password before this commit and starts its session
        # after it is refused by the store (FamilyStore.start); one that started before is
        # revoked here.
        await end_sessions(services, sub, reason="password_changed", actor=actor, now=now)


async def delete_user(services: Services, actor: str, sub: str) -> None:
    """The row keeps only its sub (for the audit trail): the username is free again."""
    now = services.clock()
    event = AuditEvent(now, actor, "user.deleted", sub, {}, user=sub)
    if not await services.users.delete(sub, now, [event]):
        raise NotFound("No user has this sub.")
    # Deleting disabled the row first: no login can start a session from here on.
    await end_sessions(services, sub, reason="deleted", actor=actor, now=now)


async def send_password_reset(
    services: Services, actor: str, sub: str, address: str | None
) -> None:
    """A password-reset link mailed to the user's address by the sign-in page's own use case
    (password_reset.ask: queued, the same mail and link, throttled by `address` and the
    email address as there); audited `user.password_reset_sent` with the operator."""
    user = await existing_user(services, sub)
    if not services.settings.mail_enabled:
        raise NotFound(N_("Mail is off (AUTHSERVER_SMTP_URL): no link can be sent."))
    email = user.profile.email
    if email is None or user.disabled:
        # The resolver would send nothing (links.reset_target): say so rather than pretend.
        raise InvalidRequest(N_("Only an enabled user with an email address gets a reset link."))
    outcome = await password_reset.ask(services, email=email, locale=None, address=address)
    if isinstance(outcome, password_reset.SlowDown):
        slow = SlowDown(outcome.retry_after)
        slow.description = N_("Too many reset links were asked for; try again later.")
        raise slow
    if isinstance(outcome, password_reset.BadInput):
        raise InvalidRequest(N_("The user's email address cannot receive a reset link."))
    now = services.clock()
    event = AuditEvent(now, actor, "user.password_reset_sent", sub, {}, user=sub)
    await services.audit.record([event])


def _password(services: Services, body: dict[str, Any], username: str) -> str:
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise InvalidRequest("password is required and must be a string.")
    if len(password) <= MAX_PASSWORD and not storable(password):
        raise InvalidRequest("password contains a character not allowed.")
    return check_password(password, username, services.settings.password_min_length)

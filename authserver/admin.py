"""Operators' use cases: signing keys, users and clients, each audited with who did it.

Every entry point takes the caller's bearer token first: `require_admin` answers 401 for a
missing, invalid or revoked token and 403 for a live one without the `admin` scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.audit import AuditEvent
from authserver.clients import (
    Client,
    ClientChanges,
    RefreshDelivery,
    check_client_fields,
    check_redirect_uris,
    hash_secret,
    new_secret,
)
from authserver.config import SIGNING_ALGS
from authserver.errors import Conflict, InsufficientScope, InvalidRequest, NotFound
from authserver.inputs import storable
from authserver.introspection import authenticate_bearer
from authserver.keys.records import public_record
from authserver.password_policy import check_password
from authserver.refresh import Session
from authserver.scopes import ADMIN, valid_scope_tokens
from authserver.services import Services
from authserver.users import (
    MAX_PASSWORD,
    MAX_USERNAME,
    User,
    UserChanges,
    new_user,
    username_problem,
)

DEFAULT_PAGE = 100
MAX_PAGE = 500
DEFAULT_OLD_SECRET_TTL = 3600
MAX_OLD_SECRET_TTL = 30 * 86_400


async def require_admin(services: Services, bearer: str | None) -> str:
    """The actor behind a live admin token: its `sub` (a user id, or a client's id)."""
    claims = await authenticate_bearer(services, bearer)
    scope = claims.get("scope")
    if not isinstance(scope, str) or ADMIN not in scope.split(" "):
        raise InsufficientScope(detail=f"{claims.get('sub')} lacks the admin scope")
    return str(claims.get("sub") or claims["client_id"])


# --- signing keys --------------------------------------------------------------------------


async def list_keys(services: Services) -> list[dict[str, Any]]:
    records = sorted(await services.keys.records(), key=lambda r: (r.created_at, r.kid))
    return [public_record(record) for record in records]


async def rotate_keys(
    services: Services, actor: str, alg: str | None = None, force: bool = False
) -> list[dict[str, Any]]:
    """Raises rotation.KeyNotReady (409, with its retry_after) while the next key is young."""
    if alg is not None and alg not in SIGNING_ALGS:
        raise InvalidRequest(f"alg must be one of {', '.join(SIGNING_ALGS)}.")
    await services.keys.rotate(actor, alg=alg, force=force)
    return await list_keys(services)


async def revoke_key(services: Services, actor: str, kid: str) -> list[dict[str, Any]]:
    await services.keys.revoke(kid, actor)
    return await list_keys(services)


# --- users ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedUser:
    sub: str
    username: str


async def create_user(services: Services, actor: str, body: dict[str, Any]) -> CreatedUser:
    username = _string(body, "username", MAX_USERNAME)
    problem = username_problem(username)
    if problem is not None:
        raise InvalidRequest(problem)
    password = _password(services, body, username)
    scopes = _string_list(body, "scopes")
    if not valid_scope_tokens(scopes):
        raise InvalidRequest("A scope is malformed (RFC 6749 §3.3).")
    admin = _boolean(body, "admin")
    user = new_user(username, await services.passwords.hash(password), scopes, admin)
    now = services.clock()
    if not await services.users.create(user, now):
        # Taken in any case or Unicode form (users.username_key).
        raise Conflict(f"The username {username!r} is taken.")
    # A new account: failures against the name before (a deleted account's, guesses at a name
    # not yet taken) are not its own.
    await services.throttle.forget(username)
    detail = {"username": username, "scopes": list(user.scopes)}
    await services.audit.record([AuditEvent(now, actor, "user.created", user.id, detail)])
    return CreatedUser(user.id, username)


async def logout_user_everywhere(services: Services, actor: str, sub: str) -> None:
    await _existing_user(services, sub)
    now = services.clock()
    # The login session first: once it is over, no new code starts a family to miss below.
    await services.login_sessions.end_user(sub, now)
    ended = await services.families.revoke_user(sub, "admin_logout_all", now, actor=actor)
    event = AuditEvent(now, actor, "user.logged_out_everywhere", sub, {"sessions": ended}, user=sub)
    await services.audit.record([event])


async def disable_user(services: Services, actor: str, sub: str) -> None:
    """No more logins, and every session (with the access tokens bound to it) ends now."""
    if not await services.users.disable(sub):
        raise NotFound("No user has this sub.")
    now = services.clock()
    await services.login_sessions.end_user(sub, now)
    ended = await services.families.revoke_user(sub, "disabled", now, actor=actor)
    event = AuditEvent(now, actor, "user.disabled", sub, {"sessions": ended}, user=sub)
    await services.audit.record([event])


async def _existing_user(services: Services, sub: str) -> User:
    user = await services.users.by_id(sub)
    if user is None:
        raise NotFound("No user has this sub.")
    return user


def user_view(user: User) -> dict[str, Any]:
    return {
        "sub": user.id,
        "username": user.username,
        "scopes": [s for s in user.scopes if s != ADMIN],
        "admin": user.is_admin,
        "disabled": user.disabled,
        "created_at": user.created_at,
        "last_login_at": user.last_login_at,
    }


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_after: str | None


async def list_users(
    services: Services, limit: int = DEFAULT_PAGE, after: str | None = None, prefix: str = ""
) -> Page:
    users = await services.users.page(_limit(limit), after, prefix or None)
    next_after = users[-1].username if len(users) == _limit(limit) else None
    return Page([user_view(u) for u in users], next_after)


async def show_user(services: Services, sub: str) -> dict[str, Any]:
    return user_view(await _existing_user(services, sub))


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
    _only(body, {"scopes", "admin", "disabled"})
    scopes = None
    if "scopes" in body:
        scopes = tuple(dict.fromkeys(_string_list(body, "scopes")))
        if not valid_scope_tokens(list(scopes)):
            raise InvalidRequest("A scope is malformed (RFC 6749 §3.3).")
    admin = _boolean(body, "admin") if "admin" in body else None
    disabled = _boolean(body, "disabled") if "disabled" in body else None
    changes = UserChanges(scopes, admin, disabled)
    now = services.clock()
    detail: dict[str, Any] = {k: body[k] for k in ("scopes", "admin", "disabled") if k in body}
    event = AuditEvent(now, actor, "user.updated", sub, detail, user=sub)
    user = await services.users.update(sub, changes, [event])
    if user is None:
        raise NotFound("No user has this sub.")
    if disabled:
        # As POST .../disable: every session ends, with the access tokens bound to it.
        await services.login_sessions.end_user(sub, now)
        await services.families.revoke_user(sub, "disabled", now, actor=actor)
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
    _only(body, {"password", "revoke_sessions"})
    user = await _existing_user(services, sub)
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
        await services.login_sessions.end_user(sub, now)
        await services.families.revoke_user(sub, "password_changed", now, actor=actor)


async def delete_user(services: Services, actor: str, sub: str) -> None:
    """The row keeps only its sub (for the audit trail): the username is free again."""
    now = services.clock()
    event = AuditEvent(now, actor, "user.deleted", sub, {}, user=sub)
    if not await services.users.delete(sub, now, [event]):
        raise NotFound("No user has this sub.")
    # Deleting disabled the row first: no login can start a session from here on.
    await services.families.revoke_user(sub, "deleted", now, actor=actor)
    await services.login_sessions.end_user(sub, now)


def session_view(session: Session, current: str | None = None) -> dict[str, Any]:
    return {
        "sid": session.sid,
        "client_id": session.client_id,
        "created_at": session.created_at,
        "last_used_at": session.last_used_at,
        "expires_at": session.expires_at,
        "user_agent": session.user_agent,
        "current": session.sid == current,
    }


async def user_sessions(services: Services, sub: str) -> list[dict[str, Any]]:
    await _existing_user(services, sub)
    sessions = await services.families.sessions(sub, services.clock())
    return [session_view(s) for s in sessions]


async def revoke_session(services: Services, actor: str, sid: str) -> None:
    family = await services.families.get(sid)
    if family is None:
        raise NotFound("No session has this sid.")
    now = services.clock()
    event = AuditEvent(
        now,
        actor,
        "family.revoked",
        sid,
        {"reason": "admin_revoked", "client_id": family.client_id},
        user=family.user_id,
        family=sid,
    )
    await services.families.revoke(sid, "admin_revoked", now, [event])


# --- clients -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatedClient:
    client: Client
    secret: str | None  # shown once, never stored

    def public_view(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_id": self.client.client_id,
            "public": self.client.is_public,
            "grant_types": list(self.client.grant_types),
            "scopes": list(self.client.scopes),
            "refresh_delivery": self.client.refresh_delivery,
            "redirect_uris": list(self.client.redirect_uris),
            "post_logout_redirect_uris": list(self.client.post_logout_redirect_uris),
        }
        body.update(registration_extras(self.client))
        if self.secret is not None:
            body["client_secret"] = self.secret
        return body


async def create_client(services: Services, actor: str, body: dict[str, Any]) -> CreatedClient:
    client_id = _string(body, "client_id", 128)
    public = _boolean(body, "public")
    grants = _string_list(body, "grant_types") or (
        ["refresh_token"] if public else ["client_credentials"]
    )
    scopes = _string_list(body, "scopes")
    delivery = body.get("refresh_delivery", "body")
    if not isinstance(delivery, str):
        raise InvalidRequest("refresh_delivery must be body or cookie.")
    check_client_fields(client_id, grants, delivery)
    if not valid_scope_tokens(scopes):
        raise InvalidRequest("A scope is malformed (RFC 6749 §3.3).")
    if public and "client_credentials" in grants:
        raise InvalidRequest("A public client cannot use client_credentials (RFC 6749 §4.4).")
    redirect_uris = _string_list(body, "redirect_uris")
    post_logout_redirect_uris = _string_list(body, "post_logout_redirect_uris")
    check_redirect_uris("redirect_uris", redirect_uris)
    check_redirect_uris("post_logout_redirect_uris", post_logout_redirect_uris)
    if "authorization_code" in grants and not redirect_uris:
        # Without one, every /authorize request of the client would end on the error page.
        raise InvalidRequest("The authorization_code grant needs at least one redirect_uris.")
    secret = None if public else new_secret()
    client = Client(
        client_id=client_id,
        secret_hash=hash_secret(secret) if secret else None,
        grant_types=tuple(dict.fromkeys(grants)),
        scopes=tuple(dict.fromkeys(scopes)),
        refresh_delivery="cookie" if delivery == "cookie" else "body",
        redirect_uris=tuple(dict.fromkeys(redirect_uris)),
        post_logout_redirect_uris=tuple(dict.fromkeys(post_logout_redirect_uris)),
    )
    now = services.clock()
    if not await services.clients.create(client, now):
        raise Conflict(f"The client_id {client_id!r} is taken.")
    created = CreatedClient(client, secret)
    detail = {k: v for k, v in created.public_view().items() if k != "client_secret"}
    await services.audit.record([AuditEvent(now, actor, "client.created", client_id, detail)])
    return created


PATCHABLE_CLIENT_FIELDS = {
    "grant_types",
    "scopes",
    "refresh_delivery",
    "disabled",
    "redirect_uris",
    "post_logout_redirect_uris",
}


def registration_extras(client: Client) -> dict[str, Any]:
    """The browser sign-in's registration fields (API.md, "Clients, added")."""
    return {
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
    }


def client_view(client: Client) -> dict[str, Any]:
    """A client as GET /admin/clients/{id} shows it: never a secret or its hash."""
    return {
        "client_id": client.client_id,
        "public": client.is_public,
        "grant_types": list(client.grant_types),
        "scopes": list(client.scopes),
        **registration_extras(client),
        "refresh_delivery": client.refresh_delivery,
        "disabled": client.disabled,
        "created_at": client.created_at,
        "secret_rotated_at": client.secret_rotated_at,
    }


async def list_clients(
    services: Services, limit: int = DEFAULT_PAGE, after: str | None = None
) -> Page:
    clients = await services.clients.page(_limit(limit), after)
    next_after = clients[-1].client_id if len(clients) == _limit(limit) else None
    return Page([client_view(c) for c in clients], next_after)


async def _existing_client(services: Services, client_id: str) -> Client:
    # The database, not this process's memory: an operator reads what is true now.
    client = await services.clients.fresh(client_id)
    if client is None:
        raise NotFound("No client has this client_id.")
    return client


async def show_client(services: Services, client_id: str) -> dict[str, Any]:
    return client_view(await _existing_client(services, client_id))


def _client_changes(client: Client, body: dict[str, Any]) -> ClientChanges:
    """Validated as at creation, against the client as it would be after the change."""
    _only(body, PATCHABLE_CLIENT_FIELDS)
    grants = _string_list(body, "grant_types") if "grant_types" in body else None
    scopes = _string_list(body, "scopes") if "scopes" in body else None
    delivery = body.get("refresh_delivery", client.refresh_delivery)
    if not isinstance(delivery, str):
        raise InvalidRequest("refresh_delivery must be body or cookie.")
    check_client_fields(client.client_id, grants or list(client.grant_types), delivery)
    if grants is not None and not grants:
        raise InvalidRequest("grant_types must not be empty.")
    if scopes is not None and not valid_scope_tokens(scopes):
        raise InvalidRequest("A scope is malformed (RFC 6749 §3.3).")
    if client.is_public and grants is not None and "client_credentials" in grants:
        raise InvalidRequest("A public client cannot use client_credentials (RFC 6749 §4.4).")
    disabled = _boolean(body, "disabled") if "disabled" in body else None
    uris: dict[str, tuple[str, ...] | None] = {}
    for name in ("redirect_uris", "post_logout_redirect_uris"):
        uris[name] = None
        if name in body:
            listed = _string_list(body, name)
            check_redirect_uris(name, listed)
            uris[name] = tuple(dict.fromkeys(listed))
    redirect_uris = uris["redirect_uris"]
    if redirect_uris is None:
        redirect_uris = client.redirect_uris
    if "authorization_code" in (grants or client.grant_types) and not redirect_uris:
        raise InvalidRequest("The authorization_code grant needs at least one redirect_uris.")
    refresh_delivery: RefreshDelivery | None = None
    if "refresh_delivery" in body:
        refresh_delivery = "cookie" if delivery == "cookie" else "body"
    # An admin token of the client could otherwise give the client its admin scope back:
    # taking it away ends every access token the client holds (its users' sessions go on,
    # refreshed without admin: the rotating statement reads the client's scopes).
    revoke_tokens = ADMIN in client.scopes and scopes is not None and ADMIN not in scopes
    return ClientChanges(
        revoke_tokens=revoke_tokens,
        grant_types=tuple(dict.fromkeys(grants)) if grants is not None else None,
        scopes=tuple(dict.fromkeys(scopes)) if scopes is not None else None,
        refresh_delivery=refresh_delivery,
        disabled=disabled,
        redirect_uris=uris["redirect_uris"],
        post_logout_redirect_uris=uris["post_logout_redirect_uris"],
    )


async def update_client(
    services: Services, actor: str, client_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Disabling revokes every family of the client and, through its revocation mark, every
    access token it holds (client_credentials ones too); re-enabling brings none back."""
    changes = _client_changes(await _existing_client(services, client_id), body)
    now = services.clock()
    detail = {k: body[k] for k in sorted(PATCHABLE_CLIENT_FIELDS) if k in body}
    event = AuditEvent(now, actor, "client.updated", client_id, detail)
    client = await services.clients.update(client_id, changes, now, [event])
    if client is None:
        raise NotFound("No client has this client_id.")
    if changes.disabled:
        await services.families.revoke_client(client_id, "client_disabled", now, actor)
    return client_view(client)


@dataclass(frozen=True)
class RotatedSecret:
    client_id: str
    client_secret: str  # shown once, never stored
    old_secret_expires_at: int


async def rotate_client_secret(
    services: Services, actor: str, client_id: str, body: dict[str, Any]
) -> RotatedSecret:
    """The new secret works at once everywhere (a process that remembers the client re-reads
    it on a mismatch); the old one until `old_secret_ttl` seconds from now (0: at once)."""
    _only(body, {"old_secret_ttl"})
    ttl = body.get("old_secret_ttl", DEFAULT_OLD_SECRET_TTL)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= MAX_OLD_SECRET_TTL:
        raise InvalidRequest(
            f"old_secret_ttl must be a whole number from 0 to {MAX_OLD_SECRET_TTL}."
        )
    client = await _existing_client(services, client_id)
    if client.is_public:
        raise InvalidRequest("A public client has no secret to rotate.")
    secret = new_secret()
    now = services.clock()
    detail = {"old_secret_expires_at": now + ttl}
    event = AuditEvent(now, actor, "client.secret_rotated", client_id, detail)
    if not await services.clients.rotate_secret(
        client_id, hash_secret(secret), now + ttl, now, event
    ):
        raise NotFound("No client has this client_id.")
    return RotatedSecret(client_id, secret, now + ttl)


async def delete_client(services: Services, actor: str, client_id: str) -> None:
    """The client_id stays taken; every family and access token of the client is revoked."""
    now = services.clock()
    event = AuditEvent(now, actor, "client.deleted", client_id, {})
    if not await services.clients.delete(client_id, now, event):
        raise NotFound("No client has this client_id.")
    await services.families.revoke_client(client_id, "client_deleted", now, actor)


# --- body fields ---------------------------------------------------------------------------


def _password(services: Services, body: dict[str, Any], username: str) -> str:
    password = body.get("password")
    if not isinstance(password, str) or not password:
        raise InvalidRequest("password is required and must be a string.")
    if len(password) <= MAX_PASSWORD and not storable(password):
        raise InvalidRequest("password contains a character not allowed.")
    return check_password(password, username, services.settings.password_min_length)


def _only(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}.")


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.")
    return limit


def _string(body: dict[str, Any], name: str, limit: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} is required and must be a string.")
    if len(value) > limit:
        raise InvalidRequest(f"{name} is longer than {limit} characters.")
    if not storable(value):
        raise InvalidRequest(f"{name} contains a character not allowed.")
    return value


def _string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidRequest(f"{name} must be a list of strings.")
    if len(value) > 64:
        raise InvalidRequest(f"{name} has too many members.")
    if not all(storable(item) for item in value):
        raise InvalidRequest(f"{name} contains a character not allowed.")
    return list(value)


def _boolean(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false.")
    return value

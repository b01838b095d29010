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
from authserver.scopes import ADMIN, valid_scope_tokens
from authserver.services import Services
from authserver.users import MAX_PASSWORD, MAX_USERNAME, new_user


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
    password = _string(body, "password", MAX_PASSWORD)
    scopes = _string_list(body, "scopes")
    if not valid_scope_tokens(scopes):
        raise InvalidRequest("A scope is malformed (RFC 6749 §3.3).")
    admin = _boolean(body, "admin")
    user = new_user(username, await services.passwords.hash(password), scopes, admin)
    now = services.clock()
    if not await services.users.create(user, now):
        raise Conflict(f"The username {username!r} is taken.")
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


async def _existing_user(services: Services, sub: str) -> None:
    if await services.users.by_id(sub) is None:
        raise NotFound("No user has this sub.")


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


# --- body fields ---------------------------------------------------------------------------


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

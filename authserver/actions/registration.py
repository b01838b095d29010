"""POST /register (RFC 7591) and GET|PUT|DELETE /register/{client_id} (RFC 7592), and the
operator's initial access tokens (`authserver clients registration-token`).

A registered client's metadata goes through clients.check_metadata, the validator of
operators' clients, after this module's own policy: grant types authorization_code and
refresh_token only (machines and passwords stay the operator's to allow), no `admin` scope,
public in `open` mode. Every registered client is third-party (`consent`).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from authserver import page_limits
from authserver.actions.admin import string_list_field
from authserver.actions.admin.clients import delete_client
from authserver.audit import AuditEvent
from authserver.clients import (
    MAX_REDIRECT_URI,
    BadRedirectUri,
    Client,
    ClientChanges,
    ClientMetadata,
    check_metadata,
    hash_secret,
    new_secret,
)
from authserver.errors import (
    InvalidClientMetadata,
    InvalidRedirectUri,
    InvalidRequest,
    InvalidToken,
    NotFound,
    SlowDown,
)
from authserver.registration import (
    APPLICATION_TYPES,
    KEPT_MEMBERS,
    MAX_INITIAL_TOKEN_TTL,
    OFF,
    OPEN,
    InitialAccessToken,
    new_client_id,
    new_token,
)
from authserver.services import Services
from authserver.tokens.scopes import ADMIN, IDENTITY_SCOPES

REGISTERED_GRANTS = ("authorization_code", "refresh_token")
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")
PATH = "/register"


def registration_uri(services: Services, client_id: str) -> str:
    return f"{services.settings.issuer}{PATH}/{client_id}"


def _require_on(services: Services) -> str:
    mode = services.settings.registration
    if mode == OFF:
        raise NotFound()
    return mode


async def make_initial_token(
    services: Services, actor: str, ttl: int, max_uses: int | None
) -> tuple[str, int]:
    """A new initial access token (shown once; its hash stored) and when it expires."""
    if not 60 <= ttl <= MAX_INITIAL_TOKEN_TTL:
        raise InvalidRequest(f"The lifetime must be 60 to {MAX_INITIAL_TOKEN_TTL} seconds.")
    if max_uses is not None and not 1 <= max_uses <= 1_000_000:
        raise InvalidRequest("The uses must be a whole number from 1 to 1000000.")
    token, now = new_token(), services.clock()
    record = InitialAccessToken(hash_secret(token), now, now + ttl, max_uses)
    detail = {"expires_at": record.expires_at, "max_uses": max_uses}
    target = initial_token_id(record.token_hash)
    event = AuditEvent(now, actor, "registration_token.created", target, detail)
    await services.registrations.create_initial_token(record, event)
    return token, record.expires_at


# The most live initial access tokens a list shows (newest first).
LISTED_TOKENS = 100


def initial_token_id(token_hash: str) -> str:
    """How the audit trail and the console name an initial access token: its hash's start."""
    return token_hash[:12]


async def live_initial_tokens(services: Services) -> list[InitialAccessToken]:
    return await services.registrations.live_initial_tokens(services.clock(), LISTED_TOKENS)


async def revoke_initial_token(services: Services, actor: str, token_hash: str) -> None:
    """Ends an initial access token now: no registration with it from here on (the clients
    it registered stay). NotFound for an unknown, expired or used-up one."""
    now = services.clock()
    event = AuditEvent(now, actor, "registration_token.revoked", initial_token_id(token_hash), {})
    if len(token_hash) > 64 or not await services.registrations.revoke_initial_token(
        token_hash, now, event
    ):
        raise NotFound("No registration token that still works has this id.")


async def register(
    services: Services, bearer: str | None, address: str | None, body: dict[str, Any]
) -> dict[str, Any]:
    """RFC 7591 §3: the client registered, as the 201 answer shows it."""
    mode = _require_on(services)
    now = services.clock()
    wait = await page_limits.retry_after(
        services.page_limits, now, address, prefix=page_limits.REGISTRATION
    )
    if wait is not None:
        raise SlowDown(wait, detail="registrations from this address")
    if mode != OPEN and not bearer:
        # RFC 7591 §3: the initial access token is an OAuth 2.0 bearer token (RFC 6750).
        raise InvalidToken("An initial access token is required.")
    client_id = new_client_id()
    checked, method, kept = _metadata(client_id, body, mode)
    public = method == "none"
    secret = None if public else new_secret()
    token = new_token()
    client = Client(
        client_id=client_id,
        secret_hash=hash_secret(secret) if secret else None,
        **checked.as_fields(),
        created_at=now,
        registration=mode,
        registration_token_hash=hash_secret(token),
        client_metadata=kept,
        consent=True,
    )
    view = _view(services, client)
    event = AuditEvent(now, client_id, "client.registered", client_id, {"mode": mode, **view})
    initial = hash_secret(bearer) if mode != OPEN and bearer else None
    if not await services.registrations.register(client, initial, now, event):
        raise InvalidToken("The initial access token is unknown, expired or used up.")
    answer = {**view, "registration_access_token": token}
    if secret is not None:
        # RFC 7591 §3.2.1: client_secret_expires_at is REQUIRED with a secret; 0: never.
        answer.update(client_secret=secret, client_secret_expires_at=0)
    return answer


async def _managed(services: Services, client_id: str, bearer: str | None) -> Client:
    """RFC 7592 §2: the client the registration access token was issued for, or 401."""
    _require_on(services)
    client = await services.clients.fresh(client_id)
    expected = client.registration_token_hash if client is not None else None
    presented = hash_secret(bearer or "")
    # Always one comparison, so an unknown client and a wrong token take the same time.
    matches = hmac.compare_digest(presented, expected or hash_secret("no such token"))
    if client is None or not matches or bearer is None or client.disabled:
        raise InvalidToken(detail=f"no registration of {client_id!r} with this token")
    return client


async def read(services: Services, client_id: str, bearer: str | None) -> dict[str, Any]:
    """RFC 7592 §2.1. The secret and the token are not shown again: only their hashes are
    stored."""
    return _view(services, await _managed(services, client_id, bearer))


async def update(
    services: Services, client_id: str, bearer: str | None, body: dict[str, Any]
) -> dict[str, Any]:
    """RFC 7592 §2.2: the metadata replaced as a whole, with the rules of registration."""
    client = await _managed(services, client_id, bearer)
    if body.get("client_id") != client_id:
        # RFC 7592 §2.2: "The client MUST include its client_id field in the request, and it
        # MUST be the same as its currently issued client identifier."
        raise InvalidClientMetadata("client_id must be the client's own.")
    secret = body.get("client_secret")
    if secret is not None and (
        not isinstance(secret, str)
        or not hmac.compare_digest(hash_secret(secret), client.secret_hash or "")
    ):
        # RFC 7592 §2.2: a client_secret sent "MUST match the currently issued client secret".
        raise InvalidClientMetadata("client_secret is not the client's secret.")
    checked, method, kept = _metadata(client_id, body, client.registration or OPEN)
    if (method == "none") != client.is_public:
        raise InvalidClientMetadata("A client cannot change between public and confidential.")
    now = services.clock()
    # Every field replaced (RFC 7592 §2.2) but `resources`: an operator's restriction of the
    # client, no member of its metadata (docs/resources.md).
    fields = {**checked.as_fields(), "resources": client.resources}
    changed = replace(client, **fields, client_metadata=kept)
    event = AuditEvent(now, client_id, "client.updated", client_id, _view(services, changed))
    changes = ClientChanges(  # "" removes the name; None leaves the resources as they are
        **{**fields, "client_name": checked.client_name or "", "resources": None},
        client_metadata=kept,
    )
    stored = await services.clients.update(client_id, changes, now, [event])
    if stored is None:
        raise InvalidToken(detail="client deleted meanwhile")
    return _view(services, stored)


async def remove(services: Services, client_id: str, bearer: str | None) -> None:
    """RFC 7592 §2.3: the client deleted as an operator deletes one: its families end and its
    access tokens are revoked; the registration access token dies with it."""
    await _managed(services, client_id, bearer)
    await delete_client(services, client_id, client_id)


def _view(services: Services, client: Client) -> dict[str, Any]:
    """RFC 7591 §3.2.1: the metadata as stored, with the registration's own members."""
    kept = dict(client.client_metadata)
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        "registration_client_uri": registration_uri(services, client.client_id),
        "redirect_uris": list(client.redirect_uris),
        "grant_types": list(client.grant_types),
        "response_types": ["code"] if "authorization_code" in client.grant_types else [],
        "token_endpoint_auth_method": kept.pop(
            "token_endpoint_auth_method", "none" if client.is_public else "client_secret_basic"
        ),
        "scope": " ".join(client.scopes),
        "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
    }
    if client.client_name is not None:
        body["client_name"] = client.client_name
    if client.post_logout_redirect_uris:
        body["post_logout_redirect_uris"] = list(client.post_logout_redirect_uris)
    body.update(kept)
    return body


def _metadata(
    client_id: str, body: dict[str, Any], mode: str
) -> tuple[ClientMetadata, str, tuple[tuple[str, str], ...]]:
    """The RFC 7591 members read, this endpoint's policy applied, then the one validator of
    every client (clients.check_metadata). Members not listed are ignored: RFC 7591 §2, "The
    authorization server MUST ignore any client metadata sent by the client that it does not
    understand"."""
    with _as_registration_errors():
        grants = _strings(body, "grant_types", ["authorization_code"])
        unknown = [g for g in grants if g not in REGISTERED_GRANTS]
        if unknown:
            raise InvalidRequest(f"grant_types may hold only {' and '.join(REGISTERED_GRANTS)}.")
        wanted = ["code"] if "authorization_code" in grants else []
        responses = _strings(body, "response_types", wanted)
        # RFC 7591 §2.1: grant_types and response_types must agree; `code` is the only one.
        if set(responses) != set(wanted):
            raise InvalidRequest('response_types must be ["code"] with authorization_code.')
        method = body.get("token_endpoint_auth_method", "none" if mode == OPEN else None)
        if method is None:
            method = "client_secret_basic"  # RFC 7591 §2: the default
        if method not in AUTH_METHODS:
            raise InvalidRequest(f"token_endpoint_auth_method must be one of {AUTH_METHODS}.")
        if mode == OPEN and method != "none":
            raise InvalidRequest("Open registration makes public clients only (method none).")
        scope = body.get("scope", " ".join(IDENTITY_SCOPES))
        if not isinstance(scope, str) or not scope.strip():
            raise InvalidRequest("scope must be a space-separated string.")
        scopes = scope.split(" ")
        if ADMIN in scopes:
            raise InvalidRequest("A registered client cannot ask for the admin scope.")
        kept: list[tuple[str, str]] = []
        if method != "none":
            kept.append(("token_endpoint_auth_method", method))
        for name in KEPT_MEMBERS:
            value = body.get(name)
            if value is None:
                continue
            if name == "application_type":
                if value not in APPLICATION_TYPES:
                    raise InvalidRequest("application_type must be web or native.")
            elif not _https_url(value):
                raise InvalidRequest(f"{name} must be an https URL.")
            kept.append((name, value))
        checked = check_metadata(
            client_id,
            method == "none",
            grant_types=grants,
            scopes=scopes,
            redirect_uris=_strings(body, "redirect_uris", []),
            post_logout_redirect_uris=_strings(body, "post_logout_redirect_uris", []),
            client_name=body.get("client_name"),
            # RFC 9449 §5.2: "If omitted, the default value is false."
            dpop_bound_access_tokens=body.get("dpop_bound_access_tokens", False),
        )
    return checked, method, tuple(kept)


@contextmanager
def _as_registration_errors() -> Iterator[None]:
    """The validator's InvalidRequest as RFC 7591 §3.2.2 names it."""
    try:
        yield
    except BadRedirectUri as exc:
        raise InvalidRedirectUri(exc.description) from None
    except InvalidRequest as exc:
        raise InvalidClientMetadata(exc.description) from None


def _strings(body: dict[str, Any], name: str, default: list[str]) -> list[str]:
    return string_list_field(body, name) if name in body else default


def _https_url(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.startswith("https://")
        and len(value) <= MAX_REDIRECT_URI
        and value.isascii()
        and value.isprintable()
        and " " not in value
    )

"""Operators' use cases for clients: register, list, show, change, rotate the
secret, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from authserver.actions.admin import (
    DEFAULT_PAGE,
    Page,
    boolean_field,
    only_known_fields,
    page_limit,
    string_field,
    string_list_field,
)
from authserver.audit import AuditEvent
from authserver.clients import (
    MAX_CLIENT_RESOURCES,
    Client,
    ClientChanges,
    check_metadata,
    hash_secret,
    new_secret,
)
from authserver.errors import Conflict, InvalidRequest, NotFound
from authserver.services import Services
from authserver.tokens.resources import resource_problem
from authserver.tokens.scopes import ADMIN

DEFAULT_OLD_SECRET_TTL = 3600
MAX_OLD_SECRET_TTL = 30 * 86_400


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
    client_id = string_field(body, "client_id", 128)
    public = boolean_field(body, "public")
    resources = string_list_field(body, "resources")
    checked = check_metadata(
        client_id,
        public,
        grant_types=string_list_field(body, "grant_types")
        or (["refresh_token"] if public else ["client_credentials"]),
        scopes=string_list_field(body, "scopes"),
        refresh_delivery=body.get("refresh_delivery", "body"),
        redirect_uris=string_list_field(body, "redirect_uris"),
        post_logout_redirect_uris=string_list_field(body, "post_logout_redirect_uris"),
        client_name=body.get("client_name"),
        allowed_origins=string_list_field(body, "allowed_origins"),
        require_mfa=boolean_field(body, "require_mfa"),
        dpop_bound_access_tokens=body.get("dpop_bound_access_tokens", False),
        resources=resources,
        registered_resources=await _registered_among(services, resources),
    )
    consent = boolean_field(body, "consent")
    secret = None if public else new_secret()
    client = Client(
        client_id=client_id,
        secret_hash=hash_secret(secret) if secret else None,
        **checked.as_fields(),
        require_mfa=boolean_field(body, "require_mfa"),
        consent=consent,
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
    "client_name",
    "allowed_origins",
    "require_mfa",
    "dpop_bound_access_tokens",
    "resources",
}


async def _registered_among(services: Services, identifiers: list[str]) -> set[str]:
    """Those of `identifiers` the resource registry holds, for check_metadata (which says
    what is wrong with the others): only well-formed ones are looked up, and none of a list
    longer than check_metadata allows."""
    if len(identifiers) > MAX_CLIENT_RESOURCES:
        return set()
    wellformed = [i for i in dict.fromkeys(identifiers) if resource_problem(i) is None]
    return {i for i in wellformed if await services.resources.get(i) is not None}


def registration_extras(client: Client) -> dict[str, Any]:
    """The browser sign-in's registration fields (API.md, "Clients, added", both of them)."""
    return {
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
        "client_name": client.client_name,
        "allowed_origins": list(client.allowed_origins),
        "require_mfa": client.require_mfa,
        "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
        # RFC 8707 resources the client may name; empty: any registered one.
        "resources": list(client.resources),
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
        # Third-party (its users are asked), and how it came: "open" or "token" through
        # POST /register (RFC 7591), null when an operator made it.
        "consent": client.consent,
        "registration": client.registration,
    }


async def list_clients(
    services: Services, limit: int = DEFAULT_PAGE, after: str | None = None, prefix: str = ""
) -> Page:
    clients = await services.clients.page(page_limit(limit), after, prefix or None)
    next_after = clients[-1].client_id if len(clients) == page_limit(limit) else None
    return Page([client_view(c) for c in clients], next_after)


async def _existing_client(services: Services, client_id: str) -> Client:
    # The database, not this process's memory: an operator reads what is true now.
    client = await services.clients.fresh(client_id)
    if client is None:
        raise NotFound("No client has this client_id.")
    return client


async def show_client(services: Services, client_id: str) -> dict[str, Any]:
    return client_view(await _existing_client(services, client_id))


async def _client_changes(
    services: Services, client: Client, body: dict[str, Any]
) -> ClientChanges:
    """Validated as at creation (the one check_metadata), against the client as it would be
    after the change. The resources are checked against the registry when given: one deleted
    since they were set stays listed (and gets no token) until the list is replaced."""
    only_known_fields(body, PATCHABLE_CLIENT_FIELDS)
    lists = {
        name: string_list_field(body, name) if name in body else None
        for name in (
            "grant_types", "scopes", "redirect_uris", "post_logout_redirect_uris",
            "allowed_origins", "resources",
        )
    }  # fmt: skip
    given_resources = lists["resources"]
    registered_resources = (
        client.resources
        if given_resources is None
        else await _registered_among(services, given_resources)
    )
    require_mfa = boolean_field(body, "require_mfa") if "require_mfa" in body else None
    checked = check_metadata(
        client.client_id,
        client.is_public,
        grant_types=_either(lists["grant_types"], client.grant_types),
        scopes=_either(lists["scopes"], client.scopes),
        refresh_delivery=body.get("refresh_delivery", client.refresh_delivery),
        redirect_uris=_either(lists["redirect_uris"], client.redirect_uris),
        post_logout_redirect_uris=_either(
            lists["post_logout_redirect_uris"], client.post_logout_redirect_uris
        ),
        client_name=body.get("client_name", client.client_name),
        allowed_origins=_either(lists["allowed_origins"], client.allowed_origins),
        require_mfa=client.require_mfa if require_mfa is None else require_mfa,
        dpop_bound_access_tokens=body.get(
            "dpop_bound_access_tokens", client.dpop_bound_access_tokens
        ),
        resources=_either(given_resources, client.resources),
        registered_resources=registered_resources,
    )
    disabled = boolean_field(body, "disabled") if "disabled" in body else None
    client_name = None
    if "client_name" in body:
        client_name = checked.client_name or ""  # "": removed
    # An admin token of the client could otherwise give the client its admin scope back:
    # taking it away ends every access token the client holds (its users' sessions go on,
    # refreshed without admin: the rotating statement reads the client's scopes).
    scopes = checked.scopes if lists["scopes"] is not None else None
    revoke_tokens = ADMIN in client.scopes and scopes is not None and ADMIN not in scopes
    given = {name: lists[name] is not None for name in lists}
    return ClientChanges(
        revoke_tokens=revoke_tokens,
        grant_types=checked.grant_types if given["grant_types"] else None,
        scopes=scopes,
        refresh_delivery=checked.refresh_delivery if "refresh_delivery" in body else None,
        disabled=disabled,
        redirect_uris=checked.redirect_uris if given["redirect_uris"] else None,
        post_logout_redirect_uris=(
            checked.post_logout_redirect_uris if given["post_logout_redirect_uris"] else None
        ),
        client_name=client_name,
        allowed_origins=checked.allowed_origins if given["allowed_origins"] else None,
        resources=checked.resources if given["resources"] else None,
        require_mfa=require_mfa,
        dpop_bound_access_tokens=(
            checked.dpop_bound_access_tokens if "dpop_bound_access_tokens" in body else None
        ),
    )


def _either(given: list[str] | None, current: tuple[str, ...]) -> list[str]:
    return list(current) if given is None else given


async def update_client(
    services: Services, actor: str, client_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Disabling revokes every family of the client and, through its revocation mark, every
    access token it holds (client_credentials ones too); re-enabling brings none back."""
    changes = await _client_changes(services, await _existing_client(services, client_id), body)
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
    only_known_fields(body, {"old_secret_ttl"})
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

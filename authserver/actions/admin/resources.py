"""Operators' use cases for resource servers (RFC 8707, tokens/resources.py): register, list,
show, change, delete; each change audited."""

from __future__ import annotations

from typing import Any

from authserver.actions.admin import (
    DEFAULT_PAGE,
    Page,
    only_known_fields,
    page_limit,
    string_field,
    string_list_field,
)
from authserver.audit import AuditEvent
from authserver.errors import Conflict, InvalidRequest, NotFound
from authserver.services import Services
from authserver.tokens.resources import (
    MAX_RESOURCE,
    MAX_SCOPES,
    Resource,
    ResourceChanges,
    checked,
)
from authserver.tokens.scopes import valid_scope_tokens

MIN_TTL = 60
FIELDS = {"resource", "scopes", "access_token_ttl"}
PATCHABLE = {"scopes", "access_token_ttl"}


def resource_view(resource: Resource) -> dict[str, Any]:
    """As GET /admin/resources/{resource} shows it (API.md: those three members)."""
    return {
        "resource": resource.resource,
        "scopes": list(resource.scopes),
        "access_token_ttl": resource.access_token_ttl,
    }


def _scopes(body: dict[str, Any]) -> tuple[str, ...]:
    scopes = string_list_field(body, "scopes")
    if len(scopes) > MAX_SCOPES or not valid_scope_tokens(scopes):
        raise InvalidRequest(f"scopes must be at most {MAX_SCOPES} scopes (RFC 6749 §3.3).")
    return tuple(dict.fromkeys(scopes))


def _ttl(services: Services, body: dict[str, Any]) -> int:
    """From 60 s to AUTHSERVER_ACCESS_TOKEN_TTL: the revocation feed, the purge and key
    retirement count on that as the longest an access token lives."""
    most = services.settings.access_token_ttl
    ttl = body.get("access_token_ttl", most)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not MIN_TTL <= ttl <= most:
        raise InvalidRequest(
            f"access_token_ttl must be a whole number of seconds from {MIN_TTL} to {most} "
            "(AUTHSERVER_ACCESS_TOKEN_TTL)."
        )
    return ttl


async def create_resource(services: Services, actor: str, body: dict[str, Any]) -> dict[str, Any]:
    only_known_fields(body, FIELDS)
    identifier = checked(string_field(body, "resource", MAX_RESOURCE), InvalidRequest)
    now = services.clock()
    resource = Resource(identifier, _scopes(body), _ttl(services, body), now)
    view = resource_view(resource)
    event = AuditEvent(now, actor, "resource.created", identifier, view)
    if not await services.resources.create(resource, event):
        raise Conflict(f"The resource {identifier!r} is registered already.")
    return view


async def list_resources(
    services: Services, limit: int = DEFAULT_PAGE, after: str | None = None
) -> Page:
    found = await services.resources.page(page_limit(limit), after)
    next_after = found[-1].resource if len(found) == limit else None
    return Page([resource_view(r) for r in found], next_after)


async def show_resource(services: Services, identifier: str) -> dict[str, Any]:
    resource = await services.resources.get(identifier)
    if resource is None:
        raise NotFound("No resource has this identifier.")
    return resource_view(resource)


async def update_resource(
    services: Services, actor: str, identifier: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Tokens already issued keep what they carry until they expire; the next token for the
    resource (a refresh) gets its new scopes and lifetime."""
    only_known_fields(body, PATCHABLE)
    changes = ResourceChanges(
        scopes=_scopes(body) if "scopes" in body else None,
        access_token_ttl=_ttl(services, body) if "access_token_ttl" in body else None,
    )
    now = services.clock()
    event = AuditEvent(now, actor, "resource.updated", identifier, {**body})
    updated = await services.resources.update(identifier, changes, event)
    if updated is None:
        raise NotFound("No resource has this identifier.")
    return resource_view(updated)


async def delete_resource(services: Services, actor: str, identifier: str) -> None:
    """No token is issued for it from now on (a refresh naming it is invalid_target), and
    introspection calls its tokens inactive; services verifying offline accept them until
    they expire."""
    event = AuditEvent(services.clock(), actor, "resource.deleted", identifier, {})
    if not await services.resources.delete(identifier, event):
        raise NotFound("No resource has this identifier.")

"""Resource indicators (RFC 8707): the APIs an access token may be for.

An operator registers each resource server by its identifier (an absolute URI), the scopes it
declares and the lifetime of its access tokens. A token request naming one (`resource`) gets a
token whose `aud` is that identifier, carrying only the scopes it declares (and the identity
scopes, which are no permission), for its lifetime; so a token for one API is refused by every
other. An authorization may name several; each access token is for one of them, the one the
code exchange or refresh asks for (§2.2), or the first named when it asks for none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from authserver.audit import AuditEvent
from authserver.errors import InvalidTarget, OAuthError
from authserver.tokens.scopes import IDENTITY_SCOPES

# The identifier is the `aud` of tokens and the key of the audit trail's target (256 chars).
MAX_RESOURCE = 256
# How many resources one authorization request may name (RFC 8707 lets it repeat `resource`).
MAX_RESOURCES = 10
MAX_SCOPES = 64
# RFC 3986 §4.3: absolute-URI = scheme ":" hier-part [ "?" query ], made of the characters
# RFC 3986 §2 allows; no "#": RFC 8707 §2, "The URI MUST NOT include a fragment component."
# A space is none of them, so space-separated lists of identifiers are unambiguous.
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]+")


@dataclass(frozen=True)
class Resource:
    resource: str  # its identifier: the `aud` of its tokens
    scopes: tuple[str, ...]  # what its tokens may carry, besides the identity scopes
    access_token_ttl: int  # seconds; at most AUTHSERVER_ACCESS_TOKEN_TTL
    created_at: int = 0


@dataclass(frozen=True)
class ResourceChanges:
    """A PATCH: None leaves a field as it is."""

    scopes: tuple[str, ...] | None = None
    access_token_ttl: int | None = None


class ResourceStore(Protocol):
    async def get(self, resource: str) -> Resource | None: ...

    async def page(self, limit: int, after: str | None) -> list[Resource]:
        """Resources by identifier, those after `after` only."""
        ...

    async def create(self, resource: Resource, audit: AuditEvent) -> bool:
        """Stores it with its audit event; False when the identifier is taken."""
        ...

    async def update(
        self, resource: str, changes: ResourceChanges, audit: AuditEvent
    ) -> Resource | None:
        """The resource as changed (with its audit event); None when there is none."""
        ...

    async def delete(self, resource: str, audit: AuditEvent) -> bool: ...


def resource_problem(value: str) -> str | None:
    """Why `value` cannot be a resource identifier; None when it can."""
    if len(value) > MAX_RESOURCE:
        return f"a resource is at most {MAX_RESOURCE} characters"
    if "#" in value:
        return "a resource must not include a fragment (RFC 8707 §2)"
    if not _ABSOLUTE_URI.fullmatch(value):
        return "a resource must be an absolute URI (RFC 8707 §2)"
    return None


def checked(value: str, error: type[OAuthError] = InvalidTarget) -> str:
    """`value`, a well-formed identifier; `error` (invalid_target at the OAuth endpoints, the
    admin API's invalid_request) saying why not."""
    problem = resource_problem(value)
    if problem is not None:
        raise error(f"The resource is malformed: {problem}.")
    return value


def requested_resources(values: Sequence[str]) -> tuple[str, ...]:
    """The resources an authorization request names (none, one or several), each checked;
    InvalidTarget otherwise."""
    if len(values) > MAX_RESOURCES:
        raise InvalidTarget(f"An authorization request names at most {MAX_RESOURCES} resources.")
    return tuple(dict.fromkeys(checked(value) for value in values))


def requested_resource(raw: str | None) -> str | None:
    """The one resource a token request names (None: none). Several (the form reader joins a
    repeated `resource` with a space, which no identifier holds) are refused: one resource per
    access token."""
    if raw is None:
        return None
    if " " in raw:
        raise InvalidTarget("Name one resource per token request: a token is for one resource.")
    return checked(raw)


def chosen(requested: str | None, granted: tuple[str, ...]) -> str | None:
    """RFC 8707 §2.2: the resource of a code exchange's or a refresh's access token, among
    those the authorization named: the one asked for, or the first named; None (the default
    audience) when it named none. Asking for one not granted is invalid_target."""
    if requested is None:
        return granted[0] if granted else None
    if requested not in granted:
        raise InvalidTarget(detail=f"resource {requested!r} was not granted")
    return requested


async def registered(
    store: ResourceStore, identifiers: Iterable[str], *, allowed: Sequence[str]
) -> tuple[Resource, ...]:
    """The registered resources of these identifiers; InvalidTarget for an unknown one, or one
    not among `allowed` (a client's resources; empty: any registered one)."""
    found = []
    for identifier in identifiers:
        if allowed and identifier not in allowed:
            # RFC 8707 §2: invalid_target, "the client is not authorized to request an access
            # token for the requested resource".
            raise InvalidTarget(detail=f"resource {identifier!r} is not the client's")
        resource = await store.get(identifier)
        if resource is None:
            raise InvalidTarget(detail=f"unknown resource {identifier!r}")
        found.append(resource)
    return tuple(found)


def scope_for(scope: str, resources: Iterable[Resource]) -> str:
    """`scope` less what none of `resources` declares (the identity scopes stay): what a token
    for one of them may carry."""
    declared = {*IDENTITY_SCOPES}
    for resource in resources:
        declared.update(resource.scopes)
    return " ".join(s for s in scope.split() if s in declared)

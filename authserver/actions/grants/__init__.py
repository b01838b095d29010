"""The token endpoint's grants (RFC 6749 §4.1.3, §4.3, §4.4, §6), one module each:
what every grant reads (GrantRequest) and answers (TokenResponse)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from authserver.clients import Client, ClientCredentials
from authserver.errors import InvalidRequest
from authserver.services import Services
from authserver.tokens.dpop import FirstUse
from authserver.tokens.refresh import Rotation
from authserver.tokens.resources import (
    Resource,
    chosen,
    registered,
    requested_resource,
    scope_for,
)


@dataclass(frozen=True)
class TokenResponse:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None
    refresh_expires_at: int | None = None
    refresh_delivery: str = "body"
    session_expires_at: int | None = None  # the family's absolute end
    id_token: str | None = None  # OpenID Connect: a code exchange with scope openid
    token_type: str = "Bearer"  # "DPoP" when the access token is bound to a key (RFC 9449 §5)


Fields = Mapping[str, str]


@dataclass(frozen=True)
class GrantRequest:
    """What a token request said: the client's credentials and the body's fields, and where
    it came from (the address login throttling counts; None when unknown)."""

    credentials: ClientCredentials
    fields: Fields
    address: str | None = None
    user_agent: str | None = None  # recorded on the session a login starts
    origin: str | None = None  # the browser's Origin header (actions/token.py)
    # RFC 9449: the DPoP header as sent ("" when sent twice), and the URL its proof must name;
    # actions/token.issue checks it and sets `dpop_jkt`, the key the tokens are bound to.
    dpop: str | None = None
    dpop_url: str = ""
    dpop_jkt: str | None = None
    # The proof's jti, when the grant records it in its own write (FOLDED_PROOF in
    # actions/token.py); else it was recorded before the grant ran.
    dpop_first_use: FirstUse | None = None

    def refresh_jkt(self, client: Client) -> str | None:
        """RFC 9449 §5: a public client's refresh tokens are bound to its DPoP key (a
        confidential client's are bound to its credentials already)."""
        return self.dpop_jkt if client.is_public else None


# A grant gets the client the request names as actions/token.issue looked it up (None: no such
# client, or none named), and authenticates it with clients.authenticate_named.
Grant = Callable[[Services, GrantRequest, Client | None], Awaitable[TokenResponse]]


async def with_refresh(
    services: Services,
    client: Client,
    rotation: Rotation,
    resource: Resource | None = None,
    jkt: str | None = None,
) -> TokenResponse:
    family = rotation.family
    # An access token never outlives its session, so verifiers that only read the JWT stop
    # accepting it when the family's absolute lifetime ends.
    ttl = min(token_ttl(services, resource), family.expires_at - services.clock())
    scope = rotation.scope if resource is None else scope_for(rotation.scope, [resource])
    access = await services.mint(
        sub=family.user_id,
        client_id=client.client_id,
        scope=scope,
        sid=family.id,
        ttl=ttl,
        roles=rotation.roles,
        audience=None if resource is None else resource.resource,
        # Stored at the code exchange, returned by every rotation: a refresh keeps them.
        signed_in=None
        if family.amr is None or family.auth_time is None
        else (family.amr, family.auth_time),
        jkt=jkt,
    )
    return TokenResponse(
        access.token,
        ttl,
        scope,
        refresh_token=rotation.refresh_token,
        refresh_expires_at=rotation.expires_at,
        refresh_delivery=client.refresh_delivery,
        session_expires_at=family.expires_at,
        token_type=token_type(jkt),
    )


def token_type(jkt: str | None) -> str:
    return "Bearer" if jkt is None else "DPoP"


def required_field(fields: Fields, name: str) -> str:
    value = fields.get(name)
    if not value:
        raise InvalidRequest(f"{name} is required.")
    return value


async def resource_asked(services: Services, client: Client, fields: Fields) -> Resource | None:
    """The registered resource the token request names in `resource` (RFC 8707 §2), None
    when it names none; invalid_target for a malformed, unknown or repeated one, or one the
    client may not name (its `resources`)."""
    return await resource_of(services, client, requested_resource(fields.get("resource")))


async def resource_of(
    services: Services, client: Client, identifier: str | None
) -> Resource | None:
    """The registered resource a grant chose (None: the default audience); invalid_target
    when it was deleted since it was granted, or taken off the client's resources since."""
    if identifier is None:
        return None
    (resource,) = await registered(services.resources, [identifier], allowed=client.resources)
    return resource


async def resource_granted(
    services: Services, client: Client, wanted: Resource | None, granted: tuple[str, ...]
) -> Resource | None:
    """RFC 8707 §2.2: the resource of a code exchange's or refresh's token, among those the
    authorization named (`granted`): the one the request asked for (`wanted`), else the first
    named, else none (the default audience)."""
    asked = None if wanted is None else wanted.resource
    picked = chosen(asked, granted)
    return wanted if picked == asked else await resource_of(services, client, picked)


def token_ttl(services: Services, resource: Resource | None) -> int:
    """The access token's lifetime: the resource's, never past AUTHSERVER_ACCESS_TOKEN_TTL,
    which the revocation feed, the purge and key retirement count on as the longest."""
    ttl = services.settings.access_token_ttl
    return ttl if resource is None else min(ttl, resource.access_token_ttl)

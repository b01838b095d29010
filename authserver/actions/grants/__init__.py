"""The token endpoint's grants (RFC 6749 §4.1.3, §4.3, §4.4, §6), one module each:
what every grant reads (GrantRequest) and answers (TokenResponse)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from authserver.clients import Client, ClientCredentials
from authserver.errors import InvalidRequest
from authserver.services import Services
from authserver.tokens.refresh import Rotation


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


# A grant gets the client the request names as actions/token.issue looked it up (None: no such
# client, or none named), and authenticates it with clients.authenticate_named.
Grant = Callable[[Services, GrantRequest, Client | None], Awaitable[TokenResponse]]


async def with_refresh(services: Services, client: Client, rotation: Rotation) -> TokenResponse:
    family = rotation.family
    # An access token never outlives its session, so verifiers that only read the JWT stop
    # accepting it when the family's absolute lifetime ends.
    ttl = min(services.settings.access_token_ttl, family.expires_at - services.clock())
    access = await services.mint(
        sub=family.user_id,
        client_id=client.client_id,
        scope=rotation.scope,
        sid=family.id,
        ttl=ttl,
        roles=rotation.roles,
        # Stored at the code exchange, returned by every rotation: a refresh keeps them.
        signed_in=None
        if family.amr is None or family.auth_time is None
        else (family.amr, family.auth_time),
    )
    return TokenResponse(
        access.token,
        ttl,
        rotation.scope,
        refresh_token=rotation.refresh_token,
        refresh_expires_at=rotation.expires_at,
        refresh_delivery=client.refresh_delivery,
        session_expires_at=family.expires_at,
    )


def required_field(fields: Fields, name: str) -> str:
    value = fields.get(name)
    if not value:
        raise InvalidRequest(f"{name} is required.")
    return value

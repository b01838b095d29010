"""The refresh token grant (RFC 6749 §6): one rotation of the token's family."""

from __future__ import annotations

from authserver.actions.grants import (
    GrantRequest,
    TokenResponse,
    required_field,
    resource_asked,
    resource_granted,
    with_refresh,
)
from authserver.clients import Client, authenticate_named
from authserver.errors import UnauthorizedClient
from authserver.services import Services
from authserver.tokens.refresh import rotate
from authserver.tokens.scopes import parse_scope


async def refresh_token_grant(
    services: Services, request: GrantRequest, named: Client | None
) -> TokenResponse:
    credentials, fields = request.credentials, request.fields
    client = await authenticate_named(services.clients, credentials, named)
    # RFC 6749 §5.2, unauthorized_client: "The authenticated client is not authorized to use
    # this authorization grant type." This is this instance's memory of the client; the
    # rotating statement checks the grant again as it stands in the database.
    if "refresh_token" not in client.grant_types:
        raise UnauthorizedClient()
    presented = required_field(fields, "refresh_token")
    # RFC 8707 §2.2: a refresh may ask for a token for any one resource its authorization
    # named; one it did not is invalid_target, checked before the token is spent.
    # Unknown, or not the client's: invalid_target, nothing spent.
    wanted = await resource_asked(services, client, fields)
    settings = services.settings
    rotation = await rotate(
        services.families,
        presented,
        client_id=client.client_id,
        now=services.clock(),
        refresh_ttl=settings.refresh_token_ttl,
        grace=settings.refresh_reuse_grace,
        requested=parse_scope(fields.get("scope")),
        audit=services.audit,
        resource=None if wanted is None else wanted.resource,
        jkt=request.refresh_jkt(client),
        first_use=request.dpop_first_use,
    )
    resource = await resource_granted(services, client, wanted, rotation.family.resources)
    return await with_refresh(services, client, rotation, resource, request.dpop_jkt)

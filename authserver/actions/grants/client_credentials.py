"""The client credentials grant (RFC 6749 §4.4)."""

from __future__ import annotations

from authserver.actions.grants import (
    GrantRequest,
    TokenResponse,
    resource_asked,
    token_ttl,
    token_type,
)
from authserver.clients import Client, authenticate_named
from authserver.errors import UnauthorizedClient
from authserver.services import Services
from authserver.tokens.resources import scope_for
from authserver.tokens.scopes import grant, parse_scope


async def client_credentials_grant(
    services: Services, request: GrantRequest, named: Client | None
) -> TokenResponse:
    credentials, fields = request.credentials, request.fields
    client = await authenticate_named(services.clients, credentials, named)
    # RFC 6749 §4.4: the client credentials grant MUST only be used by confidential clients.
    if client.is_public or "client_credentials" not in client.grant_types:
        raise UnauthorizedClient()
    scope = grant(parse_scope(fields.get("scope")), client.scopes, None)
    resource = await resource_asked(services, client, fields)
    if resource is not None:
        scope = scope_for(scope, [resource])
    ttl = token_ttl(services, resource)
    # RFC 9068 §2.2: with no resource owner, sub is the client's own identifier.
    access = await services.mint(
        sub=client.client_id,
        client_id=client.client_id,
        scope=scope,
        sid=None,
        ttl=ttl,
        audience=None if resource is None else resource.resource,
        jkt=request.dpop_jkt,
    )
    return TokenResponse(access.token, ttl, scope, token_type=token_type(request.dpop_jkt))

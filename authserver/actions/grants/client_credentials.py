"""The client credentials grant (RFC 6749 §4.4)."""

from __future__ import annotations

from authserver.actions.grants import GrantRequest, TokenResponse
from authserver.clients import Client, authenticate_named
from authserver.errors import UnauthorizedClient
from authserver.services import Services
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
    # RFC 9068 §2.2: with no resource owner, sub is the client's own identifier.
    access = await services.mint(
        sub=client.client_id, client_id=client.client_id, scope=scope, sid=None
    )
    return TokenResponse(access.token, services.settings.access_token_ttl, scope)

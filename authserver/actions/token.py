"""POST /token's use case: the grant registry, found by the grant's wire name."""

from __future__ import annotations

from authserver.actions.grants import Grant, GrantRequest, TokenResponse
from authserver.actions.grants.authorization_code import authorization_code_grant
from authserver.actions.grants.client_credentials import client_credentials_grant
from authserver.actions.grants.password import password_grant
from authserver.actions.grants.refresh_token import refresh_token_grant
from authserver.errors import InvalidRequest, UnsupportedGrantType
from authserver.services import Services


async def issue(services: Services, request: GrantRequest) -> TokenResponse:
    grant_type = request.fields.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required.")
    handler = GRANTS.get(grant_type)
    if handler is None:
        raise UnsupportedGrantType()
    return await handler(services, request)


GRANTS: dict[str, Grant] = {
    "authorization_code": authorization_code_grant,
    "password": password_grant,
    "refresh_token": refresh_token_grant,
    "client_credentials": client_credentials_grant,
}

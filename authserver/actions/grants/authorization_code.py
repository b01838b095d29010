"""The authorization code grant's exchange (RFC 6749 §4.1.3), PKCE (RFC 7636) and
the OpenID Connect ID token."""

from __future__ import annotations

from dataclasses import replace

from authserver.accounts.profiles import identity_claims
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
from authserver.tokens.authorization_codes import redeem_code
from authserver.tokens.id_tokens import mint_id_token
from authserver.tokens.refresh import Rotation, hash_token
from authserver.tokens.resources import chosen
from authserver.tokens.scopes import OPENID


async def authorization_code_grant(
    services: Services, request: GrantRequest, named: Client | None
) -> TokenResponse:
    """RFC 6749 §4.1.3 with RFC 7636 §4.5: the code, its verifier, and the redirect URI when
    the authorization request named one. Every failure is the one invalid_grant."""
    fields = request.fields
    client = await authenticate_named(services.clients, request.credentials, named)
    if "authorization_code" not in client.grant_types:
        raise UnauthorizedClient()
    code = required_field(fields, "code")
    wanted = await resource_asked(services, client, fields)  # unknown: invalid_target
    if wanted is not None:
        # RFC 8707 §2.2: a resource the authorization did not name is invalid_target; told
        # before the code is spent, so the client may exchange it right.
        stored = await services.codes.find(hash_token(code))
        if stored and stored.used_at is None and stored.code.client_id == client.client_id:
            chosen(wanted.resource, stored.code.resources)
    settings = services.settings
    exchange = await redeem_code(
        services.codes,
        services.families,
        code,
        client_id=client.client_id,
        redirect_uri=fields.get("redirect_uri"),
        verifier=fields.get("code_verifier"),
        now=services.clock(),
        refresh_ttl=settings.refresh_token_ttl,
        session_ttl=settings.session_ttl,
        dpop_jkt=request.refresh_jkt(client),
        proof_jkt=request.dpop_jkt,
        first_use=request.dpop_first_use,
    )
    redeemed = exchange.code
    # The user as the statement that spent the code found them (enabled, and held against a
    # disable until the family was stored: a disable after it revokes the family): their
    # roles for the access token, their profile for the ID token.
    profile = exchange.profile
    rotation = Rotation(
        exchange.family,
        exchange.refresh_token,
        exchange.refresh_expires_at,
        redeemed.scope,
        profile.roles,
    )
    resource = await resource_granted(services, client, wanted, redeemed.resources)
    issued = await with_refresh(services, client, rotation, resource, request.dpop_jkt)
    scopes = redeemed.scope.split()
    if OPENID not in scopes:
        return issued
    # OpenID Connect Core §3.1.3.3: the token response carries an ID token.
    id_token = mint_id_token(
        await services.keys.current(),
        issuer=settings.issuer,
        client_id=client.client_id,
        sub=redeemed.user_id,
        now=services.clock(),
        auth_time=redeemed.auth_time,
        nonce=redeemed.nonce,
        access_token=issued.access_token,
        identity=identity_claims(exchange.username, profile, scopes),
        amr=redeemed.amr,
    )
    return replace(issued, id_token=id_token)

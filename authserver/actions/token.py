"""POST /token and POST /refresh: the grant registry, found by the grant's wire name."""

from __future__ import annotations

from dataclasses import replace

from authserver.actions.authorize import named_client
from authserver.actions.grants import Grant, GrantRequest, TokenResponse
from authserver.actions.grants.authorization_code import authorization_code_grant
from authserver.actions.grants.client_credentials import client_credentials_grant
from authserver.actions.grants.password import password_grant
from authserver.actions.grants.refresh_token import refresh_token_grant
from authserver.clients import Client, origin_allowed
from authserver.errors import (
    ForbiddenOrigin,
    InvalidDPoPProof,
    InvalidRequest,
    UnsupportedGrantType,
    UseDPoPNonce,
)
from authserver.services import Services
from authserver.tokens import dpop
from authserver.tokens.refresh import hash_token


async def issue(services: Services, request: GrantRequest) -> TokenResponse:
    grant_type = request.fields.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required.")
    handler = GRANTS.get(grant_type)
    if handler is None:
        raise UnsupportedGrantType()
    client_id = request.credentials.client_id
    # One lookup serves the Origin rule and the grant's client authentication.
    named = await named_client(services, client_id, address=request.address) if client_id else None
    if grant_type in COOKIE_GRANTS:
        _require_allowed_origin(services, request, named)
    request = await _with_dpop(services, request, named)
    return await handler(services, request, named)


async def _with_dpop(
    services: Services, request: GrantRequest, client: Client | None
) -> GrantRequest:
    """RFC 9449 §5: with a DPoP header, every grant binds its tokens to the proof's key (the
    proof checked as §4.3 says, its jti spent on every instance); a client registered with
    `dpop_bound_access_tokens` must send one."""
    if request.dpop is None:
        if client is not None and client.dpop_bound_access_tokens:
            raise InvalidDPoPProof("A DPoP proof is required.", detail="client requires DPoP")
        return request
    try:
        proof = await dpop.check_proof(
            services.dpop_proofs,
            request.dpop,
            method="POST",
            url=request.dpop_url,
            now=services.clock(),
            nonces=services.dpop_nonces,
        )
    except dpop.UseDPoPNonce as exc:
        raise UseDPoPNonce(detail=exc.detail) from None
    except dpop.InvalidDPoPProof as exc:
        raise InvalidDPoPProof(detail=exc.detail) from None
    return replace(request, dpop_jkt=proof.jkt)


# The grants whose answer may set the refresh cookie (a client with refresh_delivery cookie).
COOKIE_GRANTS = frozenset({"password", "refresh_token", "authorization_code"})


def _require_allowed_origin(
    services: Services, request: GrantRequest, client: Client | None
) -> None:
    """Login CSRF: a page on any site could make the browser log in (or refresh) with the
    attacker's own credentials, and the cookie set in the answer would silently put the victim
    in the attacker's account. So a request that would set the cookie needs an allowed Origin
    too, checked before the grant runs."""
    if client is None or client.refresh_delivery != "cookie":
        return
    if not origin_allowed(client, request.origin, services.settings.allowed_origins):
        detail = f"refresh cookie endpoint called from origin {request.origin!r}"
        raise ForbiddenOrigin(detail=detail)


async def require_cookie_origin(services: Services, cookie: str, origin: str | None) -> None:
    """The refresh cookie rides along with any request the browser makes, whoever's page made
    it; the Origin header is set by the browser and a page cannot forge it. So a request
    carrying the cookie (POST /refresh, /logout) must come from an origin allowed for the
    cookie's own client (API.md, "Clients, added"): not merely for the client the request
    names, or a page allowed for one client could end another's sessions."""
    everyone = services.settings.allowed_origins
    if origin is not None and origin in everyone:
        return  # the settings' origins serve every client: no lookup on the common path
    client = None
    if origin is not None:
        state = await services.families.find(hash_token(cookie))
        if state is not None:
            client = await services.clients.get(state.family.client_id)
    if not origin_allowed(client, origin, everyone):
        raise ForbiddenOrigin(detail=f"refresh cookie endpoint called from origin {origin!r}")


GRANTS: dict[str, Grant] = {
    "authorization_code": authorization_code_grant,
    "password": password_grant,
    "refresh_token": refresh_token_grant,
    "client_credentials": client_credentials_grant,
}

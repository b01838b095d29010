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
    OAuthError,
    UnsupportedGrantType,
    UseDPoPNonce,
)
from authserver.services import Services
from authserver.tokens import dpop
from authserver.tokens.refresh import parse_refresh_token


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
    request = await _with_dpop(services, request, named, fold=grant_type in FOLDED_PROOF)
    first_use = request.dpop_first_use
    if first_use is None:
        return await handler(services, request, named)
    try:
        return await handler(services, request, named)
    except dpop.InvalidDPoPProof as exc:  # the grant's write found the jti used
        raise InvalidDPoPProof(detail=exc.detail) from None
    except OAuthError:
        if not first_use.recorded:
            # Refused before its write (the client, the scope, the verifier): the proof is
            # spent all the same, as it would have been before the grant ran.
            await _record_apart(services, first_use)
        raise


# The grants that record the proof's jti in their own write (one statement on Postgres): the
# refresh's rotation and the code exchange. The others write nothing (client_credentials) or
# start a family the jti check must precede (password): theirs is recorded before they run.
FOLDED_PROOF = frozenset({"refresh_token", "authorization_code"})


async def _with_dpop(
    services: Services, request: GrantRequest, client: Client | None, *, fold: bool
) -> GrantRequest:
    """RFC 9449 §5: with a DPoP header, every grant binds its tokens to the proof's key (the
    proof checked as §4.3 says, its jti spent on every instance: now, or with `fold` by the
    grant's own write); a client registered with `dpop_bound_access_tokens` must send one."""
    if request.dpop is None:
        if client is not None and client.dpop_bound_access_tokens:
            raise InvalidDPoPProof("A DPoP proof is required.", detail="client requires DPoP")
        return request
    now = services.clock()
    try:
        proof = dpop.checked_proof(
            request.dpop,
            method="POST",
            url=request.dpop_url,
            now=now,
            nonces=services.dpop_nonces,
        )
    except dpop.UseDPoPNonce as exc:
        raise UseDPoPNonce(detail=exc.detail) from None
    except dpop.InvalidDPoPProof as exc:
        raise InvalidDPoPProof(detail=exc.detail) from None
    first_use = dpop.FirstUse(proof.replay_key, proof.expires_at, now)
    if not fold:
        await _record_apart(services, first_use)
        return replace(request, dpop_jkt=proof.jkt)
    return replace(request, dpop_jkt=proof.jkt, dpop_first_use=first_use)


async def _record_apart(services: Services, first_use: dpop.FirstUse) -> None:
    """The jti in a transaction of its own; invalid_dpop_proof when it was used already."""
    if not await services.dpop_proofs.first_use(first_use.key, first_use.expires_at, first_use.now):
        raise InvalidDPoPProof(detail=dpop.replayed().detail) from None


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
        state = await services.families.find(parse_refresh_token(cookie))
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

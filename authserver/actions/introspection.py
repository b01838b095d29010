"""Is a token live? For bearer-protected endpoints and for RFC 7662 introspection."""

from __future__ import annotations

from typing import Any

from authserver.clients import ClientCredentials, authenticate_client
from authserver.errors import (
    DPoPChallenge,
    InvalidDPoPProofAtResource,
    InvalidToken,
    UseDPoPNonceAtResource,
)
from authserver.services import Services
from authserver.tokens import dpop
from authserver.tokens.denylist import live_claims
from authserver.tokens.refresh import parse_refresh_token

INACTIVE: dict[str, Any] = {"active": False}


async def live_access_claims(
    services: Services, token: str, *, any_audience: bool = False
) -> dict[str, Any] | None:
    """The claims of a valid, unrevoked access token of ours (denylist.py); None otherwise.
    For the default audience only, unless `any_audience` (a registered resource's token too)."""
    verify = services.verify_any_audience if any_audience else services.verify
    claims = await live_claims(
        token, verify=verify, denylist=services.denylist, now=services.clock()
    )
    if claims is None or claims["aud"] == services.settings.audience:
        return claims
    # A resource's token while the resource is registered: once deleted, none is live here.
    return claims if await services.resources.get(claims["aud"]) is not None else None


async def authenticate_bearer(
    services: Services, token: str | None, presented: dpop.DPoPRequest | None = None
) -> dict[str, Any]:
    """RFC 6750: the claims of the bearer token, or InvalidToken (401). With `presented` (the
    token came as `Authorization: DPoP`), RFC 9449 §7.1: the token must be bound to the key of
    a valid proof that carries its hash (`ath`)."""
    claims = await live_access_claims(services, token) if token else None
    if claims is None:
        raise DPoPChallenge() if presented is not None else InvalidToken()
    assert token is not None
    await require_proof_of_key(services, claims, token, presented)
    return claims


async def require_proof_of_key(
    services: Services, claims: dict[str, Any], token: str, presented: dpop.DPoPRequest | None
) -> None:
    """RFC 9449 §7: a DPoP-bound token (`cnf.jkt`) only with the DPoP scheme and a valid
    proof of its key carrying the token's hash; the DPoP scheme only with a bound token."""
    cnf = claims.get("cnf")
    bound = cnf.get("jkt") if isinstance(cnf, dict) else None
    if presented is None:
        if bound is not None:
            # RFC 9449 §7.2: a DPoP-bound token presented as a bearer token is refused, or
            # the binding would mean nothing.
            raise DPoPChallenge(detail="DPoP-bound token presented as Bearer")
        return
    if bound is None:
        raise DPoPChallenge(detail="unbound token presented with the DPoP scheme")
    try:
        proof = await dpop.check_proof(
            services.dpop_proofs,
            presented.proof,
            method=presented.method,
            url=presented.url,
            now=services.clock(),
            access_token=token,
            nonces=services.dpop_nonces,
        )
    except dpop.UseDPoPNonce as exc:
        raise UseDPoPNonceAtResource(detail=exc.detail) from None
    except dpop.InvalidDPoPProof as exc:
        raise InvalidDPoPProofAtResource(detail=exc.detail) from None
    # RFC 9449 §7.1: "the public key to which the access token is bound" must be the proof's.
    if proof.jkt != bound:
        raise InvalidDPoPProofAtResource(detail="proof key is not the token's cnf.jkt")


async def introspect(
    services: Services, credentials: ClientCredentials, token: str, hint: str | None
) -> dict[str, Any]:
    # RFC 7662 §2.1: the endpoint MUST require some form of authorization; we take the
    # credentials of a confidential client (a resource server).
    client = await authenticate_client(services.clients, credentials, require_confidential=True)
    if token.count(".") == 2:
        # Every resource server may ask, about tokens for it too (RFC 8707): `aud` says which.
        claims = await live_access_claims(services, token, any_audience=True)
        if claims is None:
            return INACTIVE
        # RFC 9449 §6.2: a bound token's `cnf` is in the claims; its type is DPoP.
        token_type = "DPoP" if "cnf" in claims else "Bearer"
        return {"active": True, "token_type": token_type, "token_use": "access_token", **claims}
    # Refresh tokens are the holder's secret: only the client they were issued to may ask.
    state = await services.families.find(parse_refresh_token(token))
    now = services.clock()
    if (
        state is None
        or state.family.client_id != client.client_id
        or state.spent_at is not None
        or state.expires_at <= now
        or state.family.revoked_at is not None
        or state.family.expires_at <= now
    ):
        return INACTIVE
    family = state.family
    return {
        "active": True,
        "token_type": "refresh_token",
        "token_use": "refresh_token",
        "iss": services.settings.issuer,
        "sub": family.user_id,
        "client_id": family.client_id,
        "scope": family.scope,
        "sid": family.id,
        "iat": state.issued_at,
        "exp": state.expires_at,
    }

"""ID tokens (OpenID Connect Core §2, §3.1.3.6-7): who signed in, for which client, and when.

Signed with the active key, like access tokens, but with `typ: JWT` and the client as audience,
so neither can be passed off as the other. `at_hash` binds the ID token to the access token
issued with it: the left half of the hash of its ASCII octets (OpenID Connect Core §3.1.3.6),
with the hash API.md fixes for each algorithm: SHA-256 for RS256, SHA-512 for EdDSA (Ed25519).
"""

from __future__ import annotations

import hashlib
from typing import Any

import jwt

from authserver.accounts.login_sessions import PASSWORD_ONLY, acr_of
from authserver.keys.ring import KeyRing
from authserver.tokens.jws import b64url, compact_jws

ID_TOKEN_TTL = 300  # seconds (API.md)


def at_hash(access_token: str, alg: str) -> str:
    digest = (hashlib.sha512 if alg == "EdDSA" else hashlib.sha256)(
        access_token.encode("ascii")
    ).digest()
    return b64url(digest[: len(digest) // 2])


def mint_id_token(
    ring: KeyRing,
    *,
    issuer: str,
    client_id: str,
    sub: str,
    now: int,
    auth_time: int,
    nonce: str | None,
    access_token: str,
    identity: dict[str, Any] | None = None,
    amr: tuple[str, ...] = PASSWORD_ONLY,
) -> str:
    """`identity`: the claims of the granted identity scopes (profiles.identity_claims); Core
    §5.4 lets them ride in the ID token when no access token is meant for /userinfo, and the
    client libraries read them there."""
    key = ring.signing
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": client_id,
        "exp": now + ID_TOKEN_TTL,
        "iat": now,
        "auth_time": auth_time,
        "azp": client_id,
        # RFC 8176 methods; `acr` as API.md names the levels: `mfa` with two factors, else `pwd`.
        "amr": list(amr),
        "acr": acr_of(amr),
        "at_hash": at_hash(access_token, key.alg),
        **(identity or {}),
    }
    if nonce is not None:
        # OpenID Connect Core §3.1.3.7: the client MUST check it is the one it sent.
        claims["nonce"] = nonce
    return compact_jws("JWT", claims, key)


def hinted_client(ring: KeyRing, token: str, issuer: str) -> tuple[str, str] | None:
    """(client_id, sub) of an ID token we signed, expired or not: an /end-session
    `id_token_hint` (RP-Initiated Logout §2: the OP need not be the one to reject an expired
    one). None for anything else."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("typ") != "JWT":  # an access token (at+jwt) is no hint
            return None
        kid = header.get("kid")
        key = ring.verification.get(kid) if isinstance(kid, str) else None
        if key is None:
            return None
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=[key.alg],
            issuer=issuer,
            options={"verify_exp": False, "verify_aud": False, "require": ["aud", "sub"]},
        )
    except jwt.PyJWTError:
        return None
    aud, sub = claims.get("aud"), claims.get("sub")
    if not isinstance(aud, str) or not isinstance(sub, str):
        return None
    return aud, sub

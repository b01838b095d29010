"""Access tokens (RFC 9068): minting, and checking the ones presented back to us.

PyJWT checks signature, iss and aud; it does not check `typ`, reject duplicate JSON members
or bound the token's size, and it would let a header choose the key (RFC 8725 §3.1, §3.10).
So `verify_access_token` first runs the verifier kit's keyless checks (authserver_verify.jose,
the same code services run); it checks exp and iat itself, against the server's clock rather
than PyJWT's wall clock.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt

from authserver.accounts.login_sessions import acr_of
from authserver.inputs import storable
from authserver.keys.ring import KeyRing
from authserver.tokens.jws import compact_jws
from authserver_verify import jose
from authserver_verify.errors import InvalidToken


class TokenRejected(Exception):
    """The token is not one of ours, or no longer valid; `reason` is for logs only."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class AccessToken:
    token: str
    claims: dict[str, Any]


def mint_access_token(
    ring: KeyRing,
    *,
    issuer: str,
    audience: str,
    ttl: int,
    now: int,
    sub: str,
    client_id: str,
    scope: str,
    sid: str | None,
    roles: tuple[str, ...] = (),
    signed_in: tuple[tuple[str, ...], int] | None = None,
    jkt: str | None = None,
) -> AccessToken:
    """`signed_in`: (amr, auth_time) of the browser sign-in behind the token, if any."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": sub,
        "aud": audience,
        "exp": now + ttl,
        "iat": now,
        # RFC 9068 §2.2 asks for a unique jti; 128 random bits make collisions negligible.
        "jti": secrets.token_urlsafe(16),
        "client_id": client_id,
        "scope": scope,
    }
    if sid is not None:
        claims["sid"] = sid
    if roles:
        # RFC 9068 §2.2.3.1: the roles of the user, as SCIM's `roles` attribute (RFC 7643
        # §4.1.2), so resource servers can decide on them without a lookup.
        claims["roles"] = list(roles)
    if signed_in is not None:
        # RFC 9068 §2.2.1: auth_time, acr and amr as OpenID Connect Core §2 defines them, so a
        # service can ask for a stronger or fresher sign-in (RFC 9470) from the token alone.
        amr, auth_time = signed_in
        claims |= {"auth_time": auth_time, "acr": acr_of(amr), "amr": list(amr)}
    if jkt is not None:
        # RFC 9449 §6.1: "the JWT ... MUST include a cnf (confirmation) claim ... with a jkt
        # member", the SHA-256 thumbprint of the DPoP public key.
        claims["cnf"] = {"jkt": jkt}
    return AccessToken(compact_jws("at+jwt", claims, ring.signing), claims)


def verify_access_token(
    token: str,
    ring: KeyRing,
    *,
    issuer: str,
    audience: str | None,
    leeway: int,
    now: int | None = None,
) -> dict[str, Any]:
    """`now` is the clock the tokens were minted with (default: the wall clock); exp and iat
    are checked against it here, because PyJWT only knows the wall clock. `audience` None:
    any `aud` (a string) this server minted, the signature being ours."""
    try:
        # Size, compact JWS, base64url, JSON objects without duplicate members, no header
        # naming a key, an accepted alg, a kid, typ at+jwt: as every service checks it.
        jws = jose.parse_access_token(token)
    except InvalidToken as exc:
        raise TokenRejected(exc.detail or type(exc).__name__) from None
    key = ring.verification.get(jws.kid)
    if key is None:
        raise TokenRejected("unknown kid")
    if key.alg != jws.alg:
        raise TokenRejected("alg does not match the key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.public_key,
            algorithms=[key.alg],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={
                "require": ["exp", "iat", "iss", "aud", "sub", "jti", "client_id"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_aud": audience is not None,
            },
        )
    except jwt.PyJWTError as exc:
        raise TokenRejected(type(exc).__name__) from None
    if not isinstance(claims["aud"], str):
        raise TokenRejected("aud must be one string")  # we mint one audience per token
    _check_times(claims, int(time.time()) if now is None else now, leeway)
    # Each of these goes on to a database query (denylist, session, revocation): a value no
    # store can hold makes the token invalid, not the query a 500.
    for name in ("jti", "sub", "client_id", "sid"):
        value = claims.get(name)
        if name == "sid" and value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > 256 or not storable(value):
            raise TokenRejected(f"{name} must be a short string of storable characters")
    return claims


def signing_kid(token: str) -> str:
    """The kid in a token's header; only for a token `verify_access_token` accepted."""
    kid = jose.json_object(token.split(".")[0]).get("kid")
    return kid if isinstance(kid, str) else ""


def _check_times(claims: dict[str, Any], now: int, leeway: int) -> None:
    exp, iat = claims["exp"], claims["iat"]
    if not all(isinstance(t, int | float) and not isinstance(t, bool) for t in (exp, iat)):
        raise TokenRejected("exp and iat must be NumericDate")
    if exp <= now - leeway:
        raise TokenRejected("expired")
    if iat > now + leeway:
        raise TokenRejected("issued in the future")

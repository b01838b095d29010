"""What the kit raises. `str(exc)` is a fixed public sentence; `exc.detail`, when set, says
which check failed, for logs. Neither ever carries the token or any part of it.

    VerificationError
    ├── InvalidToken                the token must be refused (401 invalid_token)
    │   ├── MalformedToken          not a compact JWS of JSON objects, too large, duplicate members
    │   ├── UnacceptableHeader      alg, typ, or a header that names its own key (jku, jwk, ...)
    │   ├── UnknownKey              no key of the issuer has this kid (after one refetch)
    │   ├── BadSignature
    │   ├── Expired
    │   ├── NotYetValid             nbf or iat in the future
    │   ├── WrongIssuer
    │   ├── WrongAudience
    │   ├── MissingClaim            a required claim is absent or of the wrong type
    │   └── Revoked                 its session or jti is on the revocation feed (or inactive
    │                               at the issuer's /introspect)
    ├── KeySetUnavailable           no key set could be fetched yet: not the token's fault (503)
    └── IntrospectionUnavailable    the issuer's /introspect cannot be asked (503)
"""

from __future__ import annotations

__all__ = [
    "BadSignature",
    "Expired",
    "IntrospectionUnavailable",
    "InvalidToken",
    "KeySetUnavailable",
    "MalformedToken",
    "MissingClaim",
    "NotYetValid",
    "Revoked",
    "UnacceptableHeader",
    "UnknownKey",
    "VerificationError",
    "WrongAudience",
    "WrongIssuer",
]


class VerificationError(Exception):
    """Base of everything the kit raises; the message is a fixed, token-free sentence."""

    message = "The token could not be verified."

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        super().__init__(message or self.message)
        self.detail = detail


class InvalidToken(VerificationError):
    message = "The token is invalid."


class MalformedToken(InvalidToken):
    message = "The token is not a well-formed JWS."


class UnacceptableHeader(InvalidToken):
    message = "The token's header is not acceptable."


class UnknownKey(InvalidToken):
    message = "The token names a key the issuer does not publish."


class BadSignature(InvalidToken):
    message = "The token's signature does not verify."


class Expired(InvalidToken):
    message = "The token has expired."


class NotYetValid(InvalidToken):
    message = "The token is not valid yet."


class WrongIssuer(InvalidToken):
    message = "The token was issued by another issuer."


class WrongAudience(InvalidToken):
    message = "The token is meant for another audience."


class MissingClaim(InvalidToken):
    message = "A required claim is missing or malformed."


class Revoked(InvalidToken):
    message = "The token has been revoked."


class KeySetUnavailable(VerificationError):
    message = "The issuer's key set is unavailable."


class IntrospectionUnavailable(VerificationError):
    message = "The issuer's introspection endpoint is unavailable."

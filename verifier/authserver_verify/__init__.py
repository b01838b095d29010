"""Offline verification of authserver access tokens, for the services that accept them.

    from authserver_verify import InvalidToken, Verifier

    verifier = Verifier("https://auth.example", "my-api")
    claims = verifier.verify(token)            # or: await verifier.verify_async(token)

`authserver_verify.starlette` (extra `starlette`) adds bearer middleware and scope checks;
`ProtectedResource` declares the service's resource (RFC 9728 metadata, its audience).
"""

from __future__ import annotations

from authserver_verify.errors import (
    BadSignature,
    Expired,
    IntrospectionUnavailable,
    InvalidToken,
    KeySetUnavailable,
    MalformedToken,
    MissingClaim,
    NotYetValid,
    Revoked,
    UnacceptableHeader,
    UnknownKey,
    VerificationError,
    WrongAudience,
    WrongIssuer,
)
from authserver_verify.introspect import Introspector
from authserver_verify.resource import ProtectedResource
from authserver_verify.verifier import Fetch, Fetched, Verifier, urllib_fetch

__version__ = "0.1.0"

__all__ = [
    "BadSignature",
    "Expired",
    "Fetch",
    "Fetched",
    "IntrospectionUnavailable",
    "Introspector",
    "InvalidToken",
    "KeySetUnavailable",
    "MalformedToken",
    "MissingClaim",
    "NotYetValid",
    "ProtectedResource",
    "Revoked",
    "UnacceptableHeader",
    "UnknownKey",
    "VerificationError",
    "Verifier",
    "WrongAudience",
    "WrongIssuer",
    "urllib_fetch",
]

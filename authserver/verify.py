"""The verifier kit under its old name: `authserver_verify` (distribution `authserver-verify`,
in verifier/) is where it lives; services should import it from there. Kept so code written
against `from authserver.verify import Verifier` keeps working inside the server's venv."""

from __future__ import annotations

from authserver_verify.errors import (
    BadSignature,
    Expired,
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
from authserver_verify.jose import FORBIDDEN_HEADERS, MAX_TOKEN_BYTES
from authserver_verify.verifier import (
    DEFAULT_REQUIRED,
    MAX_DOCUMENT_BYTES,
    Fetch,
    Fetched,
    PublicKey,
    Verifier,
    parse_jwks,
    urllib_fetch,
)

__all__ = [
    "DEFAULT_REQUIRED",
    "FORBIDDEN_HEADERS",
    "MAX_DOCUMENT_BYTES",
    "MAX_TOKEN_BYTES",
    "BadSignature",
    "Expired",
    "Fetch",
    "Fetched",
    "InvalidToken",
    "KeySetUnavailable",
    "MalformedToken",
    "MissingClaim",
    "NotYetValid",
    "PublicKey",
    "Revoked",
    "UnacceptableHeader",
    "UnknownKey",
    "VerificationError",
    "Verifier",
    "WrongAudience",
    "WrongIssuer",
    "parse_jwks",
    "urllib_fetch",
]

"""The checks on an access token that need no key (RFC 7515 compact JWS, RFC 8725, RFC 9068):
one copy, run by the Verifier in services and by the server on the tokens presented back to it.

    token = parse_access_token(text)     # MalformedToken or UnacceptableHeader, with a detail
    token.header["kid"], token.claims, token.signing_input, token.signature

Nothing here checks a signature or a claim's value: that needs the issuer's key and policy.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from typing import Any

from authserver_verify.errors import MalformedToken, UnacceptableHeader

__all__ = [
    "ACCEPTED_ALGS",
    "ACCESS_TOKEN_TYPES",
    "FORBIDDEN_HEADERS",
    "KEY_TYPES",
    "MAX_TOKEN_BYTES",
    "CompactJWS",
    "check_header",
    "check_size",
    "json_object",
    "parse_access_token",
    "reject_duplicate_members",
    "split",
]

MAX_TOKEN_BYTES = 8192
# RFC 8725 §3.1: the verifier MUST NOT let the token choose the algorithm; we accept only
# these, each only from a key of its type (the `kty` here) that declares it as its `alg`.
KEY_TYPES = {"RS256": "RSA", "EdDSA": "OKP"}
ACCEPTED_ALGS = frozenset(KEY_TYPES)
# RFC 8725 §3.10: headers that name a key; RFC 7515 §4.1.11: a `crit` the recipient does not
# understand makes the JWS invalid, and we implement no extension.
FORBIDDEN_HEADERS = frozenset({"jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit"})
# RFC 9068 §4: resource servers MUST verify that the typ header value is "at+jwt" or
# "application/at+jwt" and reject tokens carrying any other value.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})

_TO_STANDARD = str.maketrans("-_", "+/")
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@dataclass(frozen=True, slots=True)
class CompactJWS:
    """A token that passed every check here: its header names an accepted `alg` and a `kid`."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes  # ASCII BASE64URL(header) "." BASE64URL(payload), as signed
    signature: bytes

    @property
    def alg(self) -> str:
        alg: str = self.header["alg"]
        return alg

    @property
    def kid(self) -> str:
        kid: str = self.header["kid"]
        return kid


def parse_access_token(token: str) -> CompactJWS:
    """Size, three base64url segments, header and payload JSON objects without duplicate
    members, and an acceptable header (`check_header`)."""
    check_size(token)
    header_b64, payload_b64, signature_b64 = split(token)
    header = json_object(header_b64)
    check_header(header)
    claims = json_object(payload_b64)
    return CompactJWS(
        header, claims, f"{header_b64}.{payload_b64}".encode("ascii"), _b64decode(signature_b64)
    )


def check_size(token: str) -> None:
    """Before anything else is done with it, hashing included."""
    if not isinstance(token, str):  # from a caller without type checks
        raise MalformedToken(detail="not a string")
    if len(token) > MAX_TOKEN_BYTES:
        raise MalformedToken(detail="too large")


def split(token: str) -> tuple[str, str, str]:
    """RFC 7515 §7.1: three non-empty segments of the base64url alphabet, without padding."""
    parts = token.split(".")
    if len(parts) != 3 or not all(part and _B64URL.issuperset(part.encode()) for part in parts):
        raise MalformedToken(detail="not three base64url segments")
    return parts[0], parts[1], parts[2]


def check_header(header: dict[str, Any]) -> None:
    """No header that names a key or demands an extension; an accepted `alg`; a string `kid`;
    `typ` at+jwt."""
    forbidden = FORBIDDEN_HEADERS.intersection(header)
    if forbidden:
        raise UnacceptableHeader(detail=f"forbidden header {', '.join(sorted(forbidden))}")
    if header.get("alg") not in ACCEPTED_ALGS:
        raise UnacceptableHeader(detail="alg not accepted")
    if not isinstance(header.get("kid"), str):
        raise UnacceptableHeader(detail="no kid")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
        raise UnacceptableHeader(detail="typ is not at+jwt")


def json_object(segment: str) -> dict[str, Any]:
    """A base64url segment holding a UTF-8 JSON object that repeats no member."""
    try:
        value = _DECODER.decode(_b64decode(segment).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedToken(detail="segment is not base64url UTF-8 JSON") from None
    if not isinstance(value, dict):
        raise MalformedToken(detail="segment is not a JSON object")
    return value


def reject_duplicate_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A json `object_pairs_hook`: RFC 7515 §5.2 and RFC 8259 §4 leave duplicate members
    undefined and parsers disagree on which one wins, so we refuse them (ValueError)."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


# One decoder for every token: json.loads(..., object_pairs_hook=...) builds a new JSONDecoder
# per call, which showed up in the cold-path profile (bench/verify.py).
_DECODER = json.JSONDecoder(object_pairs_hook=reject_duplicate_members)


def _b64decode(segment: str) -> bytes:
    # `split` has checked the alphabet: straight to binascii, without base64's wrappers.
    try:
        return binascii.a2b_base64(
            (segment + "=" * (-len(segment) % 4)).translate(_TO_STANDARD), strict_mode=True
        )
    except (binascii.Error, ValueError):
        raise MalformedToken(detail="segment is not base64url") from None

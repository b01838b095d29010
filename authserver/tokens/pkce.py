"""PKCE (RFC 7636): the challenge an /authorize request carries, and the verifier that answers it.

Only S256 is accepted, from every client (RFC 9700 §2.1.1): `plain` would hand the verifier to
whoever reads the authorization request, which is the very thing PKCE defends against.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from authserver.errors import InvalidRequest

S256 = "S256"
# RFC 7636 §4.1: code-verifier = 43*128unreserved, unreserved = ALPHA / DIGIT / "-" / "." /
# "_" / "~". The challenge has the same alphabet and bounds (§4.2, API.md).
_UNRESERVED = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def check_challenge(challenge: str | None, method: str | None) -> str:
    """The challenge, or InvalidRequest. RFC 7636 §4.4.1: if the server requires PKCE and the
    client does not send the code_challenge, the server MUST return invalid_request."""
    if not challenge:
        raise InvalidRequest("code_challenge is required (PKCE with S256).")
    if method != S256:
        raise InvalidRequest("code_challenge_method must be S256.")
    if not _UNRESERVED.fullmatch(challenge):
        raise InvalidRequest("code_challenge must be 43 to 128 unreserved characters.")
    return challenge


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verifier_well_formed(verifier: str | None) -> bool:
    """RFC 7636 §4.1: 43 to 128 unreserved characters."""
    return bool(verifier) and _UNRESERVED.fullmatch(verifier or "") is not None


def verifier_matches(verifier: str | None, challenge: str) -> bool:
    """RFC 7636 §4.6, compared in constant time."""
    if not verifier_well_formed(verifier):
        return False
    assert verifier is not None
    return hmac.compare_digest(s256(verifier), challenge)

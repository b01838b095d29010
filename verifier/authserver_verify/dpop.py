"""DPoP proofs (RFC 9449): one copy of the checks, run by the server at /token and /userinfo and
by services in front of their APIs.

    proof = check_proof(header_value, method="POST", url="https://auth.example/token")
    proof.jkt                  # RFC 7638 thumbprint of the proof's key: what `cnf.jkt` binds
    if not replays.first_use(proof.replay_key, proof.expires_at): refuse

`check_proof` runs every check of §4.3 that needs no storage; the one that does (a `jti` seen
before) is the caller's: the server keeps a table shared by its instances, a service the bounded
`ReplayCache` here. `InvalidDPoPProof.error` is the OAuth error code (§5, §7.1).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from authserver_verify.errors import MalformedToken, VerificationError
from authserver_verify.jose import json_object, split

__all__ = [
    "DEFAULT_ALGS",
    "MAX_JTI_CHARS",
    "MAX_JWK_CHARS",
    "MAX_PROOF_CHARS",
    "NONCE_WINDOW_SECONDS",
    "SUPPORTED_ALGS",
    "WINDOW_SECONDS",
    "InvalidDPoPProof",
    "Nonces",
    "Proof",
    "ReplayCache",
    "UseDPoPNonce",
    "access_token_hash",
    "check_proof",
    "jwk_thumbprint",
    "normalize_htu",
    "one_proof",
]

# §4.3: "the JWS algorithm ... is a supported asymmetric algorithm" and "MUST NOT be none or
# an identifier for a symmetric algorithm (MAC)". Each alg only with a key of its type.
SUPPORTED_ALGS = frozenset({"ES256", "EdDSA", "RS256"})
DEFAULT_ALGS = frozenset({"ES256", "EdDSA"})
_KEY_MEMBERS = {"ES256": ("EC", ("crv", "x", "y")), "EdDSA": ("OKP", ("crv", "x")),
                "RS256": ("RSA", ("e", "n"))}  # fmt: skip
# §4.3: "the jwk JOSE Header Parameter does not contain a private key". Every private member
# of RFC 7518 §6 and RFC 8037 §2, and `k` of a symmetric key.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# Bounds before any work: a 4096-bit RSA key is ~720 characters of JWK.
MAX_PROOF_CHARS = 4096
MAX_JWK_CHARS = 1024
MAX_JTI_CHARS = 128
WINDOW_SECONDS = 60
# Clock skew allowed for an `iat` ahead of our clock; beyond it the proof is pre-generated.
FUTURE_LEEWAY_SECONDS = 5
# Server nonces (§8, §9) are made per window of this many seconds; the current and the previous
# window's are accepted, so a nonce is good for 60 to 120 s after it was handed out.
NONCE_WINDOW_SECONDS = 60
_NONCE_TAG_BYTES = 16
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")


class InvalidDPoPProof(VerificationError):
    message = "The DPoP proof is invalid."
    error = "invalid_dpop_proof"


class UseDPoPNonce(InvalidDPoPProof):
    message = "The DPoP proof must carry the server's nonce."
    error = "use_dpop_nonce"


@dataclass(frozen=True, slots=True)
class Proof:
    """A proof that passed `check_proof`."""

    jkt: str  # RFC 7638 thumbprint of `jwk`
    jti: str
    iat: int
    jwk: dict[str, Any]
    claims: dict[str, Any]
    window: int

    @property
    def replay_key(self) -> str:
        """What a replay store keeps: fixed length, and one key's `jti` cannot spend another's."""
        digest = hashlib.sha256(f"{self.jkt}.{self.jti}".encode()).digest()
        return _b64(digest)

    @property
    def expires_at(self) -> int:
        """After this the proof's `iat` is out of the window anyway: the store may forget it."""
        return self.iat + self.window + FUTURE_LEEWAY_SECONDS


def check_proof(
    proof: str | None,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    algs: Iterable[str] = DEFAULT_ALGS,
    window: int = WINDOW_SECONDS,
    nonce: Callable[[str], bool] | None = None,
    now: float | None = None,
) -> Proof:
    """RFC 9449 §4.3 steps 1-12 but for the `jti` store. `url` is the request's URL as the
    client addressed it (the issuer's, not an instance's); `access_token` when the proof
    comes with one (a resource request: `ath` is then required); `nonce`, when the server
    demands nonces, says whether the proof's nonce is one it issued."""
    # §4.3 step 1: "there is not more than one DPoP HTTP request header field" is the
    # caller's (it sees the headers); a value that is not a JWT fails here.
    if not isinstance(proof, str) or not proof:
        raise InvalidDPoPProof(detail="no proof")
    if len(proof) > MAX_PROOF_CHARS:
        raise InvalidDPoPProof(detail="proof too large")
    try:
        header_b64, payload_b64, signature_b64 = split(proof)
        header = json_object(header_b64)
        claims = json_object(payload_b64)
        signature = _b64decode(signature_b64)
    except MalformedToken as exc:
        raise InvalidDPoPProof(detail=f"not a JWT: {exc.detail}") from None
    # Step 4: "the typ JOSE Header Parameter has the value dpop+jwt".
    if header.get("typ") != "dpop+jwt":
        raise InvalidDPoPProof(detail="typ is not dpop+jwt")
    # Step 5: "the alg JOSE Header Parameter indicates a registered asymmetric digital
    # signature algorithm [IANA.JOSE.ALGS], is not none, is supported by the application, and
    # is acceptable per local policy".
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in SUPPORTED_ALGS.intersection(algs):
        raise InvalidDPoPProof(detail="alg not accepted")
    if "crit" in header:  # RFC 7515 §4.1.11: we understand no extension
        raise InvalidDPoPProof(detail="crit header")
    jwk = header.get("jwk")
    key = _public_key(alg, jwk)
    # Step 6: "the JWT signature verifies with the public key contained in the jwk JOSE
    # Header Parameter".
    _verify(alg, key, f"{header_b64}.{payload_b64}".encode("ascii"), signature)
    assert isinstance(jwk, dict)
    # Step 2: "all required claims per Section 4.2 are contained in the JWT".
    jti, htm, htu, iat = (claims.get(name) for name in ("jti", "htm", "htu", "iat"))
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
        raise InvalidDPoPProof(detail="jti missing or too long")
    if not isinstance(htm, str) or not isinstance(htu, str):
        raise InvalidDPoPProof(detail="htm or htu missing")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise InvalidDPoPProof(detail="iat missing")
    # Step 8: "the htm claim matches the HTTP method of the current request".
    if htm != method.upper():
        raise InvalidDPoPProof(detail="htm does not match")
    # Step 9: "the htu claim matches the HTTP URI value for the HTTP request in which the JWT
    # was received, ignoring any query and fragment parts".
    expected = normalize_htu(url)
    try:
        presented = normalize_htu(htu)
    except ValueError:
        raise InvalidDPoPProof(detail="htu is not an http(s) URL") from None
    if presented != expected:
        raise InvalidDPoPProof(detail="htu does not match")
    # Step 10: "if the server provided a nonce value to the client, the nonce claim matches
    # the server-provided nonce value".
    if nonce is not None:
        presented_nonce = claims.get("nonce")
        if not isinstance(presented_nonce, str) or not nonce(presented_nonce):
            raise UseDPoPNonce(detail="nonce missing or stale")
    # Step 11: "the creation time of the JWT, as determined by either the iat claim or a
    # server managed timestamp via the nonce claim, is within an acceptable window".
    current = time.time() if now is None else now
    # A server that demands nonces answers a proof out of the window with a fresh nonce
    # (API.md, "DPoP"): the client's clock is off, and a proof signed with the nonce passes.
    stale = InvalidDPoPProof if nonce is None else UseDPoPNonce
    if iat > current + FUTURE_LEEWAY_SECONDS:
        raise stale(detail="iat in the future")
    if iat < current - window:
        raise stale(detail="iat too old")
    # Step 12: "if presented to a protected resource in conjunction with an access token,
    # ensure that the value of the ath claim equals the hash of that access token".
    if access_token is not None and claims.get("ath") != access_token_hash(access_token):
        raise InvalidDPoPProof(detail="ath does not match the access token")
    return Proof(jwk_thumbprint(jwk), jti, iat, jwk, claims, window)


def one_proof(values: Sequence[str]) -> str | None:
    """The DPoP header's value from all the request's DPoP headers. §4.3: "there is not more
    than one DPoP HTTP request header field": two give "", which no check passes."""
    return None if not values else values[0] if len(values) == 1 else ""


def normalize_htu(url: str) -> str:
    """§4.3: "servers SHOULD employ syntax-based normalization (Section 6.2.2 of [RFC3986]) and
    scheme-based normalization (Section 6.2.3 of [RFC3986]) before comparing the htu claim":
    scheme and host lower case, no default port, an empty path as "/", percent-escapes of
    unreserved characters decoded and the others upper case, dot segments removed; query and
    fragment dropped. ValueError for anything but an absolute http(s) URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        raise ValueError("not an absolute http(s) URL without userinfo")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError for a port out of range
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(_PERCENT.sub(_normalize_escape, parts.path)) or "/"
    return f"{scheme}://{authority}{path}"


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace."""
    kty = jwk["kty"]
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
    canonical = json.dumps(
        {name: jwk[name] for name in members[kty]}, separators=(",", ":"), sort_keys=True
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())


def access_token_hash(access_token: str) -> str:
    """§4.2 `ath`: "the base64url-encoded SHA-256 hash of the ASCII encoding of the associated
    access token's value"."""
    return _b64(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


class Nonces:
    """Server nonces (§8, §9) that need no storage and hold on every instance: the window's
    number and an HMAC-SHA256 of it under a secret every instance shares. A nonce of the
    current window or the previous one is accepted (60 to 120 s; one of the next window only
    within the clock skew allowed for `iat`); anything else, forged, garbled or from another
    time, is not. `keys`: the first makes nonces, each opens them (a secret being replaced).

        nonces = Nonces([secret])
        response.headers["DPoP-Nonce"] = nonces.issue()
        check_proof(value, method=..., url=..., nonce=nonces.accepts)
    """

    def __init__(self, keys: Sequence[bytes], window: int = NONCE_WINDOW_SECONDS) -> None:
        if not keys or any(len(key) < 16 for key in keys):
            raise ValueError("Nonces needs secrets of at least 16 bytes")
        self._keys = tuple(keys)
        self._window = window

    def issue(self, now: float | None = None) -> str:
        number = self._number(now)
        return _b64(number.to_bytes(8, "big") + self._tag(self._keys[0], number))

    def accepts(self, nonce: str, now: float | None = None) -> bool:
        current = time.time() if now is None else now
        # §8: "nonce = 1*NQCHAR"; ours are 32 base64url characters, so anything else is not.
        if not isinstance(nonce, str) or len(nonce) != 32 or not nonce.isascii():
            return False
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return False
        number = int.from_bytes(raw[:8], "big")
        this = self._number(current)
        ahead = number == this + 1 and number * self._window <= current + FUTURE_LEEWAY_SECONDS
        if number not in (this, this - 1) and not ahead:
            return False
        tag = raw[8:]
        # Every key tried, each in constant time: which one matched says nothing.
        return any([hmac.compare_digest(tag, self._tag(key, number)) for key in self._keys])

    def _number(self, now: float | None) -> int:
        return int((time.time() if now is None else now) // self._window)

    @staticmethod
    def _tag(key: bytes, number: int) -> bytes:
        message = b"DPoP-Nonce " + number.to_bytes(8, "big")
        return hmac.new(key, message, hashlib.sha256).digest()[:_NONCE_TAG_BYTES]


class ReplayCache:
    """`jti`s seen within the window, for one process (§11.1). Bounded: when full of live
    entries it refuses new proofs rather than forget one that could then be replayed."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._max = max_entries
        self._seen: OrderedDict[str, float] = OrderedDict()  # key -> expires_at, in order
        self._lock = threading.Lock()

    def first_use(self, key: str, expires_at: float, now: float | None = None) -> bool:
        current = time.time() if now is None else now
        with self._lock:
            while self._seen:
                oldest, expiry = next(iter(self._seen.items()))
                if expiry > current:
                    break
                del self._seen[oldest]
            if key in self._seen or len(self._seen) >= self._max:
                return False
            # Insertion order is expiry order only roughly (iat differs); the purge above
            # stops at the first live entry, which keeps it O(1) and at worst keeps a few
            # expired entries a little longer.
            self._seen[key] = expires_at
            return True

    def __len__(self) -> int:
        return len(self._seen)


def _public_key(alg: str, jwk: Any) -> Any:
    # Step 7: "the jwk JOSE Header Parameter does not contain a private key".
    if not isinstance(jwk, dict):
        raise InvalidDPoPProof(detail="no jwk")
    if len(json.dumps(jwk)) > MAX_JWK_CHARS:
        raise InvalidDPoPProof(detail="jwk too large")
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise InvalidDPoPProof(detail="jwk holds a private key")
    kty, members = _KEY_MEMBERS[alg]
    if jwk.get("kty") != kty or not all(isinstance(jwk.get(m), str) for m in members):
        raise InvalidDPoPProof(detail="jwk does not fit alg")
    try:
        if kty == "EC":
            if jwk["crv"] != "P-256":
                raise InvalidDPoPProof(detail="EC key not on P-256")
            x, y = _b64decode(jwk["x"]), _b64decode(jwk["y"])
            if len(x) != 32 or len(y) != 32:
                raise InvalidDPoPProof(detail="EC coordinates not 32 bytes")
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            ).public_key()
        if kty == "OKP":
            if jwk["crv"] != "Ed25519":
                raise InvalidDPoPProof(detail="OKP key not Ed25519")
            return ed25519.Ed25519PublicKey.from_public_bytes(_b64decode(jwk["x"]))
        n = int.from_bytes(_b64decode(jwk["n"]), "big")
        if not 2048 <= n.bit_length() <= 4096:
            raise InvalidDPoPProof(detail="RSA key size out of bounds")
        return rsa.RSAPublicNumbers(int.from_bytes(_b64decode(jwk["e"]), "big"), n).public_key()
    except (ValueError, TypeError):
        raise InvalidDPoPProof(detail="jwk is not a valid public key") from None


def _verify(alg: str, key: Any, signing_input: bytes, signature: bytes) -> None:
    try:
        if alg == "ES256":
            if len(signature) != 64:  # RFC 7518 §3.4: R || S, 32 octets each
                raise InvalidSignature
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
        elif alg == "EdDSA":
            key.verify(signature, signing_input)
        else:
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise InvalidDPoPProof(detail="signature does not verify") from None


def _normalize_escape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    output: list[str] = []
    for segment in path.split("/")[1:] if path.startswith("/") else path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = "/" if path.endswith(("/.", "/..")) else ""
    return ("/" + "/".join(output) + trailing) if path else ""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise InvalidDPoPProof(detail="not base64url") from None

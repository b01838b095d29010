"""Signing keys: making them, naming them, sealing them at rest, and publishing them.

A key moves next → active → retired, or to revoked from any state. The `KeyRing` is the
in-memory snapshot a process signs and verifies with: private keys are parsed once (PyJWT
signs ~100x faster with a loaded key object than with a PEM string per call) and the JWKS
body is serialised once, with its ETag.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from authserver.keys.records import KeyRecord, KeyState
from authserver.keys.sealing import KeySealer
from authserver.tokens.jws import b64url

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    private_key: PrivateKey


def make_key(alg: str, state: KeyState, sealer: KeySealer, now: int) -> NewKey:
    private_key: PrivateKey
    if alg == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "EdDSA":
        private_key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    jwk = public_jwk(private_key.public_key())
    kid = thumbprint(jwk)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    record = KeyRecord(
        kid=kid,
        alg=alg,
        state=state,
        public_jwk={**jwk, "kid": kid, "use": "sig", "alg": alg},
        sealed_private_key=sealer.seal(kid, pem),
        created_at=now,
        activated_at=now if state == "active" else None,
    )
    return NewKey(record, private_key)


def public_jwk(public_key: PublicKey) -> dict[str, str]:
    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _b64_uint(numbers.n), "e": _b64_uint(numbers.e)}
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, with no white space."""
    required = {"RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


# Parsing an RSA private key validates it, ~55 ms of the event loop; every reload (≤ 30 s) would
# pay it again for the same key. Kept by its PEM, so a key rewrapped under a new KEK is the
# same entry, and each reload still opens the sealed row (a wrong KEK fails as before).
@functools.lru_cache(maxsize=16)
def load_private_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("stored key is neither RSA nor Ed25519")
    return key


def load_public_key(jwk: dict[str, str]) -> PublicKey:
    if jwk["kty"] == "RSA":
        n, e = _uint(jwk["n"]), _uint(jwk["e"])
        return rsa.RSAPublicNumbers(e, n).public_key()
    return ed25519.Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"]))


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    alg: str
    public_key: PublicKey


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: PrivateKey

    def sign(self, data: bytes) -> bytes:
        """The JWS signature of `data`: RS256 is RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518
        §3.3); EdDSA is Ed25519 over the bytes themselves (RFC 8037 §3.1)."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return self.private_key.sign(data)


class KeyRing:
    """What one process signs with and what it publishes, built from the stored keys."""

    def __init__(
        self, records: Iterable[KeyRecord], sealer: KeySealer, *, now: int, retired_ttl: int
    ) -> None:
        # kid breaks ties (active and next are made in the same second), so every instance
        # serves the same JWKS body and ETag whatever order the store returned the rows in.
        self.records = sorted(records, key=lambda r: (r.created_at, r.kid))
        active = [r for r in self.records if r.state == "active"]
        if not active:
            raise LookupError("no active signing key")
        record = active[-1]
        pem = sealer.open(record.kid, record.sealed_private_key)
        self.signing = SigningKey(record.kid, record.alg, load_private_key(pem))
        # A retired key stays published until every token it signed has expired.
        published = [r for r in self.records if _is_published(r, now, retired_ttl)]
        self.verification = {
            r.kid: VerificationKey(r.kid, r.alg, load_public_key(r.public_jwk)) for r in published
        }
        self.jwks_body = json.dumps(
            {"keys": [r.public_jwk for r in published]}, separators=(",", ":")
        ).encode()
        self.jwks_etag = '"' + hashlib.sha256(self.jwks_body).hexdigest()[:32] + '"'

    @property
    def signing_algs(self) -> list[str]:
        return sorted({key.alg for key in self.verification.values()})


def _is_published(record: KeyRecord, now: int, retired_ttl: int) -> bool:
    if record.state in ("next", "active"):
        return True
    if record.state == "retired":
        return record.retired_at is not None and now < record.retired_at + retired_ttl
    return False


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _uint(text: str) -> int:
    return int.from_bytes(_unb64(text), "big")

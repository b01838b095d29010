"""Signing keys: making them, naming them, sealing them at rest, and publishing them.

A key moves next → active → retired, or to revoked from any state. The `KeyRing` is the
in-memory snapshot a process signs and verifies with: private keys are parsed once (PyJWT
signs ~100x faster with a loaded key object than with a PEM string per call) and the JWKS
body is serialised once, with its ETag.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authserver.config import Settings

KeyState = Literal["next", "active", "retired", "revoked"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class KeyRecord:
    """A key as stored: public JWK in the clear, private PEM sealed under the KEK."""

    kid: str
    alg: str
    state: KeyState
    public_jwk: dict[str, str]
    sealed_private_key: bytes
    created_at: int
    activated_at: int | None = None
    retired_at: int | None = None
    revoked_at: int | None = None


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
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}


def thumbprint(jwk: dict[str, str]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, with no white space."""
    required = {"RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"))
    return _b64(hashlib.sha256(canonical.encode()).digest())


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


class KeySealer:
    """AES-256-GCM over private PEMs; the kid is the associated data, so a sealed key cannot
    be swapped onto another row without failing to open.

    Seals under `kek`; opens under `kek`, else under each of `older` in turn (a KEK switch:
    rows rewrapped or not yet both open). Raises cryptography's InvalidTag if none opens."""

    _NONCE_BYTES = 12

    def __init__(self, kek: bytes, *older: bytes) -> None:
        self.kek = kek
        self._aead = AESGCM(kek)
        self.older_keks = tuple(k for k in dict.fromkeys(older) if k != kek)
        self._older = tuple(AESGCM(k) for k in self.older_keks)

    def seal(self, kid: str, pem: bytes) -> bytes:
        nonce = secrets.token_bytes(self._NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, pem, kid.encode())

    def open(self, kid: str, sealed: bytes) -> bytes:
        nonce, ciphertext = sealed[: self._NONCE_BYTES], sealed[self._NONCE_BYTES :]
        for aead in (self._aead, *self._older):
            try:
                return aead.decrypt(nonce, ciphertext, kid.encode())
            except InvalidTag:
                continue
        raise InvalidTag()

    def rewrap(self, record: KeyRecord, new: KeySealer) -> KeyRecord:
        """`record` sealed under `new`'s KEK, checked to open under it; InvalidTag if this
        sealer cannot open it (or the new seal does not open, which would be a bug)."""
        pem = self.open(record.kid, record.sealed_private_key)
        sealed = new.seal(record.kid, pem)
        if KeySealer(new.kek).open(record.kid, sealed) != pem:
            raise InvalidTag()
        return replace(record, sealed_private_key=sealed)


def key_encryption_key(settings: Settings) -> bytes:
    """The KEK from the setting, else from `keys_dir/kek`, made once with mode 0600."""
    if settings.key_encryption_key is not None:
        return settings.key_encryption_key
    path = Path(settings.keys_dir) / "kek"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once must not each write their own key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_kek(path)
    with os.fdopen(fd, "wb") as out:
        out.write(base64.b64encode(secrets.token_bytes(32)) + b"\n")
    return _read_kek(path)


def key_sealer(settings: Settings) -> KeySealer:
    """Seals under the KEK; opens under it or AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS."""
    previous = settings.key_encryption_key_previous
    return KeySealer(key_encryption_key(settings), *([previous] if previous else []))


def read_kek_file(path: Path) -> bytes:
    """A KEK file as `authserver keys rewrap --new-kek-file` takes it: base64, mode 0600."""
    return _read_kek(path)


def _read_kek(path: Path) -> bytes:
    if path.stat().st_mode & 0o077:
        raise PermissionError(f"{path} must be readable by its owner only (chmod 600 {path})")
    raw = path.read_bytes().strip()
    if not raw:  # another process is between creating and writing it
        raise PermissionError(f"{path} is empty; remove it or set AUTHSERVER_KEY_ENCRYPTION_KEY")
    try:
        return decode_kek(raw)
    except ValueError:
        raise ValueError(f"{path} must hold a base64 32-byte key") from None


def decode_kek(raw: bytes) -> bytes:
    """A KEK as written in settings and files: 32 bytes, base64 (ValueError otherwise)."""
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (the value is not shown)") from None
    if len(key) != 32:
        raise ValueError(f"must decode to 32 bytes, got {len(key)}")
    return key


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


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64_uint(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _uint(text: str) -> int:
    return int.from_bytes(_unb64(text), "big")


def public_record(record: KeyRecord) -> dict[str, Any]:
    """What the admin API and the CLI show of a key: never private material."""
    return {
        "kid": record.kid,
        "alg": record.alg,
        "state": record.state,
        "created_at": record.created_at,
        "activated_at": record.activated_at,
        "retired_at": record.retired_at,
        "revoked_at": record.revoked_at,
    }

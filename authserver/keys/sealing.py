"""Private keys sealed at rest: AES-256-GCM under the key-encryption key (KEK), the kid as
associated data; where the KEK comes from.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from dataclasses import replace
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authserver.config import Settings
from authserver.keys.records import KeyRecord


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
        return replace(
            record, sealed_private_key=self.reseal(record.kid, record.sealed_private_key, new)
        )

    def reseal(self, associated: str, sealed: bytes, new: KeySealer) -> bytes:
        """Anything this sealer opens (a private key, a TOTP secret), sealed under `new`'s KEK
        and checked to open under it alone; InvalidTag if it does not open here."""
        plain = self.open(associated, sealed)
        resealed = new.seal(associated, plain)
        if KeySealer(new.kek).open(associated, resealed) != plain:
            raise InvalidTag()
        return resealed


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


def derived_keys(sealer: KeySealer, label: bytes) -> tuple[bytes, ...]:
    """Keys for another purpose (`label`), one per KEK the sealer opens with, the current one
    first: HMAC-SHA256(KEK, label), a PRF of a uniformly random key, so the KEK itself is never
    used outside sealing and no other setting is needed."""
    return tuple(
        hmac.new(kek, label, hashlib.sha256).digest() for kek in (sealer.kek, *sealer.older_keks)
    )


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

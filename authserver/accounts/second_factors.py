"""Second factors: TOTP authenticator apps (RFC 6238) and single-use recovery codes.

A TOTP secret is sealed under the KEK like a signing key (keys/sealing.py), with the factor's id
as associated data so a sealed secret moved onto another row fails to open; the database alone
gives nobody a user's codes. A code is accepted once: the store records the accepted time step
in the statement that accepts it, and only a later step is accepted after it. Recovery codes
are stored as SHA-256 only (100 random bits each, so a hash cannot be searched back), and
spent in one statement too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import pyotp

from authserver.audit import AuditEvent
from authserver.keys.sealing import KeySealer

TOTP = "totp"
# RFC 6238 §4/§5.2 defaults every authenticator app uses: HMAC-SHA-1, 6 digits, 30-second
# steps; "We RECOMMEND that at most one time step is allowed as the network delay."
STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i to misread
_RECOVERY_LENGTH = 20  # 31**20 ≈ 2**99
_LONGEST_INPUT = 64  # anything longer is no code of ours; refused before any work


@dataclass(frozen=True)
class StoredTotp:
    id: str
    sealed_secret: bytes
    last_step: int | None


class SecondFactorStore(Protocol):
    """Every method is one transaction of its own."""

    async def add_totp(
        self, factor_id: str, user_id: str, sealed_secret: bytes, step: int, now: int,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:  # fmt: skip
        """Stores the factor with `step` as its last accepted one (the enrolling code is spent);
        False if the user has a TOTP factor already."""
        ...

    async def totp(self, user_id: str) -> StoredTotp | None: ...

    async def kinds(self, user_id: str) -> list[str]:
        """The kinds of factor the user has enrolled, sorted."""
        ...

    async def accept_step(self, factor_id: str, step: int) -> bool:
        """Records `step` as accepted if no step as late was: True at most once per step."""
        ...

    async def replace_recovery_codes(
        self, user_id: str, code_hashes: Sequence[str], now: int
    ) -> None: ...

    async def spend_recovery_code(self, user_id: str, code_hash: str, now: int) -> bool:
        """Marks the user's unspent code used: True at most once per code."""
        ...

    async def remove_all(self, user_id: str, audit: Sequence[AuditEvent] = ()) -> int:
        """Removes every factor and recovery code of the user; the count of factors removed."""
        ...


def new_totp_secret() -> str:
    """160 random bits in base32, as RFC 4226 §4 recommends (R6) and apps expect."""
    return pyotp.random_base32(32)


def seal_totp(sealer: KeySealer, factor_id: str, secret: str) -> bytes:
    return sealer.seal(_associated(factor_id), secret.encode())


def open_totp(sealer: KeySealer, factor: StoredTotp) -> str:
    return sealer.open(_associated(factor.id), factor.sealed_secret).decode()


def reseal_totp(opener: KeySealer, new: KeySealer, factor_id: str, sealed: bytes) -> bytes:
    """A secret sealed under a KEK `opener` opens with, sealed under `new`'s (keys rewrap)."""
    return opener.reseal(_associated(factor_id), sealed, new)


def _associated(factor_id: str) -> str:
    return f"second-factor:{factor_id}"


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The otpauth:// URI an app scans (Google Authenticator's Key Uri Format)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def matching_step(secret: str, code: str, now: int) -> int | None:
    """The time step within the drift window whose code `code` is, the latest if several;
    None for anything else (not 6 digits after dropping spaces, or no match)."""
    typed = _normalised(code)
    if typed is None or len(typed) != DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, digest=hashlib.sha1, interval=STEP_SECONDS)
    current = now // STEP_SECONDS
    found = None
    # Every candidate compared in constant time, none skipped: the time taken says nothing.
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), typed):
            found = step
    return found


async def accept_totp(
    store: SecondFactorStore, sealer: KeySealer, user_id: str, code: str, now: int
) -> bool:
    """Whether `code` is the user's current TOTP code, not accepted before. RFC 6238 §5.2:
    "the verifier MUST NOT accept the second attempt of the OTP after the successful
    validation has been issued for the first OTP" — settled by the store's one UPDATE, so two
    instances racing with one code accept it at most once."""
    factor = await store.totp(user_id)
    if factor is None:
        return False
    step = matching_step(open_totp(sealer, factor), code, now)
    if step is None:
        return False
    return await store.accept_step(factor.id, step)


def new_recovery_codes() -> list[str]:
    """RECOVERY_CODE_COUNT codes to show once, as `xxxxx-xxxxx-xxxxx-xxxxx`."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 5] for i in range(0, _RECOVERY_LENGTH, 5)))
    return codes


def recovery_code_hash(code: str) -> str | None:
    """The stored form of a typed recovery code (case, spaces and dashes ignored), or None
    when it cannot be one of ours."""
    typed = _normalised(code)
    if typed is None:
        return None
    typed = typed.replace("-", "").lower()
    if len(typed) != _RECOVERY_LENGTH or any(c not in _RECOVERY_ALPHABET for c in typed):
        return None
    return hashlib.sha256(typed.encode()).hexdigest()


async def spend_recovery_code(store: SecondFactorStore, user_id: str, code: str, now: int) -> bool:
    code_hash = recovery_code_hash(code)
    if code_hash is None:
        return False
    return await store.spend_recovery_code(user_id, code_hash, now)


def _normalised(code: str) -> str | None:
    if len(code) > _LONGEST_INPUT:
        return None
    return "".join(code.split())

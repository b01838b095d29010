"""Signing keys as stored: the record, its states, and what may be shown of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

KeyState = Literal["next", "active", "retired", "revoked"]


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

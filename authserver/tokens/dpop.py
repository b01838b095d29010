"""DPoP at the server (RFC 9449): the kit's proof checks (authserver_verify.dpop, one copy for
server and services) plus the one check that needs storage: a `jti` accepted once within the
window on every instance (§11.1), through `ProofStore`.

    proof = await check_proof(store, header_value, method="POST", url=issuer + "/token", now=now)

With nonces on (AUTHSERVER_DPOP_NONCE), `nonces` (the kit's `Nonces`, keyed from the KEK)
decides whether a proof's nonce is one a server of ours handed out lately (§8).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Protocol

from authserver_verify import dpop
from authserver_verify.dpop import InvalidDPoPProof, Nonces, Proof, UseDPoPNonce

__all__ = [
    "DPoPRequest",
    "FirstUse",
    "InvalidDPoPProof",
    "MemoryProofStore",
    "Nonces",
    "Proof",
    "ProofStore",
    "UseDPoPNonce",
    "check_proof",
    "checked_proof",
    "replayed",
]


@dataclass(frozen=True)
class DPoPRequest:
    """A request to a protected endpoint with `Authorization: DPoP`: its DPoP header ("" when
    sent twice) and what the proof must name."""

    proof: str | None
    method: str
    url: str


@dataclass
class FirstUse:
    """A proof's replay key for a grant to record in its own write, so the proof costs no
    transaction of its own. The store that records it sets `recorded` once its write committed,
    whatever the grant's outcome; a grant that failed before that records it apart
    (actions/token.py), so every proof is spent as `ProofStore.first_use` would spend it."""

    key: str
    expires_at: int
    now: int
    recorded: bool = False


class ProofStore(Protocol):
    async def first_use(self, key: str, expires_at: int, now: int) -> bool:
        """True for the first caller with this key until `expires_at`, on every instance."""
        ...


class MemoryProofStore:
    """One process's store, for a Services built without a database (the kit's cache)."""

    def __init__(self) -> None:
        self._cache = dpop.ReplayCache()

    async def first_use(self, key: str, expires_at: int, now: int) -> bool:
        return self._cache.first_use(key, expires_at, now)


async def check_proof(
    store: ProofStore,
    value: str | None,
    *,
    method: str,
    url: str,
    now: int,
    access_token: str | None = None,
    nonces: Nonces | None = None,
) -> Proof:
    """§4.3 in full: the kit's checks (with `nonces`, step 10: "the nonce claim matches the
    server-provided nonce value"; else UseDPoPNonce), then "the jti value ... has not been
    previously used" (§11.1: "servers ... MUST only accept a given proof once")."""
    proof = checked_proof(
        value, method=method, url=url, now=now, access_token=access_token, nonces=nonces
    )
    if not await store.first_use(proof.replay_key, proof.expires_at, now):
        raise replayed()
    return proof


def checked_proof(
    value: str | None,
    *,
    method: str,
    url: str,
    now: int,
    access_token: str | None = None,
    nonces: Nonces | None = None,
) -> Proof:
    """`check_proof` but for the jti: for a grant that records it in its own write
    (`FirstUse`)."""
    return dpop.check_proof(
        value,
        method=method,
        url=url,
        access_token=access_token,
        now=now,
        nonce=None if nonces is None else partial(nonces.accepts, now=now),
    )


def replayed() -> InvalidDPoPProof:
    """§11.1: "servers ... MUST only accept a given proof once"; this one was."""
    return InvalidDPoPProof(detail="jti already used")

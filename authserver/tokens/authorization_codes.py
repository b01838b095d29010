"""Authorization codes (RFC 6749 §4.1): issued by /authorize, exchanged once at /token.

A code is 128+ random bits (here 256), stored only as its SHA-256, valid 60 s, and bound to the
client, the redirect URI, the PKCE challenge, the scope, the nonce, the user and the login
session (and to a DPoP key when the request named one: RFC 9449 §10). Its exchange is
settled by the store in one conditional UPDATE: of any number of racing exchanges on any number
of instances, at most one finds it unused. A used code is kept `REPLAY_WINDOW` seconds past its
expiry with the family its first use started, so its holder presenting it again revokes that
family (RFC 6749 §4.1.2); anyone else presenting it is refused and revokes nothing.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from authserver.accounts.profiles import Profile
from authserver.audit import AuditEvent
from authserver.errors import InvalidGrant
from authserver.tokens.dpop import FirstUse
from authserver.tokens.pkce import s256, verifier_matches, verifier_well_formed
from authserver.tokens.refresh import (
    Family,
    FamilyStore,
    family_revoked,
    hash_token,
    new_family_id,
    new_refresh_token,
    refresh_token,
)

CODE_TTL = 60  # seconds (API.md)
# How long a used code is kept after it expired (db/purge.py), for its holder's replay to find
# it: a replay comes from the client that redeemed it, within moments, or not at all.
REPLAY_WINDOW = 10 * 60


@dataclass(frozen=True)
class AuthorizationCode:
    client_id: str
    user_id: str
    login_session_id: str
    redirect_uri: str  # the one the browser was sent to
    redirect_uri_given: bool  # whether the /authorize request named it
    code_challenge: str
    scope: str
    nonce: str | None
    auth_time: int
    expires_at: int
    amr: tuple[str, ...] = ("pwd",)  # its login session's (login_sessions.LoginSession.amr)
    resources: tuple[str, ...] = ()  # RFC 8707: what the request named (tokens/resources.py)
    dpop_jkt: str | None = None  # RFC 9449 §10: the key the exchange's proof must be of


@dataclass(frozen=True)
class StoredCode:
    code: AuthorizationCode
    used_at: int | None
    family_id: str | None  # the family its first use started


@dataclass(frozen=True)
class Redeemed:
    """A code the store spent, as it was, and its user as the spending statement found them
    (enabled, and held against a disable until the family was stored): the roles for the
    access token and the profile for the ID token, read in that statement, not after it."""

    code: AuthorizationCode
    username: str
    profile: Profile


@dataclass(frozen=True)
class Exchange:
    """What a successful exchange yields: the code's grant, its user (`Redeemed`), and the
    family it started."""

    code: AuthorizationCode
    family: Family
    refresh_token: str
    refresh_expires_at: int
    username: str
    profile: Profile


@dataclass(frozen=True)
class Redemption:
    """An exchange as presented, for the store to settle before anyone has read the code: spend
    it if it is bound as presented, and start `family_id` from it."""

    code_hash: str
    client_id: str
    redirect_uri: str | None  # as the token request names it, if it does
    code_challenge: str  # S256 of the verifier presented
    now: int
    family_id: str
    family_expires_at: int
    token_hash: str  # the family's first refresh token
    token_expires_at: int
    dpop_jkt: str | None = None  # the DPoP key the family is bound to (RFC 9449 §5)
    proof_jkt: str | None = None  # the key of the request's DPoP proof, if it sent one
    first_use: FirstUse | None = None  # that proof's jti, recorded by the exchange itself


class CodeStore(Protocol):
    async def issue(
        self, code_hash: str, code: AuthorizationCode, now: int, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        """Stores the code and appends `audit`, only if its login session is live and its
        user enabled."""
        ...

    async def find(self, code_hash: str) -> StoredCode | None: ...

    async def redeem(self, redemption: Redemption) -> Redeemed | None:
        """In one transaction: marks the code used with the redemption's family as the one it
        started, in one UPDATE that requires it unused, unexpired and bound as presented (its
        client, its challenge, its redirect URI when either the authorization request or
        the redemption names one: `redirect_uri_matches`, and its DPoP key when it has one:
        `dpop_key_matches`); then, with the user (enabled) and
        the login session (live) locked against a concurrent disable or end, and the user still
        holding the code's scope (a demotion since), stores the family (the code's user,
        scope, amr and auth_time), its first refresh token and `redeemed_event`. The code as
        it was with its user as then (`Redeemed`); None, with nothing changed, when any of
        that fails.

        With `first_use`, records the DPoP proof's jti in the same transaction (even when the
        code is not spent; SQLite: not when the user or session check refuses, which rolls
        the whole exchange back and leaves `recorded` unset) and spends only if it was the
        jti's first use: else raises InvalidDPoPProof, nothing changed."""
        ...


def redirect_uri_matches(code: AuthorizationCode, redirect_uri: str | None) -> bool:
    """RFC 6749 §4.1.3: redirect_uri is required if it was included in the authorization
    request, and the values MUST be identical (compared in constant time)."""
    if not code.redirect_uri_given and redirect_uri is None:
        return True
    return _same(code.redirect_uri, redirect_uri or "")


def dpop_key_matches(code: AuthorizationCode, proof_jkt: str | None) -> bool:
    """RFC 9449 §10: "When a token request is received, the authorization server computes the
    JWK Thumbprint of the proof-of-possession public key in the DPoP proof and verifies that it
    matches the dpop_jkt parameter value in the authorization request. If they do not match, it
    MUST reject the request." No proof matches no key. The store's spend checks the same."""
    return code.dpop_jkt is None or _same(code.dpop_jkt, proof_jkt or "")


def redeemed_event(code: AuthorizationCode, family_id: str, client_id: str, now: int) -> AuditEvent:
    """The audit event a redemption stores with its family (the store writes it)."""
    return AuditEvent(
        now, client_id, "code.redeemed", family_id, {"client_id": client_id, "scope": code.scope},
        user=code.user_id, family=family_id,
    )  # fmt: skip


def new_code() -> str:
    return secrets.token_urlsafe(32)


async def issue_code(store: CodeStore, code: AuthorizationCode, now: int) -> str | None:
    """The code's value, or None when its login session ended or its user was disabled."""
    value = new_code()
    detail = {"client_id": code.client_id, "scope": code.scope, "redirect_uri": code.redirect_uri}
    if code.resources:
        detail["resources"] = " ".join(code.resources)
    issued = AuditEvent(now, code.user_id, "code.issued", code.client_id, detail, user=code.user_id)
    return value if await store.issue(hash_token(value), code, now, [issued]) else None


async def redeem_code(
    store: CodeStore,
    families: FamilyStore,
    value: str,
    *,
    client_id: str,
    redirect_uri: str | None,
    verifier: str | None,
    now: int,
    refresh_ttl: int,
    session_ttl: int,
    dpop_jkt: str | None = None,
    proof_jkt: str | None = None,
    first_use: FirstUse | None = None,
) -> Exchange:
    """Exchanges a code for a new family, or raises InvalidGrant (one sentence for every cause).
    `dpop_jkt`: the DPoP key the new family's refresh tokens are bound to; `proof_jkt`: the key
    of the request's proof, which a code bound at /authorize (`dpop_jkt`, RFC 9449 §10) needs;
    `first_use`: its jti, recorded by the store's exchange (a used one raises InvalidDPoPProof
    there, before a replayed request could be taken for a replayed code).

    Spend first: the store's one UPDATE requires the code unused, unexpired and bound as
    presented, so a wrong verifier, client or redirect URI matches nothing and changes nothing
    (the code stays usable by its holder), and a good exchange is one round trip. Only a spend
    that failed reads the code, to say why, and, when its holder presents it again, to revoke
    what its first use started.
    """
    code_hash = hash_token(value)
    if verifier_well_formed(verifier):  # else it matches no challenge: nothing to spend
        assert verifier is not None
        family_id = new_family_id()
        token = refresh_token(family_id, new_refresh_token())
        family_expires_at = now + session_ttl
        redemption = Redemption(
            code_hash=code_hash,
            client_id=client_id,
            redirect_uri=redirect_uri,
            code_challenge=s256(verifier),
            now=now,
            family_id=family_id,
            family_expires_at=family_expires_at,
            token_hash=hash_token(token),
            token_expires_at=min(now + refresh_ttl, family_expires_at),
            dpop_jkt=dpop_jkt,
            proof_jkt=proof_jkt,
            first_use=first_use,
        )
        redeemed = await store.redeem(redemption)
        if redeemed is not None:
            code = redeemed.code
            family = Family(
                redemption.family_id, code.user_id, client_id, code.scope, now, family_expires_at,
                resources=code.resources, amr=code.amr, auth_time=code.auth_time, dpop_jkt=dpop_jkt,
            )  # fmt: skip
            expires_at = redemption.token_expires_at
            return Exchange(code, family, token, expires_at, redeemed.username, redeemed.profile)
    stored = await store.find(code_hash)
    if stored is None:
        raise InvalidGrant(detail="unknown authorization code")
    if stored.used_at is not None:  # a replay, or an exchange that raced this one and won
        await _replayed(families, stored, client_id, verifier, now)
    code = stored.code
    if code.expires_at <= now:
        raise InvalidGrant(detail="authorization code expired")
    if not _same(code.client_id, client_id):
        raise InvalidGrant(detail="authorization code of another client")
    if not redirect_uri_matches(code, redirect_uri):
        raise InvalidGrant(detail="redirect_uri does not match the authorization request")
    if not verifier_matches(verifier, code.code_challenge):
        raise InvalidGrant(detail="code_verifier does not match the code_challenge")
    if not dpop_key_matches(code, proof_jkt):
        raise InvalidGrant(detail="no DPoP proof of the key dpop_jkt named at /authorize")
    # Bound as presented and unused, yet not spent: its user or its login session has ended.
    raise InvalidGrant(detail="authorization code no longer redeemable")


async def _replayed(
    families: FamilyStore, stored: StoredCode, client_id: str, verifier: str | None, now: int
) -> None:
    """RFC 6749 §4.1.2: "If an authorization code is used more than once, the authorization
    server MUST deny the request and SHOULD revoke (when possible) all tokens previously issued
    based on that authorization code."

    Denied always; revoked only when the replay comes from the code's own client with the
    verifier that matches its challenge, i.e. from its holder, whose code has leaked or who
    submitted twice. Anyone who merely saw a used code (a log, a Referer, another client) must
    not be able to end the session of the user who redeemed it."""
    code = stored.code
    holder = _same(code.client_id, client_id) and verifier_matches(verifier, code.code_challenge)
    if not holder:
        raise InvalidGrant(detail="authorization code already used (not by its holder)")
    if stored.family_id is not None:
        replay = AuditEvent(
            now, client_id, "code.replayed", stored.family_id, {"client_id": code.client_id},
            user=code.user_id, family=stored.family_id,
        )  # fmt: skip
        revoked = family_revoked(
            stored.family_id,
            code.user_id,
            code.client_id,
            reason="code_replay",
            actor=client_id,
            now=now,
        )
        events = [replay, revoked]
        await families.revoke(stored.family_id, "code_replay", now, events)
    raise InvalidGrant(detail="authorization code replayed: its family is revoked")


def _same(stored: str, presented: str) -> bool:
    return hmac.compare_digest(stored.encode(), presented.encode())

"""Refresh-token families: started by a login, rotated by every refresh, revoked on reuse.

A login starts a family (its id is the `sid` of every access token issued in it). Each use of a
refresh token spends it and issues the next one, in one compare-and-set in the database.
Presenting a spent token means two parties hold the family, so the whole family is revoked:
that revocation is committed before the request is answered with `invalid_grant`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from authserver.audit import AuditEvent, AuditLog
from authserver.errors import InvalidGrant
from authserver.tokens.dpop import FirstUse
from authserver.tokens.resources import chosen
from authserver.tokens.scopes import narrow, still_held


@dataclass(frozen=True)
class Family:
    id: str
    user_id: str
    client_id: str
    scope: str
    created_at: int
    expires_at: int  # absolute end of the session
    revoked_at: int | None = None
    user_agent: str | None = None  # of the login that started it, cut to USER_AGENT_MAX
    # RFC 8707: the resources its authorization named; each access token is for one of them
    # (resources.chosen). None named: the default audience.
    resources: tuple[str, ...] = ()
    # How and when the user of a browser sign-in proved who they are (RFC 8176 methods, OpenID
    # Connect auth_time), stored at the code exchange and kept by every rotation, for the
    # access tokens (RFC 9068 §2.2.1). None: a password-grant family, or one from before
    # they were stored; its access tokens say nothing of the sign-in.
    amr: tuple[str, ...] | None = None
    auth_time: int | None = None
    # RFC 9449 §5: the DPoP key (RFC 7638 thumbprint) a public client's tokens are bound to.
    dpop_jkt: str | None = None


USER_AGENT_MAX = 200


@dataclass(frozen=True)
class Session:
    """A live family as its user and operators see it (API.md, "Self-service sessions")."""

    sid: str
    client_id: str
    created_at: int
    # The newest token's issue time: the rotation already writes that row, so knowing when
    # a session was last used costs the hot path nothing.
    last_used_at: int
    expires_at: int  # the newest token's idle end, never past the family's absolute end
    user_agent: str | None
    client_name: str | None = None  # the client's registered name, for the account page


class Presented(NamedTuple):
    """A refresh token as the store looks it up (`parse_refresh_token`)."""

    family_id: str | None  # None: a token from before 0030, which names no family
    hash: str  # SHA-256 hex of the whole token


@dataclass(frozen=True)
class TokenState:
    """What the store knows of one refresh token, found by its hash."""

    family: Family
    issued_at: int
    expires_at: int  # idle end: issued_at + refresh TTL, never past the family's end
    spent_at: int | None


@dataclass(frozen=True)
class Spent:
    """A token the store spent, its successor stored, and what the user and the client held
    when it did: read by the statement that spent it, not by an earlier lookup."""

    family: Family
    user_scopes: tuple[str, ...]
    client_scopes: tuple[str, ...]
    user_roles: tuple[str, ...] = ()  # the access token's `roles`: the user's now

    def issuable(self, scope: str) -> str:
        """`scope` (the family's, or a subset of it) less what is no longer held."""
        return still_held(scope, self.user_scopes, self.client_scopes)


@dataclass(frozen=True)
class Rotation:
    family: Family
    refresh_token: str
    expires_at: int
    scope: str  # of the access token to issue with it: the family's, or a subset of it
    roles: tuple[str, ...] = ()  # the user's roles as the session started or rotated


class FamilyStore(Protocol):
    """Storage for families and their refresh tokens.

    Every method is one transaction of its own; `spend` and `spend_successor` are each a
    single compare-and-set, so any number of racing requests see at most one winner.
    """

    async def start(
        self,
        family: Family,
        token_hash: str,
        expires_at: int,
        audit: Sequence[AuditEvent] = (),
        password_hash: str | None = None,
    ) -> bool:
        """Stores the family and its first token, and appends `audit`, in one transaction,
        only if, as it commits, the user is enabled and not deleted, the client enabled and not
        deleted, both still hold the family's scope, and (given `password_hash`, the hash the
        login checked) the password unchanged (a concurrent disable, delete, demotion or
        password change either waits for it and then revokes it, or wins and this stores
        nothing). Records the login time on the user. False when it stored nothing."""
        ...

    async def spend(
        self,
        token: Presented,
        client_id: str,
        now: int,
        new_hash: str,
        new_expires_at: int,
        jkt: str | None = None,
        first_use: FirstUse | None = None,
    ) -> Spent | None:
        """Marks the token spent and stores its successor, only if the token is unspent,
        unexpired, of `client_id`, its family alive (and unbound or bound to `jkt`), its user
        enabled and its client enabled and still registered with the refresh_token grant.
        None when any of that fails.

        With `first_use`, records the DPoP proof's jti in the same transaction (as
        `ProofStore.first_use` would, and so even when the spend fails; then sets
        `first_use.recorded`) and spends only if it was the jti's first use: else raises
        InvalidDPoPProof, nothing spent."""
        ...

    async def spend_successor(
        self,
        parent: Presented,
        client_id: str,
        now: int,
        parent_spent_after: int,
        new_hash: str,
        new_expires_at: int,
        jkt: str | None = None,
    ) -> Spent | None:
        """Grace: spends the live child of `parent` (spent after `parent_spent_after`)
        and stores a new child of the parent. None when no such child is live."""
        ...

    async def find(self, token: Presented) -> TokenState | None:
        """The token's state: live, spent (its family's spent hashes), or None when its
        family never issued it (a forged `<family id>.<secret>` is unknown, not reuse)."""
        ...

    async def revoke(
        self, family_id: str, reason: str, now: int, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        """Revokes the family if it is not already; True when this call did. `audit` is
        appended in the same transaction, and only then."""
        ...

    async def revoke_user(
        self,
        user_id: str,
        reason: str,
        now: int,
        actor: str | None = None,
        *,
        keep_login_session: str | None = None,
    ) -> int:
        """Revokes every live family of the user (but those the login session with the id
        `keep_login_session` started); returns how many. With `actor`, one `family.revoked`
        audit event per family, in the same transaction."""
        ...

    async def revoke_client(self, client_id: str, reason: str, now: int, actor: str) -> int:
        """As `revoke_user`, for every live family of the client."""
        ...

    async def revoke_user_holding(
        self, user_id: str, scope: str, *, reason: str, now: int, actor: str
    ) -> int:
        """As `revoke_user`, for the user's live families granted `scope` only."""
        ...

    async def get(self, family_id: str) -> Family | None: ...

    async def sessions(self, user_id: str, now: int) -> list[Session]:
        """The user's live sessions (not revoked, not over, a live token), newest first."""
        ...


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)  # 256 random bits


def hash_token(token: str) -> str:
    # The token is 256 random bits: a plain SHA-256 cannot be brute-forced and keeps lookups
    # a single index probe.
    return hashlib.sha256(token.encode()).hexdigest()


# A refresh token names its family (0030): `<family id>.<secret>`, the family's UUID in 22
# url-safe base64 characters, so the store finds the live token through the family's primary
# key and keeps no index of live hashes. The hash is of the whole token, as before 0030: the
# same lookup for every token, and a downgrade can hand the rows back to refresh_tokens.
_FAMILY_CHARS = 22


def refresh_token(family_id: str, secret: str) -> str:
    """The token handed out for `secret` (new_refresh_token) in the family `family_id`."""
    compact = base64.urlsafe_b64encode(uuid.UUID(family_id).bytes).rstrip(b"=").decode()
    return f"{compact}.{secret}"


def parse_refresh_token(token: str) -> Presented:
    """How the store looks `token` up: its family and its hash. A token from before 0030
    (url-safe base64, no dot) or one whose family part is no UUID names no family."""
    compact, dot, secret = token.partition(".")
    if dot and len(compact) == _FAMILY_CHARS and secret:
        try:
            raw = base64.urlsafe_b64decode(compact + "==")
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) == 16:
            return Presented(str(uuid.UUID(bytes=raw)), hash_token(token))
    return Presented(None, hash_token(token))


def new_family_id() -> str:
    return str(uuid.uuid4())


def family_revoked(
    family_id: str, user_id: str, client_id: str, *, reason: str, actor: str, now: int
) -> AuditEvent:
    """The audit event of a family's revocation, whatever ended it (reuse, logout, end_session,
    disabled, code_replay, ...): every store and use case builds it here, so the trail reads the
    same for all (tests/http/test_family_revoked.py)."""
    return AuditEvent(
        now,
        actor,
        "family.revoked",
        family_id,
        {"reason": reason, "client_id": client_id},
        user=user_id,
        family=family_id,
    )


async def start_family(
    store: FamilyStore,
    *,
    user_id: str,
    client_id: str,
    scope: str,
    now: int,
    refresh_ttl: int,
    session_ttl: int,
    user_agent: str | None = None,
    password_hash: str | None = None,
    roles: tuple[str, ...] = (),
    resources: tuple[str, ...] = (),
    dpop_jkt: str | None = None,
) -> Rotation:
    """Starts a session (bound to the DPoP key `dpop_jkt` when given); its `login.succeeded`
    audit event commits with it. InvalidGrant when
    the user was disabled or deleted meanwhile, or their password changed since `password_hash`
    was checked (the password was checked before, in a thread: the store decides, as it
    commits)."""
    agent = user_agent[:USER_AGENT_MAX] if user_agent else None
    family = Family(
        new_family_id(), user_id, client_id, scope, now, now + session_ttl, None, agent, resources,
        dpop_jkt=dpop_jkt,  # by name: other fields may come after `resources`
    )  # fmt: skip
    token = refresh_token(family.id, new_refresh_token())
    expires_at = min(now + refresh_ttl, family.expires_at)
    login = AuditEvent(
        now,
        user_id,
        "login.succeeded",
        user_id,
        {"client_id": client_id, "scope": scope},
        user=user_id,
        family=family.id,
    )
    if not await store.start(family, hash_token(token), expires_at, [login], password_hash):
        raise InvalidGrant(
            detail="user or client disabled, deleted, demoted or changed during the login"
        )
    return Rotation(family, token, expires_at, scope, roles)


async def rotate(
    store: FamilyStore,
    presented_token: str,
    *,
    client_id: str,
    now: int,
    refresh_ttl: int,
    grace: int,
    requested: tuple[str, ...] | None = None,
    audit: AuditLog | None = None,
    resource: str | None = None,
    jkt: str | None = None,
    first_use: FirstUse | None = None,
) -> Rotation:
    """Spends `presented_token` and returns its successor, or raises InvalidGrant.

    A family bound to a DPoP key rotates only with a proof of it (`jkt`): without a proof the
    request is refused and nothing is spent; with a proof of another key it is reuse (RFC 9449
    §5: the token is in the wrong hands), and the family is revoked. The proof's jti
    (`first_use`) is recorded by the spend itself: a replayed proof raises InvalidDPoPProof
    there, before anything here could take its token for reuse.

    Reuse of a spent token revokes its family (and that is committed) before raising. With
    `grace` > 0, the immediate parent of the newest token, spent less than `grace` seconds
    ago, is answered with a fresh token instead (lost responses, several browser tabs).
    `requested` narrows the scope (`scopes.narrow`) on every path, checked before anything
    is spent: a wider scope is InvalidScope and spends nothing, except that a spent token
    outside the grace rule is reuse whatever it asks for. Likewise a `resource` (RFC 8707) the
    family was not granted is InvalidTarget, and spends nothing.

    Every reuse is audited here, where it is decided: `refresh.reuse_detected` with the
    decision (`revoked`, committed with the revocation itself; or `tolerated` under grace,
    written to `audit`). A plain rotation writes nothing: it is the hot path.
    """
    token = parse_refresh_token(presented_token)
    expires_at = now + refresh_ttl
    family_id = token.family_id
    narrowing = requested is not None or resource is not None
    if family_id is None or narrowing:
        # A token from before 0030 names no family, and its successor must: read first (for
        # one idle lifetime after 0030). And before spending, so a bad request does not cost
        # the holder their token. A spent token goes on below, so asking for more never
        # shields a replay from detection.
        known = await store.find(token)
        if known is None:
            raise InvalidGrant(detail="unknown refresh token or other client's")
        family_id = known.family.id
        if narrowing and known.spent_at is None:
            narrow(requested, known.family.scope)
            chosen(resource, known.family.resources)
    new_token = refresh_token(family_id, new_refresh_token())
    new_hash = hash_token(new_token)
    spent = await store.spend(token, client_id, now, new_hash, expires_at, jkt, first_use)
    if spent is not None:
        family = spent.family
        scope = spent.issuable(narrow(requested, family.scope))
        ends = min(expires_at, family.expires_at)
        return Rotation(family, new_token, ends, scope, spent.user_roles)

    state = await store.find(token)
    if state is None or state.family.client_id != client_id:
        raise InvalidGrant(detail="unknown refresh token or other client's")
    bound = state.family.dpop_jkt
    if bound is not None and jkt is None:
        raise InvalidGrant(detail="refresh token bound to a DPoP key, presented without a proof")
    wrong_key = bound is not None and jkt != bound
    if state.spent_at is None and not wrong_key:
        raise InvalidGrant(detail="refresh token expired or family dead")
    if state.family.revoked_at is not None:
        raise InvalidGrant(detail="refresh token of a revoked family")
    if not wrong_key and state.spent_at is not None and grace > 0 and now - state.spent_at <= grace:
        # The tolerated retry gets no more than the session holds: checked before its spend.
        scope = narrow(requested, state.family.scope)
        chosen(resource, state.family.resources)
        spent = await store.spend_successor(
            token, client_id, now, now - grace, new_hash, expires_at, jkt
        )
        if spent is not None:
            if audit is not None:
                await audit.record([_reuse(state, client_id, now, "tolerated", "within grace")])
            family, scope = spent.family, spent.issuable(scope)
            ends = min(expires_at, family.expires_at)
            return Rotation(family, new_token, ends, scope, spent.user_roles)
    # RFC 9700 §4.14.2: if a refresh token is compromised and subsequently used by both the
    # attacker and the legitimate client, one of them presents an invalidated token, which
    # informs the server of the breach; it revokes the active refresh token.
    if wrong_key:
        why = "proof of another DPoP key than the family's"
    elif state.spent_at is None:  # for mypy: only a wrong key reaches here unspent
        why = "unspent"
    elif grace <= 0:
        why = "grace is off"
    elif now - state.spent_at > grace:
        why = f"spent {now - state.spent_at} s ago, past the {grace} s grace"
    else:
        why = "within grace but not the parent of the live token"
    events = [
        _reuse(state, client_id, now, "revoked", why),
        family_revoked(
            state.family.id,
            state.family.user_id,
            state.family.client_id,
            reason="reuse",
            actor=client_id,
            now=now,
        ),
    ]
    await store.revoke(state.family.id, "reuse", now, events)
    raise InvalidGrant(detail="refresh token reuse: family revoked")


def _reuse(state: TokenState, actor: str, now: int, decision: str, why: str) -> AuditEvent:
    family = state.family
    detail = {"decision": decision, "reason": why, "spent_at": state.spent_at}
    return AuditEvent(
        now,
        actor,
        "refresh.reuse_detected",
        family.id,
        {**detail, "client_id": family.client_id},
        user=family.user_id,
        family=family.id,
    )

"""The signing-key state machine, as pure functions over the stored keys.

    next ──rotate──▶ active ──rotate──▶ retired ──(access TTL + leeway)──▶ gone from JWKS
      └──────────────────┴──────────────────┴──revoke──▶ revoked (out of JWKS at once)

A rotation promotes the next key only once every verifier caching the JWKS by its
`Cache-Control` has had the chance to see it (`min_age`), unless forced. Revoking the active
key rotates first (forced: a leaked key must stop signing now). Every change keeps a next key
published, so the following rotation has something to promote.

The store runs `rotate`/`revoke` inside one serialised transaction over the keys it has just
read, then writes what they return; so the decision lives here and racing instances cannot
both apply one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from authserver.errors import NotFound, OAuthError
from authserver.keys.records import KeyRecord


class KeyNotReady(OAuthError):
    """409: the next key has not been published long enough to sign."""

    code = "key_not_ready"
    status = 409
    description = (
        "The next key has not been published long enough for verifiers to know it; "
        "retry later, or force the rotation."
    )

    def __init__(self, retry_after: int) -> None:
        super().__init__(detail=f"next key promotable in {retry_after} s")
        self.retry_after = retry_after


class UnknownKey(NotFound):
    description = "No signing key has this kid."


@dataclass(frozen=True)
class KeyEvent:
    action: str  # key.made, key.activated, key.retired, key.revoked
    kid: str
    alg: str


@dataclass(frozen=True)
class Transition:
    """The keys that changed or are new, in the order they must be written, and the events."""

    changed: tuple[KeyRecord, ...]
    events: tuple[KeyEvent, ...]

    @property
    def new_kids(self) -> set[str]:
        return {e.kid for e in self.events if e.action == "key.made"}


def rotate(
    records: Sequence[KeyRecord],
    candidate: KeyRecord,
    *,
    now: int,
    min_age: int,
    force: bool = False,
) -> Transition:
    """next → active, active → retired, `candidate` → next.

    Without a next key (only if one was revoked and nothing replaced it), the candidate is
    published as next and the rotation refused as not ready, unless forced: then the
    candidate signs at once.
    """
    nxt = _newest(records, "next")
    active = _newest(records, "active")
    if nxt is None:
        if not force:
            raise KeyNotReady(max(min_age, 1))
        promoted = replace(candidate, state="active", activated_at=now)
        return _promote(active, promoted, None, now, made=(promoted,))
    age = now - nxt.created_at
    if age < min_age and not force:
        raise KeyNotReady(min_age - age)
    staged = replace(candidate, state="next", activated_at=None)
    promoted = replace(nxt, state="active", activated_at=now)
    return _promote(active, promoted, staged, now, made=(staged,))


def rotate_if_due(
    records: Sequence[KeyRecord],
    candidate: KeyRecord,
    *,
    now: int,
    interval: int,
    min_age: int,
) -> Transition:
    """Scheduled rotation: `rotate` by the rules once the active key has signed for
    `interval` seconds; nothing while it is younger, or while the next key is not ready (it
    waits, never forced). Run in the store's serialised transaction, so of two instances
    racing the second sees the first one's fresh active key and does nothing."""
    if not is_due(records, now=now, interval=interval, min_age=min_age):
        return Transition((), ())
    return rotate(records, candidate, now=now, min_age=min_age)


def is_due(records: Sequence[KeyRecord], *, now: int, interval: int, min_age: int) -> bool:
    """The active key has signed for `interval` seconds and the next key is ready."""
    active, nxt = _newest(records, "active"), _newest(records, "next")
    if active is None or nxt is None:
        return False
    since = active.activated_at if active.activated_at is not None else active.created_at
    return now - since >= interval and now - nxt.created_at >= min_age


def revoke(records: Sequence[KeyRecord], kid: str, candidate: KeyRecord, *, now: int) -> Transition:
    """`kid` → revoked, whatever its state; revoking the active key rotates first (forced),
    revoking the next key publishes `candidate` in its place. Revoking twice changes nothing."""
    target = next((r for r in records if r.kid == kid), None)
    if target is None:
        raise UnknownKey()
    if target.state == "revoked":
        return Transition((), ())
    changed: list[KeyRecord] = []
    events: list[KeyEvent] = []
    if target.state == "active":
        rotated = rotate(records, candidate, now=now, min_age=0, force=True)
        # The rotation retired the target; it is revoked instead, so drop that step.
        changed = [r for r in rotated.changed if r.kid != kid]
        events = [e for e in rotated.events if e.kid != kid]
    elif target.state == "next":
        staged = replace(candidate, state="next", activated_at=None)
        changed.append(staged)
        events.append(KeyEvent("key.made", staged.kid, staged.alg))
    revoked = replace(target, state="revoked", revoked_at=now)
    # The revoked row is written first: a key leaving "active" frees the one-active index.
    return Transition((revoked, *changed), (KeyEvent("key.revoked", kid, target.alg), *events))


def _promote(
    active: KeyRecord | None,
    promoted: KeyRecord,
    staged: KeyRecord | None,
    now: int,
    made: tuple[KeyRecord, ...],
) -> Transition:
    changed: list[KeyRecord] = []
    events: list[KeyEvent] = [KeyEvent("key.made", r.kid, r.alg) for r in made]
    if active is not None:
        # Written before the promotion: at most one row may be active at any statement.
        changed.append(replace(active, state="retired", retired_at=now))
        events.append(KeyEvent("key.retired", active.kid, active.alg))
    changed.append(promoted)
    events.append(KeyEvent("key.activated", promoted.kid, promoted.alg))
    if staged is not None:
        changed.append(staged)
    return Transition(tuple(changed), tuple(events))


def _newest(records: Sequence[KeyRecord], state: str) -> KeyRecord | None:
    found = sorted((r for r in records if r.state == state), key=lambda r: (r.created_at, r.kid))
    return found[-1] if found else None

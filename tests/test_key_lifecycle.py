"""keys/lifecycle.py, the key state machine, with no database: rotate and revoke over records in
memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from authserver.keys.lifecycle import KeyNotReady, Transition, UnknownKey, revoke, rotate
from authserver.keys.records import KeyRecord
from authserver.keys.ring import KeyRing, make_key
from authserver.keys.sealing import KeySealer

SEALER = KeySealer(b"k" * 32)
NOW = 1_900_000_000
MIN_AGE = 300


def key(state: str, created_at: int = NOW - 1000) -> KeyRecord:
    record = make_key("EdDSA", "next", SEALER, created_at).record
    if state == "active":
        return replace(record, state="active", activated_at=created_at)
    if state == "retired":
        return replace(record, state="retired", activated_at=created_at, retired_at=created_at)
    return replace(record, state=state)  # type: ignore[arg-type]


def apply(records: Sequence[KeyRecord], transition: Transition) -> dict[str, KeyRecord]:
    """Writes the transition row by row, as the store does, checking the one-active rule
    after every row (the partial unique index checks each statement)."""
    result = {r.kid: r for r in records}
    for record in transition.changed:
        result[record.kid] = record
        assert sum(r.state == "active" for r in result.values()) <= 1
    return result


def states(result: dict[str, KeyRecord]) -> dict[str, str]:
    return {kid: r.state for kid, r in result.items()}


def test_rotation_promotes_a_next_key_published_long_enough() -> None:
    active, nxt, candidate = key("active"), key("next", NOW - MIN_AGE), key("next", NOW)

    transition = rotate([active, nxt], candidate, now=NOW, min_age=MIN_AGE)
    result = apply([active, nxt], transition)

    assert states(result) == {active.kid: "retired", nxt.kid: "active", candidate.kid: "next"}
    assert result[active.kid].retired_at == NOW
    assert result[nxt.kid].activated_at == NOW
    assert [(e.action, e.kid) for e in transition.events] == [
        ("key.made", candidate.kid),
        ("key.retired", active.kid),
        ("key.activated", nxt.kid),
    ]


def test_a_young_next_key_is_not_promoted_and_says_when_it_will_be() -> None:
    active, nxt = key("active"), key("next", NOW - 100)

    with pytest.raises(KeyNotReady) as caught:
        rotate([active, nxt], key("next", NOW), now=NOW, min_age=MIN_AGE)

    assert caught.value.retry_after == MIN_AGE - 100
    assert (caught.value.status, caught.value.code) == (409, "key_not_ready")


def test_force_promotes_a_young_next_key() -> None:
    active, nxt, candidate = key("active"), key("next", NOW), key("next", NOW)

    result = apply(
        [active, nxt], rotate([active, nxt], candidate, now=NOW, min_age=MIN_AGE, force=True)
    )

    assert states(result) == {active.kid: "retired", nxt.kid: "active", candidate.kid: "next"}


def test_without_a_next_key_only_a_forced_rotation_signs_with_a_new_key() -> None:
    active, candidate = key("active"), key("next", NOW)

    with pytest.raises(KeyNotReady):
        rotate([active], candidate, now=NOW, min_age=MIN_AGE)
    result = apply([active], rotate([active], candidate, now=NOW, min_age=MIN_AGE, force=True))

    assert states(result) == {active.kid: "retired", candidate.kid: "active"}


def test_revoking_the_active_key_rotates_first_and_never_retires_it() -> None:
    active, nxt, candidate = key("active"), key("next", NOW), key("next", NOW)

    transition = revoke([active, nxt], active.kid, candidate, now=NOW)
    result = apply([active, nxt], transition)

    assert states(result) == {active.kid: "revoked", nxt.kid: "active", candidate.kid: "next"}
    assert result[active.kid].revoked_at == NOW
    assert result[active.kid].retired_at is None
    assert {(e.action, e.kid) for e in transition.events} == {
        ("key.revoked", active.kid),
        ("key.made", candidate.kid),
        ("key.activated", nxt.kid),
    }


def test_revoking_the_next_key_publishes_another_in_its_place() -> None:
    active, nxt, candidate = key("active"), key("next"), key("next", NOW)

    result = apply([active, nxt], revoke([active, nxt], nxt.kid, candidate, now=NOW))

    assert states(result) == {active.kid: "active", nxt.kid: "revoked", candidate.kid: "next"}


def test_revoking_a_retired_key_touches_nothing_else() -> None:
    retired, active, nxt = key("retired"), key("active"), key("next")

    transition = revoke([retired, active, nxt], retired.kid, key("next", NOW), now=NOW)

    assert [(r.kid, r.state) for r in transition.changed] == [(retired.kid, "revoked")]
    assert [e.action for e in transition.events] == ["key.revoked"]


def test_revoking_twice_changes_nothing_and_an_unknown_kid_is_not_found() -> None:
    revoked = replace(key("retired"), state="revoked", revoked_at=NOW - 5)

    assert revoke([revoked], revoked.kid, key("next", NOW), now=NOW) == Transition((), ())
    with pytest.raises(UnknownKey):
        revoke([revoked], "no-such-kid", key("next", NOW), now=NOW)


def test_a_revoked_key_leaves_the_jwks_at_once_and_a_retired_one_after_its_tokens() -> None:
    active, nxt, candidate = key("active"), key("next", NOW - MIN_AGE), key("next", NOW)
    rotated = apply([active, nxt], rotate([active, nxt], candidate, now=NOW, min_age=MIN_AGE))
    ttl = 930

    ring = KeyRing(rotated.values(), SEALER, now=NOW + ttl - 1, retired_ttl=ttl)
    assert active.kid in ring.verification
    ring = KeyRing(rotated.values(), SEALER, now=NOW + ttl, retired_ttl=ttl)
    assert active.kid not in ring.verification

    revoked = apply(
        list(rotated.values()), revoke(list(rotated.values()), nxt.kid, key("next"), now=NOW)
    )
    ring = KeyRing(revoked.values(), SEALER, now=NOW, retired_ttl=ttl)
    assert nxt.kid not in ring.verification
    assert nxt.kid not in ring.jwks_body.decode()
    assert ring.signing.kid == candidate.kid

"""SQL behind refresh families: starting them, rotating their tokens, revoking them.

Each method is one short transaction. The refresh hot path is written in plain SQL so it stays
one round trip on Postgres (a data-modifying CTE) and one locked transaction on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, insert, literal, or_, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.audit import AuditEvent
from authserver.db.audit import append_audit
from authserver.db.columns import family_id as read_family_id
from authserver.db.columns import family_key, stored_hash
from authserver.db.direct import fetch_row
from authserver.db.dpop import FIRST_USE, fetch_proved, proof_params, proved
from authserver.db.engine import is_postgres, single_statements
from authserver.db.models import FamilyRow
from authserver.db.predicates import client_enabled, client_may_refresh, user_enabled
from authserver.tokens.dpop import FirstUse, replayed
from authserver.tokens.refresh import (
    Family,
    Presented,
    Session,
    Spent,
    TokenState,
    family_revoked,
)
from authserver.tokens.scopes import still_held

# amr and auth_time ride along: the rotating statement returns them, so every access token of
# a family says how its user signed in, with no read of its own.
_FAMILY_COLUMNS = (
    "f.id, f.user_id, f.client_id, f.scope, f.created_at, f.expires_at, f.revoked_at, f.user_agent"
    ", f.resources, f.amr, f.auth_time, f.dpop_jkt"
)


# A disabled or deleted user's or client's family does not rotate, decided in the rotating
# statement itself (disabling also revokes the families; this holds whatever escaped that).
# Nor does the family of a client no longer registered with the refresh_token grant
# (db/predicates.py). Two primary-key probes, no write.
_CLIENT_MAY_REFRESH = f"{client_enabled('c')} AND {client_may_refresh('c')}"
_USER_ENABLED = (
    f"EXISTS (SELECT 1 FROM users AS u WHERE u.id = f.user_id AND {user_enabled('u')})"
    " AND EXISTS (SELECT 1 FROM clients AS c WHERE c.client_id = f.client_id"
    f" AND {_CLIENT_MAY_REFRESH})"
)
# What the user and the client hold now, read with the family: a refresh issues no more
# (Spent.issuable), so a privilege taken away reaches live sessions at their next refresh.
# The user's roles likewise: the access token carries the roles of the user as it rotates.
_HELD = "u.scopes AS user_scopes, c.scopes AS client_scopes, u.roles AS user_roles"


# RFC 9449 §5: a public client's refresh token bound to a DPoP key rotates only with a proof
# of that key, decided in the rotating statement (rotate() then tells reuse from no proof).
_KEY_MATCHES = "(f.dpop_jkt IS NULL OR f.dpop_jkt = CAST(:jkt AS VARCHAR))"


# The live token's idle end: the successor's, never past the family's (portable: no LEAST on
# SQLite).
_SUCCESSOR_ENDS = "CASE WHEN :new_expires_at < expires_at THEN :new_expires_at ELSE expires_at END"


# Postgres, a token that names its family (0030): the live token and its parent (the token
# spent last) are in the family's row, so the rotation is one UPDATE of that row by its
# primary key, where the live hash is the one presented: the live token becomes the parent,
# and the parent it replaces (`was`, as the statement began) goes to spent_refresh_tokens, the
# only insert. No indexed column changes: a HOT update. A racing UPDATE on the same row waits
# for the winner, re-checks `token_hash` on the new row version, and matches nothing (so `was`
# is never stale when it matches: only a rotation changes the parent, and it changes
# token_hash too). The user's and the client's rows are joined (primary-key probes), so the
# scopes it returns are the ones this statement saw enabled: one snapshot.
_ROTATE_CTES = f"""spent AS (
    UPDATE refresh_families AS f
    SET token_hash = :new_hash, parent_hash = f.token_hash, parent_spent_at = :now,
        token_issued_at = :now, token_expires_at = LEAST(:new_expires_at, f.expires_at)
    FROM users AS u, clients AS c,
         (SELECT parent_hash, parent_spent_at FROM refresh_families WHERE id = :family_id) AS was
    WHERE f.id = :family_id AND f.token_hash = :token_hash AND f.token_expires_at > :now
      AND f.client_id = :client_id
      AND f.revoked_at IS NULL AND f.expires_at > :now AND {_KEY_MATCHES}
      AND u.id = f.user_id AND {user_enabled("u")}
      AND c.client_id = f.client_id AND {_CLIENT_MAY_REFRESH}
      {{proved}}
    RETURNING {_FAMILY_COLUMNS}, {_HELD}, was.parent_hash AS was_hash,
              was.parent_spent_at AS was_spent_at
), gone AS (
    INSERT INTO spent_refresh_tokens (family_id, token_hash, spent_at)
    SELECT id, was_hash, was_spent_at FROM spent WHERE was_hash IS NOT NULL
)"""
_ROTATE_POSTGRES = text(f"WITH {_ROTATE_CTES.format(proved='')}\nSELECT * FROM spent")
_ROTATE_PROVED_POSTGRES = proved(_ROTATE_CTES)


# Postgres, a token from before 0030 (no family in it; its family's live columns NULL): spend
# it in refresh_tokens as before, and put its successor in the family's row. A racing UPDATE
# on the same token waits for the winner, re-checks `spent_at IS NULL`, and matches nothing.
_SPEND_CTES = f"""spent AS (
    UPDATE refresh_tokens AS t SET spent_at = :now
    FROM refresh_families AS f, users AS u, clients AS c
    WHERE t.token_hash = :token_hash AND t.spent_at IS NULL AND t.expires_at > :now
      AND f.id = t.family_id AND f.client_id = :client_id
      AND f.revoked_at IS NULL AND f.expires_at > :now AND {_KEY_MATCHES}
      AND u.id = f.user_id AND {user_enabled("u")}
      AND c.client_id = f.client_id AND {_CLIENT_MAY_REFRESH}
      {{proved}}
    RETURNING {_FAMILY_COLUMNS}, {_HELD}
), successor AS (
    UPDATE refresh_families AS n
    SET token_hash = :new_hash, parent_hash = CAST(:token_hash AS BYTEA), parent_spent_at = :now,
        token_issued_at = :now, token_expires_at = LEAST(:new_expires_at, n.expires_at)
    FROM spent WHERE n.id = spent.id
)"""
_SPEND_POSTGRES = text(f"WITH {_SPEND_CTES.format(proved='')}\nSELECT * FROM spent")

# ... with a DPoP proof: its jti recorded in the same statement (db/dpop.py).
_SPEND_PROVED_POSTGRES = proved(_SPEND_CTES)


# The family a token may still rotate in: alive, the client's, its user enabled, and, when
# bound to a DPoP key, presented with a proof of that key.
_LIVE_FAMILIES = f"""SELECT f.id FROM refresh_families AS f
                    WHERE f.client_id = :client_id AND f.revoked_at IS NULL
                      AND f.expires_at > :now AND {_USER_ENABLED} AND {_KEY_MATCHES}"""


# Portable, a token that names its family: as _ROTATE_CTES, in BEGIN IMMEDIATE (the parent
# it replaces read first: _PARENT_OF).
_ROTATE = text(f"""
UPDATE refresh_families
SET token_hash = :new_hash, parent_hash = token_hash, parent_spent_at = :now,
    token_issued_at = :now, token_expires_at = {_SUCCESSOR_ENDS}
WHERE id = :family_id AND token_hash = :token_hash AND token_expires_at > :now
  AND id IN ({_LIVE_FAMILIES})
RETURNING id
""")
_PARENT_OF = text("SELECT parent_hash, parent_spent_at FROM refresh_families WHERE id = :family_id")

# Portable, a token from before 0030: spend only in a live family; RETURNING names the family.
_SPEND = text(f"""
UPDATE refresh_tokens SET spent_at = :now
WHERE token_hash = :token_hash AND spent_at IS NULL AND expires_at > :now
  AND family_id IN ({_LIVE_FAMILIES})
RETURNING family_id
""")

# The successor of a token spent in refresh_tokens: in its family's row from now on (its
# parent stays in refresh_tokens too, spent; the family's row names it for the grace retry).
_LIVE_SUCCESSOR = text(f"""
UPDATE refresh_families
SET token_hash = :new_hash, parent_hash = :token_hash, parent_spent_at = :parent_spent_at,
    token_issued_at = :now, token_expires_at = {_SUCCESSOR_ENDS}
WHERE id = :family_id
""")

_INSERT_SPENT = text("""
INSERT INTO spent_refresh_tokens (family_id, token_hash, spent_at)
VALUES (:family_id, :token_hash, :now)
""")


# Grace: the family's live token and its parent, the row locked; for a parent from before
# 0030, its family and spend time first.
_SPENT_LEGACY_PARENT = text(
    "SELECT family_id, spent_at FROM refresh_tokens WHERE token_hash = :parent_hash"
)
_LIVE_OF = (
    "SELECT token_hash, parent_hash, parent_spent_at FROM refresh_families WHERE id = :family_id"
)
_LOCK_LIVE = text(_LIVE_OF + " FOR UPDATE")
_READ_LIVE = text(_LIVE_OF)

# ... the live child of the parent, in the family's row: replaced by a new child of the parent.
_ROTATE_CHILD = text(f"""
UPDATE refresh_families
SET token_hash = :new_hash, token_issued_at = :now, token_expires_at = {_SUCCESSOR_ENDS}
WHERE id = :family_id AND token_hash = :child_hash AND parent_hash = :parent_hash
  AND token_expires_at > :now AND id IN ({_LIVE_FAMILIES})
RETURNING id
""")

# ... or, in a family from before 0030, the child in refresh_tokens.
_SPEND_LEGACY_CHILD = text(f"""
UPDATE refresh_tokens SET spent_at = :now
WHERE family_id = :family_id AND parent_hash = :parent_hash AND spent_at IS NULL
  AND expires_at > :now AND family_id IN ({_LIVE_FAMILIES})
RETURNING family_id
""")


# A login starts a family only for a user who is still enabled (deleting disables too), whose
# password is still the one the login checked, when it commits. The UPDATE that records the
# login time is that check, and its row lock holds the user until then: a concurrent disable,
# delete, password change or demotion waits for this login and then revokes its family with
# the rest, or commits first and this matches no row, or returns the scopes the user holds now
# (a demoted user's login that read the row before is refused). (SQLite: BEGIN IMMEDIATE
# already serialises.)
_LOGGED_IN = text(f"""
UPDATE users SET last_login_at = :now
WHERE id = :user_id AND {user_enabled(None)}
  AND (CAST(:password_hash AS VARCHAR) IS NULL OR password_hash = :password_hash)
RETURNING scopes
""")


# ... and for a client still enabled: FOR SHARE holds its row, as above (Postgres).
_ENABLED_CLIENT = (
    f"SELECT scopes FROM clients WHERE client_id = :client_id AND {client_enabled(None)}"
)
_LOCK_ENABLED_CLIENT = text(_ENABLED_CLIENT + " FOR SHARE")
_CHECK_ENABLED_CLIENT = text(_ENABLED_CLIENT)


# Live: not revoked, not over, and its newest token unspent and not idle past its end (in
# the family's row, or in refresh_tokens for a family whose tokens are all from before 0030).
# The client's name for the account page; the user agent of the browser whose login session
# started the family when the family has none of its own (a code exchange comes from the
# client's server, whose user agent says nothing of the person's browser).
_SESSIONS = text("""
SELECT f.id, f.client_id, f.created_at, COALESCE(f.user_agent, s.user_agent) AS user_agent,
       COALESCE(f.token_issued_at, t.issued_at) AS last_used_at,
       COALESCE(f.token_expires_at, t.expires_at) AS token_expires_at, c.client_name
FROM refresh_families AS f
LEFT JOIN refresh_tokens AS t ON f.token_hash IS NULL AND t.family_id = f.id
     AND t.spent_at IS NULL AND t.expires_at > :now
LEFT JOIN clients AS c ON c.client_id = f.client_id
LEFT JOIN login_sessions AS s ON s.id = f.login_session_id
WHERE f.user_id = :user_id AND f.revoked_at IS NULL AND f.expires_at > :now
  AND (f.token_expires_at > :now OR t.token_hash IS NOT NULL)
ORDER BY f.created_at DESC, f.id
""")


_FAMILY_BY_ID = text(f"SELECT {_FAMILY_COLUMNS} FROM refresh_families AS f WHERE f.id = :id")
# In the transaction that spent a token (SQLite's holds the write lock; Postgres's reads what
# is committed after its UPDATE, never older).
_SPENT_BY_ID = text(f"""
SELECT {_FAMILY_COLUMNS}, {_HELD}
FROM refresh_families AS f JOIN users AS u ON u.id = f.user_id
JOIN clients AS c ON c.client_id = f.client_id
WHERE f.id = :id
""")


# A token that names its family: the family's row (its live token and the last spent), and
# the spent hash if it is an older one.
_FIND_IN_FAMILY = text(f"""
SELECT f.token_hash AS live_hash, f.token_issued_at AS t_issued_at,
       f.token_expires_at AS t_expires_at, f.parent_hash, f.parent_spent_at,
       s.spent_at AS t_spent_at, {_FAMILY_COLUMNS}
FROM refresh_families AS f
LEFT JOIN spent_refresh_tokens AS s ON s.family_id = f.id AND s.token_hash = :token_hash
WHERE f.id = :family_id
""")

_UNSPENT_APART = text(
    "SELECT 1 FROM refresh_tokens WHERE token_hash = :token_hash AND spent_at IS NULL"
)

# A token from before 0030.
_FIND = text(f"""
SELECT t.issued_at AS t_issued_at, t.expires_at AS t_expires_at, t.spent_at AS t_spent_at,
       {_FAMILY_COLUMNS}
FROM refresh_tokens AS t JOIN refresh_families AS f ON f.id = t.family_id
WHERE t.token_hash = :token_hash
""")


def _spent(row: Any) -> Spent:
    """From a row of `_family`'s columns and `_HELD`'s."""
    return Spent(
        _family(row),
        tuple(row["user_scopes"].split()),
        tuple(row["client_scopes"].split()),
        tuple(row["user_roles"].split()),
    )


def _family(row: Any) -> Family:
    """From a row by column name: a SQLAlchemy row's `_mapping`, or an asyncpg record."""
    return Family(
        id=read_family_id(row["id"]),
        user_id=row["user_id"],
        client_id=row["client_id"],
        scope=row["scope"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        user_agent=row["user_agent"],
        resources=tuple((row["resources"] or "").split()),
        amr=None if row["amr"] is None else tuple(row["amr"].split()),
        auth_time=row["auth_time"],
        dpop_jkt=row["dpop_jkt"],
    )


async def _spent_in(conn: AsyncConnection, family_id: object) -> Spent:
    """The family whose token this transaction spent, with what its user and client hold."""
    return _spent((await conn.execute(_SPENT_BY_ID, {"id": family_id})).one()._mapping)


async def _spend_sqlite(
    conn: AsyncConnection, family_id: str | None, params: dict[str, Any]
) -> Spent | None:
    """SQLite, in BEGIN IMMEDIATE: the spend and the successor, or None when nothing matched."""
    if family_id is not None:
        was = (await conn.execute(_PARENT_OF, params)).first()
        if was is None or (await conn.execute(_ROTATE, params)).first() is None:
            return None
        if was.parent_hash is not None:
            spent = {"family_id": family_id, "token_hash": was.parent_hash}
            await conn.execute(_INSERT_SPENT, {**spent, "now": was.parent_spent_at})
        return await _spent_in(conn, family_id)
    spent_in = (await conn.execute(_SPEND, params)).scalar()
    if spent_in is None:
        return None
    successor = {**params, "family_id": spent_in, "parent_spent_at": params["now"]}
    await conn.execute(_LIVE_SUCCESSOR, successor)
    return await _spent_in(conn, spent_in)


class SqlFamilyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        self._postgres = is_postgres(engine)

    async def start(
        self,
        family: Family,
        token_hash: str,
        expires_at: int,
        audit: Sequence[AuditEvent] = (),
        password_hash: str | None = None,
    ) -> bool:
        check_client = _LOCK_ENABLED_CLIENT if self._postgres else _CHECK_ENABLED_CLIENT
        login = {
            "user_id": family.user_id,
            "now": family.created_at,
            "password_hash": password_hash,
        }
        async with self._engine.begin() as conn:
            client = (await conn.execute(check_client, {"client_id": family.client_id})).first()
            if client is None:
                return False
            user = (await conn.execute(_LOGGED_IN, login)).first()
            if user is None:
                return False
            held = still_held(
                family.scope, tuple(user.scopes.split()), tuple(client.scopes.split())
            )
            if held.split() != family.scope.split():  # a scope lost since it was computed
                await conn.rollback()  # not even the login time
                return False
            await conn.execute(
                insert(FamilyRow).values(
                    id=family.id,
                    user_id=family.user_id,
                    client_id=family.client_id,
                    scope=family.scope,
                    created_at=family.created_at,
                    expires_at=family.expires_at,
                    user_agent=family.user_agent,
                    resources=" ".join(family.resources) or None,
                    amr=None if family.amr is None else " ".join(family.amr),
                    auth_time=family.auth_time,
                    dpop_jkt=family.dpop_jkt,
                    token_hash=stored_hash(token_hash),
                    token_issued_at=family.created_at,
                    token_expires_at=expires_at,
                )
            )
            await append_audit(conn, audit)
        return True

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
        spent, successor = stored_hash(token.hash), stored_hash(new_hash)
        params = {
            "token_hash": spent,
            "client_id": client_id,
            "now": now,
            "new_hash": successor,
            "new_expires_at": new_expires_at,
            "jkt": jkt,
        }
        if token.family_id is not None:
            params["family_id"] = token.family_id
        if self._postgres:
            # The statement every refresh runs: straight through asyncpg (db/direct.py).
            if token.family_id is None:
                plain, with_proof = _SPEND_POSTGRES, _SPEND_PROVED_POSTGRES
            else:
                plain, with_proof = _ROTATE_POSTGRES, _ROTATE_PROVED_POSTGRES
            if first_use is None:
                row = await fetch_row(self._engine, plain, params)
            else:
                row = await fetch_proved(self._engine, with_proof, params, first_use, "id")
            if row is None and token.family_id is not None and await self._stored_apart(spent):
                # Issued before a downgrade of 0030 and an upgrade again: its proof's jti, if
                # any, is recorded already.
                row = await fetch_row(self._engine, _SPEND_POSTGRES, params)
            return None if row is None else _spent(row)
        async with self._engine.begin() as conn:
            # BEGIN IMMEDIATE holds the write lock: the jti recorded with the spend, one commit.
            proof = None if first_use is None else proof_params(first_use)
            if proof is not None and (await conn.execute(FIRST_USE, proof)).first() is None:
                raise replayed()
            result = await _spend_sqlite(conn, token.family_id, params)
            if result is None and token.family_id is not None:
                result = await _spend_sqlite(conn, None, params)  # as above
        if first_use is not None:
            first_use.recorded = True
        return result

    async def _stored_apart(self, token_hash: bytes) -> bool:
        """Whether a token that names its family is live in refresh_tokens all the same: put
        there by a downgrade of 0030 (which keeps every session), then upgraded again."""
        async with self._single.connect() as conn:
            found = await conn.execute(_UNSPENT_APART, {"token_hash": token_hash})
            return found.first() is not None

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
        params: dict[str, object] = {
            "family_id": parent.family_id,
            "parent_hash": stored_hash(parent.hash),
            "client_id": client_id,
            "now": now,
            "new_hash": stored_hash(new_hash),
            "new_expires_at": new_expires_at,
            "jkt": jkt,
        }
        legacy_spent_at = None
        async with self._engine.begin() as conn:
            if parent.family_id is None:  # from before 0030: its family and spend time first
                legacy = (await conn.execute(_SPENT_LEGACY_PARENT, params)).first()
                if legacy is None or legacy.spent_at is None:
                    return None
                params["family_id"], legacy_spent_at = legacy.family_id, legacy.spent_at
            # Racing grace retries queue on the family's row, so each sees the child the
            # previous one stored (SQLite's BEGIN IMMEDIATE already serialises).
            lock = _LOCK_LIVE if self._postgres else _READ_LIVE
            live = (await conn.execute(lock, params)).first()
            if live is None:
                return None
            family_id = params["family_id"]
            if live.token_hash is not None:  # the live child in the family's row
                if live.parent_hash != params["parent_hash"]:
                    return None  # not the parent of the live token
                if live.parent_spent_at < parent_spent_after:
                    return None
                params["child_hash"] = live.token_hash
                if (await conn.execute(_ROTATE_CHILD, params)).first() is None:
                    return None
                spent = {"family_id": family_id, "token_hash": live.token_hash, "now": now}
                await conn.execute(_INSERT_SPENT, spent)
                return await _spent_in(conn, family_id)
            # A family from before 0030 (or put back by its downgrade): the child in
            # refresh_tokens, the parent too.
            if legacy_spent_at is None:
                legacy = (await conn.execute(_SPENT_LEGACY_PARENT, params)).first()
                ours = legacy is not None and str(legacy.family_id) == str(family_id)
                legacy_spent_at = legacy.spent_at if ours and legacy is not None else None
            if legacy_spent_at is None or legacy_spent_at < parent_spent_after:
                return None
            if (await conn.execute(_SPEND_LEGACY_CHILD, params)).first() is None:
                return None
            successor = {
                **params,
                "token_hash": params["parent_hash"],
                "parent_spent_at": legacy_spent_at,
            }
            await conn.execute(_LIVE_SUCCESSOR, successor)
            return await _spent_in(conn, family_id)

    async def find(self, token: Presented) -> TokenState | None:
        params = {"token_hash": stored_hash(token.hash), "family_id": token.family_id}
        async with self._single.connect() as conn:
            if token.family_id is not None:
                found = (await conn.execute(_FIND_IN_FAMILY, params)).first()
                if found is not None and found.live_hash == params["token_hash"]:
                    row = found._mapping
                    return TokenState(_family(row), row["t_issued_at"], row["t_expires_at"], None)
                if found is not None:
                    last = found.parent_hash == params["token_hash"]
                    spent_at = found.parent_spent_at if last else found.t_spent_at
                    if spent_at is not None:
                        # A spent token's issue time and idle end are not kept: past anyway.
                        return TokenState(_family(found._mapping), spent_at, spent_at, spent_at)
            # From before 0030, or put back there by its downgrade. Else none: a forged
            # `<family id>.<secret>` is unknown, not a reuse of the family's.
            legacy = (await conn.execute(_FIND, params)).first()
        if legacy is None:
            return None
        row = legacy._mapping
        return TokenState(_family(row), row["t_issued_at"], row["t_expires_at"], row["t_spent_at"])

    async def revoke(
        self, family_id: str, reason: str, now: int, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        if family_key(family_id) is None:
            return False  # no family has it
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(FamilyRow)
                .where(FamilyRow.id == family_id, FamilyRow.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )
            changed = bool(result.rowcount)
            if changed:  # a racing revocation already wrote its own events
                await append_audit(conn, audit)
        return changed

    async def revoke_user(
        self,
        user_id: str,
        reason: str,
        now: int,
        actor: str | None = None,
        *,
        keep_login_session: str | None = None,
    ) -> int:
        which = FamilyRow.user_id == user_id
        if keep_login_session is not None:
            started_elsewhere = or_(
                FamilyRow.login_session_id.is_(None),
                FamilyRow.login_session_id != keep_login_session,
            )
            which = and_(which, started_elsewhere)
        return await self._revoke_every(which, reason, now, actor)

    async def revoke_client(self, client_id: str, reason: str, now: int, actor: str) -> int:
        return await self._revoke_every(FamilyRow.client_id == client_id, reason, now, actor)

    async def revoke_user_holding(
        self, user_id: str, scope: str, *, reason: str, now: int, actor: str
    ) -> int:
        # A whole space-delimited token of the stored scope (RFC 6749 §3.3); escaped, for a
        # scope token may hold % and _.
        holds = (literal(" ") + FamilyRow.scope + literal(" ")).contains(
            f" {scope} ", autoescape=True
        )
        return await self._revoke_every(
            and_(FamilyRow.user_id == user_id, holds), reason, now, actor
        )

    async def _revoke_every(
        self, which: ColumnElement[bool], reason: str, now: int, actor: str | None
    ) -> int:
        """Revokes every live family `which` selects; with `actor`, one `family.revoked`
        audit event per family, in the same transaction."""
        async with self._engine.begin() as conn:
            revoked = (
                await conn.execute(
                    update(FamilyRow)
                    .where(which, FamilyRow.revoked_at.is_(None))
                    .values(revoked_at=now, revoked_reason=reason)
                    .returning(FamilyRow.id, FamilyRow.user_id, FamilyRow.client_id)
                )
            ).all()
            if actor is not None:
                await append_audit(
                    conn,
                    [
                        family_revoked(
                            row.id, row.user_id, row.client_id, reason=reason, actor=actor, now=now
                        )
                        for row in revoked
                    ],
                )
        return len(revoked)

    async def get(self, family_id: str) -> Family | None:
        if family_key(family_id) is None:
            return None  # a sid from a request that is no family's: none has it
        async with self._single.connect() as conn:
            row = (await conn.execute(_FAMILY_BY_ID, {"id": family_id})).first()
        return _family(row._mapping) if row else None

    async def sessions(self, user_id: str, now: int) -> list[Session]:
        async with self._single.connect() as conn:
            rows = (await conn.execute(_SESSIONS, {"user_id": user_id, "now": now})).all()
        return [
            Session(
                sid=read_family_id(row.id),
                client_id=row.client_id,
                created_at=row.created_at,
                last_used_at=row.last_used_at,
                expires_at=row.token_expires_at,
                user_agent=row.user_agent,
                client_name=row.client_name,
            )
            for row in rows
        ]

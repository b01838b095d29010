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
from authserver.tokens.refresh import Family, Session, Spent, TokenState, family_revoked
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


# Postgres: spend and insert the successor in one statement. A racing UPDATE on the same row
# waits for the winner, re-checks `spent_at IS NULL` on the new row version, and matches nothing.
# The user's and the client's rows are joined (primary-key probes, as EXISTS would be), so the
# scopes it returns are the ones this statement saw enabled: one snapshot, no second read.
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
    INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at)
    SELECT CAST(:new_hash AS BYTEA), id, CAST(:token_hash AS BYTEA), :now,
           LEAST(:new_expires_at, expires_at)
    FROM spent
)"""
_SPEND_POSTGRES = text(f"WITH {_SPEND_CTES.format(proved='')}\nSELECT * FROM spent")

# ... with a DPoP proof: its jti recorded in the same statement (db/dpop.py).
_SPEND_PROVED_POSTGRES = proved(_SPEND_CTES)


# The family a token may still rotate in: alive, the client's, its user enabled, and, when
# bound to a DPoP key, presented with a proof of that key.
_LIVE_FAMILIES = f"""SELECT f.id FROM refresh_families AS f
                    WHERE f.client_id = :client_id AND f.revoked_at IS NULL
                      AND f.expires_at > :now AND {_USER_ENABLED} AND {_KEY_MATCHES}"""


# Portable: spend only in a live family; RETURNING names the family.
_SPEND = text(f"""
UPDATE refresh_tokens SET spent_at = :now
WHERE token_hash = :token_hash AND spent_at IS NULL AND expires_at > :now
  AND family_id IN ({_LIVE_FAMILIES})
RETURNING family_id
""")


# Grace: the child is looked for in the parent's family (a primary-key probe, then
# ix_refresh_tokens_family_id), so parent_hash needs no index of its own. No family when the
# parent was not spent recently enough: then nothing matches.
_SPEND_SUCCESSOR = text(f"""
UPDATE refresh_tokens SET spent_at = :now
WHERE family_id = (SELECT p.family_id FROM refresh_tokens AS p
                   WHERE p.token_hash = :parent_hash AND p.spent_at >= :parent_spent_after)
  AND parent_hash = :parent_hash AND spent_at IS NULL AND expires_at > :now
  AND family_id IN ({_LIVE_FAMILIES})
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


# Live: not revoked, not over, and its newest token unspent and not idle past its end. The
# client's name for the account page; the user agent of the browser whose login session started
# the family when the family has none of its own (a code exchange comes from the client's
# server, whose user agent says nothing of the person's browser).
_SESSIONS = text("""
SELECT f.id, f.client_id, f.created_at, COALESCE(f.user_agent, s.user_agent) AS user_agent,
       t.issued_at AS last_used_at, t.expires_at AS token_expires_at, c.client_name
FROM refresh_families AS f JOIN refresh_tokens AS t ON t.family_id = f.id
LEFT JOIN clients AS c ON c.client_id = f.client_id
LEFT JOIN login_sessions AS s ON s.id = f.login_session_id
WHERE f.user_id = :user_id AND f.revoked_at IS NULL AND f.expires_at > :now
  AND t.spent_at IS NULL AND t.expires_at > :now
ORDER BY f.created_at DESC, f.id
""")


_LOCK_PARENT = text("SELECT 1 FROM refresh_tokens WHERE token_hash = :parent_hash FOR UPDATE")


_INSERT_TOKEN = text("""
INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at)
VALUES (:token_hash, :family_id, :parent_hash, :issued_at, :expires_at)
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


async def _add_successor(
    conn: AsyncConnection,
    family_id: object,
    parent_hash: bytes,
    new_hash: bytes,
    now: int,
    new_expires_at: int,
) -> Spent:
    """Stores the token that follows `parent_hash`; it never outlives its family."""
    spent = _spent((await conn.execute(_SPENT_BY_ID, {"id": family_id})).one()._mapping)
    family = spent.family
    await conn.execute(
        _INSERT_TOKEN,
        {
            "token_hash": new_hash,
            "family_id": family_id,
            "parent_hash": parent_hash,
            "issued_at": now,
            "expires_at": min(new_expires_at, family.expires_at),
        },
    )
    return spent


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
                )
            )
            await conn.execute(
                _INSERT_TOKEN,
                {
                    "token_hash": stored_hash(token_hash),
                    "family_id": family.id,
                    "parent_hash": None,
                    "issued_at": family.created_at,
                    "expires_at": expires_at,
                },
            )
            await append_audit(conn, audit)
        return True

    async def spend(
        self,
        token_hash: str,
        client_id: str,
        now: int,
        new_hash: str,
        new_expires_at: int,
        jkt: str | None = None,
        first_use: FirstUse | None = None,
    ) -> Spent | None:
        spent, successor = stored_hash(token_hash), stored_hash(new_hash)
        params = {
            "token_hash": spent,
            "client_id": client_id,
            "now": now,
            "new_hash": successor,
            "new_expires_at": new_expires_at,
            "jkt": jkt,
        }
        if self._postgres:
            # The statement every refresh runs: straight through asyncpg (db/direct.py).
            if first_use is None:
                row = await fetch_row(self._engine, _SPEND_POSTGRES, params)
                return _spent(row) if row else None
            row = await fetch_proved(self._engine, _SPEND_PROVED_POSTGRES, params, first_use, "id")
            return None if row is None else _spent(row)
        async with self._engine.begin() as conn:
            # BEGIN IMMEDIATE holds the write lock: the jti recorded with the spend, one commit.
            proof = None if first_use is None else proof_params(first_use)
            if proof is not None and (await conn.execute(FIRST_USE, proof)).first() is None:
                raise replayed()
            family_id = (await conn.execute(_SPEND, params)).scalar()
            result = (
                None
                if family_id is None
                else await _add_successor(conn, family_id, spent, successor, now, new_expires_at)
            )
        if first_use is not None:
            first_use.recorded = True
        return result

    async def spend_successor(
        self,
        parent_hash: str,
        client_id: str,
        now: int,
        parent_spent_after: int,
        new_hash: str,
        new_expires_at: int,
        jkt: str | None = None,
    ) -> Spent | None:
        parent = stored_hash(parent_hash)
        params = {
            "parent_hash": parent,
            "client_id": client_id,
            "now": now,
            "parent_spent_after": parent_spent_after,
            "new_expires_at": new_expires_at,
            "jkt": jkt,
        }
        async with self._engine.begin() as conn:
            if self._postgres:
                # Racing grace retries queue here, so each UPDATE (a fresh READ COMMITTED
                # snapshot) sees the child the previous one inserted, rather than none at all,
                # which would be taken for theft. SQLite's BEGIN IMMEDIATE already serialises.
                await conn.execute(_LOCK_PARENT, params)
            family_id = (await conn.execute(_SPEND_SUCCESSOR, params)).scalar()
            if family_id is None:
                return None
            successor = stored_hash(new_hash)
            return await _add_successor(conn, family_id, parent, successor, now, new_expires_at)

    async def find(self, token_hash: str) -> TokenState | None:
        async with self._single.connect() as conn:
            row = (await conn.execute(_FIND, {"token_hash": stored_hash(token_hash)})).first()
        if row is None:
            return None
        return TokenState(_family(row._mapping), row.t_issued_at, row.t_expires_at, row.t_spent_at)

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

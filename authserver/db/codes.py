"""SQL behind authorization codes: issuing them, and settling their single use.

The exchange is one transaction: one conditional UPDATE spends the code (a racing UPDATE of the
same row waits for the winner, re-checks `used_at IS NULL` on the row it committed and matches
nothing; SQLite's BEGIN IMMEDIATE serialises them outright), then the user and the login session
are locked FOR SHARE (Postgres) while the family is stored, so a disable or an /end-session
either waits for this exchange and then revokes its family, or commits first and this stores
nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.audit import AuditEvent
from authserver.db.accounts import profile_of
from authserver.db.audit import append_audit
from authserver.db.columns import family_id, stored_hash
from authserver.db.direct import fetch_row
from authserver.db.dpop import FIRST_USE, fetch_proved, proof_params, proved
from authserver.db.engine import is_postgres, single_statements
from authserver.db.predicates import login_session_live, user_enabled
from authserver.tokens.authorization_codes import (
    AuthorizationCode,
    Redeemed,
    Redemption,
    StoredCode,
    redeemed_event,
)
from authserver.tokens.dpop import replayed
from authserver.tokens.scopes import EVERY_USER_HOLDS

_COLUMNS = """client_id, user_id, login_session_id, redirect_uri, redirect_uri_given,
              code_challenge, scope, nonce, auth_time, expires_at, amr, resources, dpop_jkt"""
# What the exchange reads of the code's user, in the statement that spends it (`Redeemed`).
_HOLDER = "username, email, email_verified, name, given_name, family_name, locale, roles"


def _qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in columns.split(","))


# Only for a live login session of an enabled user, decided in the inserting statement.
_ISSUE = text(f"""
INSERT INTO authorization_codes (code_hash, {_COLUMNS}, created_at)
SELECT :code_hash, :client_id, s.user_id, s.id, :redirect_uri, :redirect_uri_given,
       :code_challenge, :scope, :nonce, COALESCE(s.auth_time, s.created_at), :expires_at,
       s.amr, :resources, :dpop_jkt, :now
FROM login_sessions AS s JOIN users AS u ON u.id = s.user_id
WHERE s.id = :login_session_id AND s.user_id = :user_id
  AND {login_session_live("s")} AND {user_enabled("u")}
""")

_FIND = text(f"SELECT {_COLUMNS}, used_at, family_id FROM authorization_codes WHERE code_hash = :h")

# Bound as presented: the client, the challenge, the redirect URI when the authorization
# request named one or the redemption does (authorization_codes.redirect_uri_matches), and the
# DPoP key when the request named one (dpop_key_matches: no proof, NULL, matches nothing).
_BOUND_AS_PRESENTED = """c.client_id = :client_id AND c.code_challenge = :code_challenge
      AND (c.redirect_uri = :redirect_uri
           OR (NOT c.redirect_uri_given AND CAST(:redirect_uri AS VARCHAR) IS NULL))
      AND (c.dpop_jkt IS NULL OR c.dpop_jkt = CAST(:proof_jkt AS VARCHAR))"""

_SPEND = text(f"""
UPDATE authorization_codes AS c SET used_at = :now, family_id = :family_id
WHERE c.code_hash = :code_hash AND c.used_at IS NULL AND c.expires_at > :now
  AND {_BOUND_AS_PRESENTED}
RETURNING {_COLUMNS}
""")

_ENABLED_USER = f"SELECT scopes, {_HOLDER} FROM users WHERE id = :user_id AND {user_enabled(None)}"
# ... and who still holds the code's scope: a code issued before a demotion starts no session
# with the scope taken away (the demotion revoked the sessions that had it already).
_USER_HOLDS = (
    "string_to_array(c.scope, ' ') <@ (string_to_array(u.scopes, ' ') || ARRAY[{}])".format(
        ", ".join(f"'{scope}'" for scope in EVERY_USER_HOLDS)
    )
)
_LIVE_SESSION = f"""SELECT 1 FROM login_sessions
                    WHERE id = :login_session_id AND {login_session_live(None)}"""

# The family's first refresh token lives in its row (0030, db/families.py).
_INSERT_FAMILY = text("""
INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at,
                              login_session_id, resources, amr, auth_time, dpop_jkt,
                              token_hash, token_issued_at, token_expires_at)
VALUES (:id, :user_id, :client_id, :scope, :created_at, :expires_at, :login_session_id,
        :resources, :amr, :auth_time, :dpop_jkt, :token_hash, :issued_at, :token_expires_at)
""")


# Postgres: the whole exchange in one statement, one round trip. The code is spent only while
# its user is enabled and its login session live, both locked FOR SHARE for the rest of the
# statement's transaction: a disable or an /end-session racing it waits, then finds the family
# and revokes it; or commits first, and then (READ COMMITTED re-checks a row it waited for) the
# EXISTS fails, the UPDATE matches nothing and the code stays as it was. A racing exchange of
# the same code waits on the code's row and then finds it used. The family, its first token
# and the audit rows are written only from the spent row, so all of it or none is stored.
# The user's name and profile come back with the spent row (`holder`, the row as the
# statement began; whether they are enabled is the locked row's to say): no second read.
_EXCHANGE_CTES = f"""spent AS (
    UPDATE authorization_codes AS c SET used_at = :now, family_id = :family_id
    FROM users AS holder
    WHERE c.code_hash = :code_hash AND c.used_at IS NULL AND c.expires_at > :now
      AND holder.id = c.user_id
      AND {_BOUND_AS_PRESENTED}
      AND EXISTS (SELECT 1 FROM users AS u WHERE u.id = c.user_id AND {user_enabled("u")}
                    AND {_USER_HOLDS}
                  FOR SHARE)
      AND EXISTS (SELECT 1 FROM login_sessions AS s
                  WHERE s.id = c.login_session_id AND {login_session_live("s")}
                  FOR SHARE)
      {{proved}}
    RETURNING {_qualified("c", _COLUMNS)}, {_qualified("holder", _HOLDER)}
), family AS (
    -- With its first refresh token in its row (0030, db/families.py).
    INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at,
                                  login_session_id, resources, amr, auth_time, dpop_jkt,
                                  token_hash, token_issued_at, token_expires_at)
    -- The sign-in the code carries, for the family's access tokens (NULL amr: before 0015,
    -- the password alone, as _code reads it).
    SELECT :family_id, user_id, client_id, scope, :now, :family_expires_at, login_session_id,
           resources, COALESCE(amr, 'pwd'), auth_time, CAST(:dpop_jkt AS VARCHAR),
           CAST(:token_hash AS BYTEA), :now, :token_expires_at
    FROM spent
), audit AS (
    -- authorization_codes.redeemed_event, from the spent row (tests/http/test_code_grant.py
    -- checks both databases write the same event).
    INSERT INTO audit_events (at, actor, action, target, detail, user_id, family_id)
    SELECT :now, :client_id, 'code.redeemed', :audit_family,
           json_build_object('client_id', client_id, 'scope', scope)::text, user_id,
           :audit_family
    FROM spent
)"""
_EXCHANGE_POSTGRES = text(f"WITH {_EXCHANGE_CTES.format(proved='')}\nSELECT * FROM spent")

# ... with a DPoP proof: its jti recorded in the same statement (db/dpop.py).
_EXCHANGE_PROVED_POSTGRES = proved(_EXCHANGE_CTES)


class _Refused(Exception):
    """Rolls the exchange back: the user ended or lost a scope, or the login session ended."""


class SqlCodeStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        self._postgres = is_postgres(engine)
        # SQLite's exchange is a transaction of several statements; BEGIN IMMEDIATE
        # serialises it with any other writer.
        self._user = text(_ENABLED_USER)
        self._session = text(_LIVE_SESSION)

    async def issue(
        self, code_hash: str, code: AuthorizationCode, now: int, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                _ISSUE,
                {
                    "code_hash": code_hash,
                    "client_id": code.client_id,
                    "user_id": code.user_id,
                    "login_session_id": code.login_session_id,
                    "redirect_uri": code.redirect_uri,
                    "redirect_uri_given": code.redirect_uri_given,
                    "code_challenge": code.code_challenge,
                    "scope": code.scope,
                    "nonce": code.nonce,
                    "expires_at": code.expires_at,
                    "resources": _joined(code.resources),
                    "dpop_jkt": code.dpop_jkt,
                    "now": now,
                },
            )
            if result.rowcount:
                await append_audit(conn, audit)
        return bool(result.rowcount)

    async def find(self, code_hash: str) -> StoredCode | None:
        row: Any
        if self._postgres:  # asyncpg itself: a fifth of an exchange's CPU went to SQLAlchemy
            row = await fetch_row(self._engine, _FIND, {"h": code_hash})
        else:
            async with self._single.connect() as conn:
                found = (await conn.execute(_FIND, {"h": code_hash})).first()
            row = None if found is None else found._mapping
        if row is None:
            return None
        started = None if row["family_id"] is None else family_id(row["family_id"])
        return StoredCode(_code(row), row["used_at"], started)

    async def redeem(self, redemption: Redemption) -> Redeemed | None:
        spend = {
            "now": redemption.now,
            "family_id": redemption.family_id,
            "code_hash": redemption.code_hash,
            "client_id": redemption.client_id,
            "redirect_uri": redemption.redirect_uri,
            "code_challenge": redemption.code_challenge,
            "proof_jkt": redemption.proof_jkt,
        }
        token = {
            "token_hash": stored_hash(redemption.token_hash),
            "family_id": redemption.family_id,
            "issued_at": redemption.now,
            "expires_at": redemption.token_expires_at,
        }
        if self._postgres:
            params = {
                **spend,
                "family_expires_at": redemption.family_expires_at,
                "token_hash": token["token_hash"],
                "token_expires_at": redemption.token_expires_at,
                "audit_family": redemption.family_id,
                "dpop_jkt": redemption.dpop_jkt,
            }
            first_use = redemption.first_use
            if first_use is None:
                row = await fetch_row(self._engine, _EXCHANGE_POSTGRES, params)
            else:
                statement = _EXCHANGE_PROVED_POSTGRES
                row = await fetch_proved(self._engine, statement, params, first_use, "client_id")
            return None if row is None else _redeemed(_code(row), row)
        first_use = redemption.first_use
        redeemed: Redeemed | None = None
        try:
            async with self._engine.begin() as conn:
                # BEGIN IMMEDIATE holds the write lock: the jti recorded with the exchange (or
                # alone, when the code is not spent; not when _Refused rolls it all back).
                proof = None if first_use is None else proof_params(first_use)
                if proof is not None and (await conn.execute(FIRST_USE, proof)).first() is None:
                    raise replayed()
                spent = (await conn.execute(_SPEND, spend)).first()
                if spent is not None:
                    redeemed = await self._start(conn, redemption, _code(spent._mapping), token)
        except _Refused:
            return None
        if first_use is not None:
            first_use.recorded = True
        return redeemed

    async def _start(
        self,
        conn: AsyncConnection,
        redemption: Redemption,
        code: AuthorizationCode,
        token: dict[str, Any],
    ) -> Redeemed:
        """SQLite: the family the spent `code` starts, or _Refused."""
        ids = {"user_id": code.user_id, "login_session_id": code.login_session_id}
        user = (await conn.execute(self._user, ids)).first()
        if user is None or not _holds(user.scopes, code.scope):
            raise _Refused
        live = {**ids, "now": redemption.now}
        if (await conn.execute(self._session, live)).first() is None:
            raise _Refused
        await conn.execute(
            _INSERT_FAMILY,
            {
                **ids,
                "id": redemption.family_id,
                "client_id": code.client_id,
                "scope": code.scope,
                "created_at": redemption.now,
                "expires_at": redemption.family_expires_at,
                "resources": _joined(code.resources),
                "amr": " ".join(code.amr),
                "auth_time": code.auth_time,
                "dpop_jkt": redemption.dpop_jkt,
                "token_hash": token["token_hash"],
                "issued_at": redemption.now,
                "token_expires_at": token["expires_at"],
            },
        )
        event = redeemed_event(code, redemption.family_id, code.client_id, redemption.now)
        await append_audit(conn, [event])
        return _redeemed(code, user._mapping)


def _holds(user_scopes: str, scope: str) -> bool:
    """`_USER_HOLDS` for SQLite: every token of `scope` is the user's or every user's."""
    return set(scope.split()) <= {*user_scopes.split(), *EVERY_USER_HOLDS}


def _joined(resources: tuple[str, ...]) -> str | None:
    """Space-separated (no identifier holds a space); NULL for none."""
    return " ".join(resources) or None


def _redeemed(code: AuthorizationCode, holder: Any) -> Redeemed:
    """`code` with its user's `_HOLDER` columns."""
    return Redeemed(code, holder["username"], profile_of(holder))


def _code(row: Any) -> AuthorizationCode:
    return AuthorizationCode(
        client_id=row["client_id"],
        user_id=row["user_id"],
        login_session_id=row["login_session_id"],
        redirect_uri=row["redirect_uri"],
        redirect_uri_given=bool(row["redirect_uri_given"]),
        code_challenge=row["code_challenge"],
        scope=row["scope"],
        nonce=row["nonce"],
        auth_time=row["auth_time"],
        expires_at=row["expires_at"],
        # NULL: a session from before 0015, signed in with the password alone.
        amr=tuple((row["amr"] or "pwd").split()),
        resources=tuple((row["resources"] or "").split()),
        dpop_jkt=row["dpop_jkt"],
    )

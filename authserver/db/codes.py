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
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.audit import AuditEvent
from authserver.authorization_codes import AuthorizationCode, StoredCode
from authserver.db.audit import append_audit
from authserver.db.columns import family_id, stored_hash
from authserver.db.engine import is_postgres, single_statements
from authserver.refresh import Family

_COLUMNS = """client_id, user_id, login_session_id, redirect_uri, redirect_uri_given,
              code_challenge, scope, nonce, auth_time, expires_at"""

# Only for a live login session of an enabled user, decided in the inserting statement.
_ISSUE = text(f"""
INSERT INTO authorization_codes (code_hash, {_COLUMNS}, created_at)
SELECT :code_hash, :client_id, s.user_id, s.id, :redirect_uri, :redirect_uri_given,
       :code_challenge, :scope, :nonce, s.created_at, :expires_at, :now
FROM login_sessions AS s JOIN users AS u ON u.id = s.user_id
WHERE s.id = :login_session_id AND s.user_id = :user_id AND s.revoked_at IS NULL
  AND s.expires_at > :now AND NOT u.disabled
""")

_FIND = text(f"SELECT {_COLUMNS}, used_at, family_id FROM authorization_codes WHERE code_hash = :h")

_SPEND = text("""
UPDATE authorization_codes SET used_at = :now, family_id = :family_id
WHERE code_hash = :code_hash AND used_at IS NULL AND expires_at > :now
  AND client_id = :client_id AND redirect_uri = :redirect_uri
  AND code_challenge = :code_challenge
RETURNING user_id, login_session_id
""")

_ENABLED_USER = "SELECT 1 FROM users WHERE id = :user_id AND NOT disabled"
_LIVE_SESSION = """SELECT 1 FROM login_sessions
                   WHERE id = :login_session_id AND revoked_at IS NULL AND expires_at > :now"""

_INSERT_FAMILY = text("""
INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at,
                              login_session_id)
VALUES (:id, :user_id, :client_id, :scope, :created_at, :expires_at, :login_session_id)
""")

_INSERT_TOKEN = text("""
INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at)
VALUES (:token_hash, :family_id, NULL, :issued_at, :expires_at)
""")


class _Refused(Exception):
    """Rolls the exchange back: the user or the login session ended."""


class SqlCodeStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        lock = " FOR SHARE" if is_postgres(engine) else ""  # SQLite: BEGIN IMMEDIATE
        self._user = text(_ENABLED_USER + lock)
        self._session = text(_LIVE_SESSION + lock)

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
                    "now": now,
                },
            )
            if result.rowcount:
                await append_audit(conn, audit)
        return bool(result.rowcount)

    async def find(self, code_hash: str) -> StoredCode | None:
        async with self._single.connect() as conn:
            row = (await conn.execute(_FIND, {"h": code_hash})).first()
        if row is None:
            return None
        started = None if row.family_id is None else family_id(row.family_id)
        return StoredCode(_code(row._mapping), row.used_at, started)

    async def redeem(
        self,
        code_hash: str,
        expected: AuthorizationCode,
        now: int,
        family: Family,
        token_hash: str,
        refresh_expires_at: int,
        audit: Sequence[AuditEvent] = (),
    ) -> bool:
        try:
            async with self._engine.begin() as conn:
                spent = (
                    await conn.execute(
                        _SPEND,
                        {
                            "now": now,
                            "family_id": family.id,
                            "code_hash": code_hash,
                            "client_id": expected.client_id,
                            "redirect_uri": expected.redirect_uri,
                            "code_challenge": expected.code_challenge,
                        },
                    )
                ).first()
                if spent is None:
                    return False
                ids = {"user_id": spent.user_id, "login_session_id": spent.login_session_id}
                if (await conn.execute(self._user, ids)).first() is None:
                    raise _Refused
                if (await conn.execute(self._session, {**ids, "now": now})).first() is None:
                    raise _Refused
                await conn.execute(
                    _INSERT_FAMILY,
                    {
                        "id": family.id,
                        "user_id": spent.user_id,
                        "client_id": family.client_id,
                        "scope": family.scope,
                        "created_at": family.created_at,
                        "expires_at": family.expires_at,
                        "login_session_id": spent.login_session_id,
                    },
                )
                await conn.execute(
                    _INSERT_TOKEN,
                    {
                        "token_hash": stored_hash(token_hash),
                        "family_id": family.id,
                        "issued_at": now,
                        "expires_at": refresh_expires_at,
                    },
                )
                await append_audit(conn, audit)
        except _Refused:
            return False
        return True


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
    )

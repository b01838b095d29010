"""SQL behind login sessions (the single sign-on cookie)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.login_sessions import Browser, Ended, LoginSession
from authserver.audit import AuditEvent
from authserver.db.audit import append_audit
from authserver.db.columns import family_id
from authserver.db.predicates import login_session_live, user_enabled
from authserver.tokens.refresh import family_revoked

# Every hosted sign-in (password, passkey, second factor, a sign-up that signs in) starts its
# session here, so here it is recorded as the user's last sign-in. As families.start: the
# UPDATE's row lock holds the user row until the session commits, so a concurrent disable
# waits for it (and then ends it with the rest) or commits first (and this matches no row).
_SIGNED_IN = text(f"""
UPDATE users SET last_login_at = :now WHERE id = :user_id AND {user_enabled(None)}
RETURNING id
""")

_INSERT = text("""
INSERT INTO login_sessions
  (id, token_hash, user_id, created_at, last_used_at, expires_at, user_agent, amr)
VALUES (:id, :token_hash, :user_id, :now, :now, :expires_at, :user_agent, :amr)
""")

# A LoginSession's columns; auth_time NULL (no step-up, or from before 0017): created_at.
_SESSION = "id, user_id, COALESCE(auth_time, created_at) AS auth_time, expires_at, user_agent, amr"

# Alive, used within the idle lifetime, its user enabled: decided and touched in one statement.
_TOUCH = text(f"""
UPDATE login_sessions SET last_used_at = :now
WHERE token_hash = :token_hash AND {login_session_live(None)}
  AND last_used_at > :idle_after
  AND EXISTS (SELECT 1 FROM users AS u
              WHERE u.id = login_sessions.user_id AND {user_enabled("u")})
RETURNING {_SESSION}
""")

# A second factor given to a live session (a step-up): its methods and auth_time upgraded, and
# its cookie replaced (OWASP: a new session id when the privilege level changes), in one
# statement; only the session of this cookie, of this user, alive and used within the idle
# lifetime, its user enabled.
_STEP_UP = text(f"""
UPDATE login_sessions SET amr = :amr, auth_time = :now, last_used_at = :now,
                          token_hash = :new_token_hash
WHERE token_hash = :token_hash AND user_id = :user_id AND {login_session_live(None)}
  AND last_used_at > :idle_after
  AND EXISTS (SELECT 1 FROM users AS u
              WHERE u.id = login_sessions.user_id AND {user_enabled("u")})
RETURNING {_SESSION}
""")

# A step-up is a sign-in too (its auth_time is now): recorded with the session's upgrade, the
# user's row first, in the order a disable takes the two (users, then login_sessions): the
# other order could deadlock with it.
_STEPPED_UP = text("UPDATE users SET last_login_at = :now WHERE id = :user_id")


class _NotSteppedUp(Exception):
    """Rolls the step-up's transaction back (its last_login_at with it)."""


_HOLDER = text("""
SELECT user_id FROM login_sessions WHERE token_hash = :token_hash AND revoked_at IS NULL
""")

# The row lock this UPDATE takes waits for any code exchange holding the session FOR SHARE;
# the families UPDATE after it (a new snapshot) then sees the family that exchange stored.
_END = text("""
UPDATE login_sessions SET revoked_at = :now
WHERE token_hash = :token_hash AND revoked_at IS NULL
RETURNING id, user_id, created_at, expires_at
""")

_END_FAMILIES = text("""
UPDATE refresh_families SET revoked_at = :now, revoked_reason = 'end_session'
WHERE login_session_id = :login_session_id AND revoked_at IS NULL
RETURNING id, client_id
""")

# As _END, for a session the same user's new sign-in replaces: the row lock waits for any code
# exchange of the old session, and the families UPDATE after it sees the family it stored.
_TAKE_OVER = text("""
UPDATE login_sessions SET revoked_at = :now
WHERE token_hash = :token_hash AND user_id = :user_id AND revoked_at IS NULL
RETURNING id
""")

_MOVE_FAMILIES = text("""
UPDATE refresh_families SET login_session_id = :session_id
WHERE login_session_id = :old_id AND revoked_at IS NULL
""")

# `keep`: the session of the browser that changed its password on the account page.
_END_USER = text("""
UPDATE login_sessions SET revoked_at = :now
WHERE user_id = :user_id AND revoked_at IS NULL
  AND (CAST(:keep AS VARCHAR) IS NULL OR id <> :keep)
""")

# Live as _TOUCH decides (its user's being enabled is the account page's own check).
_BROWSERS = text(f"""
SELECT id, created_at, last_used_at, expires_at, user_agent FROM login_sessions
WHERE user_id = :user_id AND {login_session_live(None)} AND last_used_at > :idle_after
ORDER BY created_at DESC, id
""")

# As _END, by id and only the user's own: another user's id matches no row.
_END_BY_ID = text("""
UPDATE login_sessions SET revoked_at = :now
WHERE id = :id AND user_id = :user_id AND revoked_at IS NULL
RETURNING id, user_id, created_at, expires_at
""")


def _session(row: Any) -> LoginSession:
    # NULL amr: a session from before 0015, the password alone.
    amr = tuple((row.amr or "pwd").split())
    return LoginSession(row.id, row.user_id, row.auth_time, row.expires_at, row.user_agent, amr)


class SqlLoginSessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(
        self, session: LoginSession, token_hash: str, now: int, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        async with self._engine.begin() as conn:
            signed_in = {"user_id": session.user_id, "now": now}
            if (await conn.execute(_SIGNED_IN, signed_in)).first() is None:
                return False
            await conn.execute(
                _INSERT,
                {
                    "id": session.id,
                    "token_hash": token_hash,
                    "user_id": session.user_id,
                    "now": now,
                    "expires_at": session.expires_at,
                    "user_agent": session.user_agent,
                    "amr": " ".join(session.amr),
                },
            )
            await append_audit(conn, audit)
        return True

    async def touch(self, token_hash: str, now: int, idle_ttl: int) -> LoginSession | None:
        params = {"token_hash": token_hash, "now": now, "idle_after": now - idle_ttl}
        async with self._engine.begin() as conn:
            row = (await conn.execute(_TOUCH, params)).first()
        return None if row is None else _session(row)

    async def step_up(
        self, token_hash: str, user_id: str, amr: tuple[str, ...], now: int, idle_ttl: int,
        new_token_hash: str,
    ) -> LoginSession | None:  # fmt: skip
        params = {
            "token_hash": token_hash, "user_id": user_id, "amr": " ".join(amr), "now": now,
            "idle_after": now - idle_ttl, "new_token_hash": new_token_hash,
        }  # fmt: skip
        try:
            async with self._engine.begin() as conn:
                await conn.execute(_STEPPED_UP, {"user_id": user_id, "now": now})
                row = (await conn.execute(_STEP_UP, params)).first()
                if row is None:
                    raise _NotSteppedUp()
        except _NotSteppedUp:
            return None
        return _session(row)

    async def holder(self, token_hash: str) -> str | None:
        async with self._engine.begin() as conn:
            user_id = (await conn.execute(_HOLDER, {"token_hash": token_hash})).scalar()
        return None if user_id is None else str(user_id)

    async def end(self, token_hash: str, now: int, client_id: str | None) -> Ended | None:
        params = {"token_hash": token_hash, "now": now}
        return await self._end(_END, params, now, {"client_id": client_id})

    async def end_by_id(
        self, session_id: str, user_id: str, now: int, actor: str | None = None
    ) -> Ended | None:
        if len(session_id) > 36:
            return None  # no session has it (the column is 36 wide)
        params = {"id": session_id, "user_id": user_id, "now": now}
        via = {"via": "account_page"} if actor is None else {"via": "operator"}
        return await self._end(_END_BY_ID, params, now, via, actor)

    async def _end(
        self,
        statement: TextClause,
        params: dict[str, object],
        now: int,
        detail: dict[str, Any],
        actor: str | None = None,
    ) -> Ended | None:
        async with self._engine.begin() as conn:
            row = (await conn.execute(statement, params)).first()
            if row is None:
                return None
            families = [
                (family_id(f.id), f.client_id)
                for f in await conn.execute(_END_FAMILIES, {"login_session_id": row.id, "now": now})
            ]
            user = row.user_id
            by = actor or user
            detail = {**detail, "families": len(families)}
            events = [AuditEvent(now, by, "end_session", row.id, detail, user=user)]
            events += [
                family_revoked(sid, user, client, reason="end_session", actor=by, now=now)
                for sid, client in families
            ]
            await append_audit(conn, events)
        session = LoginSession(row.id, row.user_id, row.created_at, row.expires_at)
        return Ended(session, tuple(families))

    async def take_over(self, token_hash: str, session_id: str, user_id: str, now: int) -> bool:
        params = {"token_hash": token_hash, "user_id": user_id, "now": now}
        async with self._engine.begin() as conn:
            row = (await conn.execute(_TAKE_OVER, params)).first()
            if row is None:
                return False
            await conn.execute(_MOVE_FAMILIES, {"session_id": session_id, "old_id": row.id})
        return True

    async def end_user(self, user_id: str, now: int, keep: str | None = None) -> int:
        params = {"user_id": user_id, "now": now, "keep": keep}
        async with self._engine.begin() as conn:
            result = await conn.execute(_END_USER, params)
        return int(result.rowcount or 0)

    async def browsers(self, user_id: str, now: int, idle_ttl: int) -> list[Browser]:
        params = {"user_id": user_id, "now": now, "idle_after": now - idle_ttl}
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_BROWSERS, params)).all()
        return [
            Browser(row.id, row.created_at, row.last_used_at, row.expires_at, row.user_agent)
            for row in rows
        ]

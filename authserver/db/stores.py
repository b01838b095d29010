"""SQL implementations of the domain's storage ports.

Each method is one short transaction. The refresh hot path is written in plain SQL so it stays
one round trip on Postgres (a data-modifying CTE) and one locked transaction on SQLite.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import exists, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.audit import AuditEvent, AuditQuery
from authserver.clients import Client
from authserver.db.direct import fetch_row
from authserver.db.engine import is_postgres
from authserver.db.models import AuditEventRow, ClientRow, FamilyRow, SigningKeyRow, UserRow
from authserver.keys import KeyRecord
from authserver.rotation import Transition
from authserver.sessions import Family, TokenState
from authserver.users import User


def single_statements(engine: AsyncEngine) -> AsyncEngine:
    """The engine for work that is one statement. On Postgres it runs without BEGIN and
    COMMIT: the statement is its own transaction, atomic all the same, and two round trips
    fewer. SQLite keeps its BEGIN IMMEDIATE (engine.py)."""
    return engine.execution_options(isolation_level="AUTOCOMMIT") if is_postgres(engine) else engine


_FAMILY_COLUMNS = "f.id, f.user_id, f.client_id, f.scope, f.created_at, f.expires_at, f.revoked_at"

# A disabled or deleted user's family does not rotate, decided in the rotating statement itself
# (disabling also revokes the families; this holds whatever escaped that).
_USER_ENABLED = "EXISTS (SELECT 1 FROM users AS u WHERE u.id = f.user_id AND NOT u.disabled)"

# Postgres: spend and insert the successor in one statement. A racing UPDATE on the same row
# waits for the winner, re-checks `spent_at IS NULL` on the new row version, and matches nothing.
_SPEND_POSTGRES = text(f"""
WITH spent AS (
    UPDATE refresh_tokens AS t SET spent_at = :now
    FROM refresh_families AS f
    WHERE t.token_hash = :token_hash AND t.spent_at IS NULL AND t.expires_at > :now
      AND f.id = t.family_id AND f.client_id = :client_id
      AND f.revoked_at IS NULL AND f.expires_at > :now AND {_USER_ENABLED}
    RETURNING {_FAMILY_COLUMNS}
), successor AS (
    INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at)
    SELECT :new_hash, id, :token_hash, :now, LEAST(:new_expires_at, expires_at) FROM spent
)
SELECT * FROM spent
""")

# The family a token may still rotate in: alive, the client's, its user enabled.
_LIVE_FAMILIES = f"""SELECT f.id FROM refresh_families AS f
                    WHERE f.client_id = :client_id AND f.revoked_at IS NULL
                      AND f.expires_at > :now AND {_USER_ENABLED}"""

# Portable: spend only in a live family; RETURNING names the family.
_SPEND = text(f"""
UPDATE refresh_tokens SET spent_at = :now
WHERE token_hash = :token_hash AND spent_at IS NULL AND expires_at > :now
  AND family_id IN ({_LIVE_FAMILIES})
RETURNING family_id
""")

_SPEND_SUCCESSOR = text(f"""
UPDATE refresh_tokens SET spent_at = :now
WHERE parent_hash = :parent_hash AND spent_at IS NULL AND expires_at > :now
  AND family_id IN ({_LIVE_FAMILIES})
  AND EXISTS (SELECT 1 FROM refresh_tokens AS p
              WHERE p.token_hash = :parent_hash AND p.spent_at >= :parent_spent_after)
RETURNING family_id
""")

# A login starts a family only for a user who is still enabled when it commits. FOR SHARE (on
# Postgres) holds the user row until then: a concurrent disable waits for this login and then
# revokes its family with the rest, or commits first and this finds no row. The foreign key's
# own lock (FOR KEY SHARE) would not do: it lets a disable through.
_ENABLED_USER = "SELECT 1 FROM users WHERE id = :user_id AND NOT disabled"
_LOCK_ENABLED_USER = text(_ENABLED_USER + " FOR SHARE")
_CHECK_ENABLED_USER = text(_ENABLED_USER)  # SQLite: BEGIN IMMEDIATE already serialises

_LOCK_PARENT = text("SELECT 1 FROM refresh_tokens WHERE token_hash = :parent_hash FOR UPDATE")

_INSERT_TOKEN = text("""
INSERT INTO refresh_tokens (token_hash, family_id, parent_hash, issued_at, expires_at)
VALUES (:token_hash, :family_id, :parent_hash, :issued_at, :expires_at)
""")

_FAMILY_BY_ID = text(f"SELECT {_FAMILY_COLUMNS} FROM refresh_families AS f WHERE f.id = :id")

_FIND = text(f"""
SELECT t.issued_at AS t_issued_at, t.expires_at AS t_expires_at, t.spent_at AS t_spent_at,
       {_FAMILY_COLUMNS}
FROM refresh_tokens AS t JOIN refresh_families AS f ON f.id = t.family_id
WHERE t.token_hash = :token_hash
""")

# A token signed by a revoked key dies with it at once, on every instance, whatever that
# instance's key ring still holds (it drops the key only at its next reload).
_DENIED = (
    "(EXISTS (SELECT 1 FROM denied_access_tokens WHERE jti = :jti)"
    " OR EXISTS (SELECT 1 FROM signing_keys WHERE kid = :kid AND state = 'revoked'))"
)
_ACCESS_REVOKED = text(f"SELECT {_DENIED}")
# A session that is revoked, over, or gone takes its access tokens with it.
_ACCESS_REVOKED_IN_SESSION = text(f"""
SELECT {_DENIED} OR NOT EXISTS (
    SELECT 1 FROM refresh_families
    WHERE id = :sid AND revoked_at IS NULL AND expires_at > :now)
""")


def _family(row: Any) -> Family:
    """From a row by column name: a SQLAlchemy row's `_mapping`, or an asyncpg record."""
    return Family(
        id=row["id"],
        user_id=row["user_id"],
        client_id=row["client_id"],
        scope=row["scope"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


async def _add_successor(
    conn: AsyncConnection,
    family_id: str,
    parent_hash: str,
    new_hash: str,
    now: int,
    new_expires_at: int,
) -> Family:
    """Stores the token that follows `parent_hash`; it never outlives its family."""
    family = _family((await conn.execute(_FAMILY_BY_ID, {"id": family_id})).one()._mapping)
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
    return family


class SqlSessionStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        self._postgres = is_postgres(engine)

    async def start(
        self, family: Family, token_hash: str, expires_at: int, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        check = _LOCK_ENABLED_USER if self._postgres else _CHECK_ENABLED_USER
        async with self._engine.begin() as conn:
            if (await conn.execute(check, {"user_id": family.user_id})).first() is None:
                return False
            await conn.execute(
                insert(FamilyRow).values(
                    id=family.id,
                    user_id=family.user_id,
                    client_id=family.client_id,
                    scope=family.scope,
                    created_at=family.created_at,
                    expires_at=family.expires_at,
                )
            )
            await conn.execute(
                _INSERT_TOKEN,
                {
                    "token_hash": token_hash,
                    "family_id": family.id,
                    "parent_hash": None,
                    "issued_at": family.created_at,
                    "expires_at": expires_at,
                },
            )
            await _append_audit(conn, audit)
        return True

    async def spend(
        self, token_hash: str, client_id: str, now: int, new_hash: str, new_expires_at: int
    ) -> Family | None:
        params = {
            "token_hash": token_hash,
            "client_id": client_id,
            "now": now,
            "new_hash": new_hash,
            "new_expires_at": new_expires_at,
        }
        if self._postgres:
            # The statement every refresh runs: straight through asyncpg (db/direct.py).
            row = await fetch_row(self._engine, _SPEND_POSTGRES, params)
            return _family(row) if row else None
        async with self._engine.begin() as conn:
            family_id = (await conn.execute(_SPEND, params)).scalar()
            if family_id is None:
                return None
            return await _add_successor(conn, family_id, token_hash, new_hash, now, new_expires_at)

    async def spend_successor(
        self,
        parent_hash: str,
        client_id: str,
        now: int,
        parent_spent_after: int,
        new_hash: str,
        new_expires_at: int,
    ) -> Family | None:
        params = {
            "parent_hash": parent_hash,
            "client_id": client_id,
            "now": now,
            "parent_spent_after": parent_spent_after,
            "new_expires_at": new_expires_at,
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
            return await _add_successor(conn, family_id, parent_hash, new_hash, now, new_expires_at)

    async def find(self, token_hash: str) -> TokenState | None:
        async with self._single.connect() as conn:
            row = (await conn.execute(_FIND, {"token_hash": token_hash})).first()
        if row is None:
            return None
        return TokenState(_family(row._mapping), row.t_issued_at, row.t_expires_at, row.t_spent_at)

    async def revoke(
        self, family_id: str, reason: str, now: int, audit: Sequence[AuditEvent] = ()
    ) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(FamilyRow)
                .where(FamilyRow.id == family_id, FamilyRow.revoked_at.is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            )
            changed = bool(result.rowcount)
            if changed:  # a racing revocation already wrote its own events
                await _append_audit(conn, audit)
        return changed

    async def revoke_user(
        self, user_id: str, reason: str, now: int, actor: str | None = None
    ) -> int:
        async with self._engine.begin() as conn:
            revoked = (
                await conn.execute(
                    update(FamilyRow)
                    .where(FamilyRow.user_id == user_id, FamilyRow.revoked_at.is_(None))
                    .values(revoked_at=now, revoked_reason=reason)
                    .returning(FamilyRow.id, FamilyRow.client_id)
                )
            ).all()
            if actor is not None:
                await _append_audit(
                    conn,
                    [
                        AuditEvent(
                            now,
                            actor,
                            "family.revoked",
                            row.id,
                            {"reason": reason, "client_id": row.client_id},
                            user=user_id,
                            family=row.id,
                        )
                        for row in revoked
                    ],
                )
        return len(revoked)

    async def deny(self, jti: str, expires_at: int, now: int) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM denied_access_tokens WHERE expires_at <= :now"), {"now": now}
            )
            await conn.execute(
                text(
                    "INSERT INTO denied_access_tokens (jti, expires_at) VALUES (:jti, :expires_at)"
                    " ON CONFLICT (jti) DO NOTHING"
                ),
                {"jti": jti, "expires_at": expires_at},
            )

    async def access_revoked(self, jti: str, sid: str | None, now: int, kid: str = "") -> bool:
        params: dict[str, object]
        if sid is None:
            statement, params = _ACCESS_REVOKED, {"jti": jti, "kid": kid}
        else:
            statement = _ACCESS_REVOKED_IN_SESSION
            params = {"jti": jti, "kid": kid, "sid": sid, "now": now}
        if self._postgres:
            # Asked by every introspection and admin request: straight through asyncpg.
            row = await fetch_row(self._engine, statement, params)
            return bool(row is not None and row[0])
        async with self._single.connect() as conn:
            return bool((await conn.execute(statement, params)).scalar())

    async def recent_revocations(self, since: int, now: int) -> tuple[list[str], list[str]]:
        # A range scan on ix_refresh_families_revoked_at (0004).
        async with self._single.connect() as conn:
            sids = await conn.execute(select(FamilyRow.id).where(FamilyRow.revoked_at >= since))
            jtis = await conn.execute(
                text("SELECT jti FROM denied_access_tokens WHERE expires_at > :now"),
                {"now": now},
            )
            return list(sids.scalars()), list(jtis.scalars())


class SqlUserStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)

    async def by_username(self, username: str) -> User | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(select(UserRow.__table__).where(UserRow.username == username))
            ).first()
        return _user(row) if row else None

    async def by_id(self, user_id: str) -> User | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(select(UserRow.__table__).where(UserRow.id == user_id))
            ).first()
        return _user(row) if row else None

    async def create(self, user: User, now: int) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(UserRow).values(
                        id=user.id,
                        username=user.username,
                        password_hash=user.password_hash,
                        scopes=" ".join(user.scopes),
                        disabled=user.disabled,
                        created_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def replace_password_hash(self, user_id: str, old_hash: str, new_hash: str) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(UserRow)
                .where(UserRow.id == user_id, UserRow.password_hash == old_hash)
                .values(password_hash=new_hash)
            )

    async def disable(self, user_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(UserRow).where(UserRow.id == user_id).values(disabled=True)
            )
        return bool(result.rowcount)


def _user(row: Any) -> User:
    return User(row.id, row.username, row.password_hash, tuple(row.scopes.split()), row.disabled)


class SqlClientStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)

    async def get(self, client_id: str) -> Client | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(
                    select(ClientRow.__table__).where(ClientRow.client_id == client_id)
                )
            ).first()
        if row is None:
            return None
        return Client(
            client_id=row.client_id,
            secret_hash=row.secret_hash,
            grant_types=tuple(row.grant_types.split()),
            scopes=tuple(row.scopes.split()),
            refresh_delivery=row.refresh_delivery,
        )

    async def create(self, client: Client, now: int) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(ClientRow).values(
                        client_id=client.client_id,
                        secret_hash=client.secret_hash,
                        grant_types=" ".join(client.grant_types),
                        scopes=" ".join(client.scopes),
                        refresh_delivery=client.refresh_delivery,
                        created_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

    async def scopes_in_use(self) -> list[str]:
        async with self._single.connect() as conn:
            rows = (await conn.execute(select(ClientRow.scopes))).scalars().all()
        return sorted({scope for row in rows for scope in row.split()})


# Any constant works; it names the lock that serialises first-start key creation.
_KEY_INIT_LOCK = 0x61757468  # "auth"


class SqlKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)

    async def all(self) -> list[KeyRecord]:
        async with self._single.connect() as conn:
            return await _key_records(conn)

    async def change(
        self, decide: Callable[[list[KeyRecord]], Transition], actor: str, now: int
    ) -> Transition:
        """Runs `decide` over the keys as they are now and writes its transition and audit
        events, in one transaction that instances take one at a time (Postgres: the advisory
        lock `initialize` takes too; SQLite: BEGIN IMMEDIATE). So the second of two racing
        rotations decides on the first one's result, and one key ends active."""
        async with self._engine.begin() as conn:
            if is_postgres(self._engine):
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _KEY_INIT_LOCK}
                )
            records = await _key_records(conn)
            transition = decide(records)
            stored = {record.kid for record in records}
            # In the transition's order: a key leaves "active" before another enters it, or
            # the partial unique index uq_signing_keys_one_active refuses the statement.
            for record in transition.changed:
                if record.kid in stored:
                    await conn.execute(
                        update(SigningKeyRow)
                        .where(SigningKeyRow.kid == record.kid)
                        .values(
                            state=record.state,
                            activated_at=record.activated_at,
                            retired_at=record.retired_at,
                            revoked_at=record.revoked_at,
                        )
                    )
                else:
                    await conn.execute(insert(SigningKeyRow).values(**_key_row(record)))
            await _append_audit(
                conn,
                [
                    AuditEvent(now, actor, event.action, event.kid, {"alg": event.alg})
                    for event in transition.events
                ],
            )
        return transition

    async def rewrap(
        self,
        reseal: Callable[[list[KeyRecord]], list[KeyRecord]],
        check: Callable[[list[KeyRecord]], None],
        actor: str,
        now: int,
    ) -> int:
        """Replaces every sealed private key with `reseal(current keys)`, then hands the rows
        as written to `check`, in one transaction serialised like `change`: an exception from
        either leaves every row as it was. Audited as one keys.rewrapped event."""
        async with self._engine.begin() as conn:
            if is_postgres(self._engine):
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _KEY_INIT_LOCK}
                )
            resealed = reseal(await _key_records(conn))
            for record in resealed:
                await conn.execute(
                    update(SigningKeyRow)
                    .where(SigningKeyRow.kid == record.kid)
                    .values(sealed_private_key=record.sealed_private_key)
                )
            check(await _key_records(conn))
            await _append_audit(
                conn, [AuditEvent(now, actor, "keys.rewrapped", "*", {"keys": len(resealed)})]
            )
        return len(resealed)

    async def initialize(self, records: list[KeyRecord]) -> bool:
        try:
            async with self._engine.begin() as conn:
                if is_postgres(self._engine):
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _KEY_INIT_LOCK}
                    )
                has_active = await conn.scalar(
                    select(exists().where(SigningKeyRow.state == "active"))
                )
                if has_active:
                    return False
                for record in records:
                    await conn.execute(
                        insert(SigningKeyRow).values(
                            kid=record.kid,
                            alg=record.alg,
                            state=record.state,
                            public_jwk=json.dumps(record.public_jwk),
                            sealed_private_key=record.sealed_private_key,
                            created_at=record.created_at,
                            activated_at=record.activated_at,
                        )
                    )
                await _append_audit(
                    conn,
                    [
                        AuditEvent(r.created_at, "system", action, r.kid, {"alg": r.alg})
                        for r in records
                        for action in ("key.made", "key.activated")
                        if action == "key.made" or r.state == "active"
                    ],
                )
        except IntegrityError:  # the partial unique index caught a racing instance
            return False
        return True


async def _key_records(conn: AsyncConnection) -> list[KeyRecord]:
    rows = (await conn.execute(select(SigningKeyRow.__table__))).all()
    return [
        KeyRecord(
            kid=row.kid,
            alg=row.alg,
            state=row.state,
            public_jwk=json.loads(row.public_jwk),
            sealed_private_key=row.sealed_private_key,
            created_at=row.created_at,
            activated_at=row.activated_at,
            retired_at=row.retired_at,
            revoked_at=row.revoked_at,
        )
        for row in rows
    ]


def _key_row(record: KeyRecord) -> dict[str, Any]:
    return {
        "kid": record.kid,
        "alg": record.alg,
        "state": record.state,
        "public_jwk": json.dumps(record.public_jwk),
        "sealed_private_key": record.sealed_private_key,
        "created_at": record.created_at,
        "activated_at": record.activated_at,
        "retired_at": record.retired_at,
        "revoked_at": record.revoked_at,
    }


async def _append_audit(conn: AsyncConnection, events: Sequence[AuditEvent]) -> None:
    if events:
        await conn.execute(
            insert(AuditEventRow),
            [
                {
                    "at": e.at,
                    "actor": e.actor,
                    "action": e.action,
                    "target": e.target,
                    "detail": json.dumps(e.detail, sort_keys=True),
                    "user_id": e.user,
                    "family_id": e.family,
                }
                for e in events
            ],
        )


class SqlAuditLog:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(self, events: Sequence[AuditEvent]) -> None:
        async with self._engine.begin() as conn:
            await _append_audit(conn, events)

    async def recent(self, limit: int = 100) -> list[AuditEvent]:
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(AuditEventRow.__table__).order_by(AuditEventRow.id.desc()).limit(limit)
                )
            ).all()
        return [_audit_event(row) for row in reversed(rows)]

    async def page(self, query: AuditQuery) -> list[AuditEvent]:
        table = AuditEventRow.__table__
        statement = select(table).order_by(AuditEventRow.id.desc()).limit(query.limit)
        if query.before is not None:
            statement = statement.where(AuditEventRow.id < query.before)
        if query.user is not None:
            statement = statement.where(AuditEventRow.user_id == query.user)
        if query.family is not None:
            statement = statement.where(AuditEventRow.family_id == query.family)
        if query.action is not None:
            statement = statement.where(AuditEventRow.action == query.action)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [_audit_event(row) for row in rows]


def _audit_event(row: Any) -> AuditEvent:
    return AuditEvent(
        row.at,
        row.actor,
        row.action,
        row.target,
        json.loads(row.detail),
        user=row.user_id,
        family=row.family_id,
        id=row.id,
    )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))

"""SQL behind the signing-key store: every key change is one transaction that instances take
one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import exists, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.audit import AuditEvent
from authserver.db.audit import append_audit
from authserver.db.engine import is_postgres, single_statements
from authserver.db.models import SecondFactorRow, SigningKeyRow
from authserver.db.notify import notify_keys_changed
from authserver.keys.lifecycle import Transition
from authserver.keys.records import KeyRecord

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
            await append_audit(
                conn,
                [
                    AuditEvent(now, actor, event.action, event.kid, {"alg": event.alg})
                    for event in transition.events
                ],
            )
            if transition.changed:
                await notify_keys_changed(conn)  # delivered on commit: db/notify.py
        return transition

    async def rewrap(
        self,
        reseal: Callable[[list[KeyRecord]], list[KeyRecord]],
        check: Callable[[list[KeyRecord]], None],
        reseal_secret: Callable[[str, bytes], bytes],
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
            # The authenticator apps' secrets are sealed under the same KEK: left behind,
            # they would not open once the old KEK is dropped, and their users could not
            # finish signing in.
            factors = (
                await conn.execute(select(SecondFactorRow.id, SecondFactorRow.sealed_secret))
            ).all()
            for factor_id, sealed in factors:
                await conn.execute(
                    update(SecondFactorRow)
                    .where(SecondFactorRow.id == factor_id)
                    .values(sealed_secret=reseal_secret(factor_id, bytes(sealed)))
                )
            detail = {"keys": len(resealed), "second_factors": len(factors)}
            await append_audit(conn, [AuditEvent(now, actor, "keys.rewrapped", "*", detail)])
            await notify_keys_changed(conn)
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
                await append_audit(
                    conn,
                    [
                        AuditEvent(r.created_at, "system", action, r.kid, {"alg": r.alg})
                        for r in records
                        for action in ("key.made", "key.activated")
                        if action == "key.made" or r.state == "active"
                    ],
                )
                await notify_keys_changed(conn)
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

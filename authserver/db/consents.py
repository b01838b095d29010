"""SQL behind consent (accounts/consents.py): "Allow" in one INSERT ... ON CONFLICT that widens
the grant, revoking in one DELETE and one UPDATE of the families, audited in the transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.accounts.consents import Grant
from authserver.audit import AuditEvent
from authserver.db.audit import append_audit
from authserver.db.engine import is_postgres, single_statements
from authserver.db.models import ConsentGrantRow, FamilyRow
from authserver.tokens.refresh import family_revoked

_GRANTS = ConsentGrantRow.__table__
_C = _GRANTS.c
CLIENT, SCOPE, RESOURCE = "client", "scope", "resource"


class SqlConsentStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)
        dialect = postgresql if is_postgres(engine) else sqlite
        self._insert: Any = dialect.insert

    async def held(self, user_id: str, client_id: str) -> Grant | None:
        statement = select(_GRANTS).where(_C.user_id == user_id, _C.client_id == client_id)
        async with self._single.connect() as conn:
            rows = (await conn.execute(statement)).all()
        found = _grants(rows)
        return found[0] if found else None

    async def allow(
        self,
        user_id: str,
        client_id: str,
        scopes: Iterable[str],
        resources: Iterable[str],
        now: int,
        audit: AuditEvent,
    ) -> None:
        things = [(CLIENT, "")] + [(SCOPE, s) for s in scopes] + [(RESOURCE, r) for r in resources]
        rows = [
            {"user_id": user_id, "client_id": client_id, "kind": k, "value": v, "granted_at": now}
            for k, v in dict.fromkeys(things)
        ]
        statement = self._insert(_GRANTS).values(rows)
        # Rows already held stay (a grant only widens) and take the new time.
        statement = statement.on_conflict_do_update(
            index_elements=[_C.user_id, _C.client_id, _C.kind, _C.value],
            set_={"granted_at": statement.excluded.granted_at},
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)
            await append_audit(conn, [audit])

    async def grants(self, user_id: str) -> list[Grant]:
        async with self._single.connect() as conn:
            rows = (await conn.execute(select(_GRANTS).where(_C.user_id == user_id))).all()
        return sorted(_grants(rows), key=lambda grant: (-grant.granted_at, grant.client_id))

    async def revoke(self, user_id: str, client_id: str, now: int, audit: AuditEvent) -> bool:
        async with self._engine.begin() as conn:
            deleted = await conn.execute(
                delete(ConsentGrantRow).where(_C.user_id == user_id, _C.client_id == client_id)
            )
            if not deleted.rowcount:
                return False
            ended = (
                await conn.execute(
                    update(FamilyRow)
                    .where(
                        FamilyRow.user_id == user_id,
                        FamilyRow.client_id == client_id,
                        FamilyRow.revoked_at.is_(None),
                    )
                    .values(revoked_at=now, revoked_reason="consent_revoked")
                    .returning(FamilyRow.id)
                )
            ).all()
            events = [
                family_revoked(
                    row.id, user_id, client_id, reason="consent_revoked", actor=user_id, now=now
                )
                for row in ended
            ]
            await append_audit(conn, [audit, *events])
        return True


def _grants(rows: Iterable[Any]) -> list[Grant]:
    by_client: dict[str, dict[str, Any]] = {}
    for row in rows:
        held = by_client.setdefault(
            row.client_id, {SCOPE: set(), RESOURCE: set(), "at": row.granted_at}
        )
        held["at"] = max(held["at"], row.granted_at)
        if row.kind in (SCOPE, RESOURCE):
            held[row.kind].add(row.value)
    return [
        Grant(client_id, frozenset(held[SCOPE]), frozenset(held[RESOURCE]), held["at"])
        for client_id, held in by_client.items()
    ]

"""SQL behind the audit log: appended in the caller's transaction, read newest first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from authserver.audit import AuditEvent, AuditQuery
from authserver.db.models import AuditEventRow


async def append_audit(conn: AsyncConnection, events: Sequence[AuditEvent]) -> None:
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
            await append_audit(conn, events)

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

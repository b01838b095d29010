"""SQL behind the resource registry (tokens/resources.py): one statement a change, audited in
its transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from authserver.audit import AuditEvent
from authserver.db.audit import append_audit
from authserver.db.engine import single_statements
from authserver.db.models import ResourceRow
from authserver.tokens.resources import Resource, ResourceChanges

_COLUMNS = ResourceRow.__table__.c


class SqlResourceStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = single_statements(engine)

    async def get(self, resource: str) -> Resource | None:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(
                    select(ResourceRow.__table__).where(_COLUMNS.resource == resource)
                )
            ).first()
        return _resource(row) if row else None

    async def page(self, limit: int, after: str | None) -> list[Resource]:
        statement = select(ResourceRow.__table__).order_by(_COLUMNS.resource)
        if after is not None:
            statement = statement.where(_COLUMNS.resource > after)
        async with self._single.connect() as conn:
            rows = (await conn.execute(statement.limit(limit))).all()
        return [_resource(row) for row in rows]

    async def create(self, resource: Resource, audit: AuditEvent) -> bool:
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(ResourceRow).values(
                        resource=resource.resource,
                        scopes=" ".join(resource.scopes),
                        access_token_ttl=resource.access_token_ttl,
                        created_at=resource.created_at,
                    )
                )
                await append_audit(conn, [audit])
        except IntegrityError:  # the identifier is taken, whoever raced for it
            return False
        return True

    async def update(
        self, resource: str, changes: ResourceChanges, audit: AuditEvent
    ) -> Resource | None:
        values: dict[str, Any] = {}
        if changes.scopes is not None:
            values["scopes"] = " ".join(changes.scopes)
        if changes.access_token_ttl is not None:
            values["access_token_ttl"] = changes.access_token_ttl
        where = _COLUMNS.resource == resource
        async with self._engine.begin() as conn:
            if values:
                result = await conn.execute(update(ResourceRow).where(where).values(**values))
                if not result.rowcount:
                    return None
            row = (await conn.execute(select(ResourceRow.__table__).where(where))).first()
            if row is None:
                return None
            await append_audit(conn, [audit])
        return _resource(row)

    async def delete(self, resource: str, audit: AuditEvent) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(ResourceRow).where(_COLUMNS.resource == resource))
            if result.rowcount:
                await append_audit(conn, [audit])
        return bool(result.rowcount)


def _resource(row: Any) -> Resource:
    return Resource(
        resource=row.resource,
        scopes=tuple(row.scopes.split()),
        access_token_ttl=row.access_token_ttl,
        created_at=row.created_at,
    )

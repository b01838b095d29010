"""The console's audit trail page: GET /admin/audit's use case, with its filters."""

from __future__ import annotations

from dataclasses import dataclass

from authserver.actions.admin.audit import AuditPage, audit_page
from authserver.actions.console.operator import Operator, operator
from authserver.audit import AuditQuery
from authserver.services import Services

PAGE = 50


@dataclass(frozen=True)
class TrailPage:
    operator: Operator
    trail: AuditPage
    query: AuditQuery


async def trail_page(services: Services, cookie: str | None, query: AuditQuery) -> TrailPage:
    who = await operator(services, cookie)
    return TrailPage(who, await audit_page(services, query), query)

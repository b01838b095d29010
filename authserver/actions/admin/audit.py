"""The audit trail for operators, newest first: `GET /admin/audit` and `authserver audit`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from authserver.audit import AuditEvent, AuditQuery
from authserver.services import Services

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
# Event ids are a 32-bit INTEGER (db/models.py): Postgres refuses a larger bound in the query
# (a 500), so a `before` past every possible id means "from the newest", as no `before` does.
MAX_EVENT_ID = 2**31 - 1


@dataclass(frozen=True)
class AuditPage:
    events: list[dict[str, Any]]
    next_before: int | None  # the `before` of the next page; None on the last


async def audit_page(services: Services, query: AuditQuery) -> AuditPage:
    """One page of the trail, each event as the API and the CLI show it."""
    if query.before is not None and query.before > MAX_EVENT_ID:
        query = replace(query, before=None)
    events = [event_view(event) for event in await services.audit.page(query)]
    full = len(events) == query.limit
    return AuditPage(events, events[-1]["id"] if full else None)


def event_view(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": event.at,
        "actor": event.actor,
        "type": event.action,
        "target": event.target,
        "user": event.user,
        "family": event.family,
        "detail": event.detail,
    }

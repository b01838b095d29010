"""The audit trail for operators, newest first: `GET /admin/audit` and `authserver audit`."""

from __future__ import annotations

from typing import Any

from authserver.audit import AuditEvent, AuditQuery
from authserver.services import Services


async def audit_events(services: Services, query: AuditQuery) -> list[dict[str, Any]]:
    """One page of the trail, each event as the API and the CLI show it."""
    return [event_view(event) for event in await services.audit.page(query)]


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

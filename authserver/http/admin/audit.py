"""GET /admin/audit: the audit trail, newest first, for a bearer token with scope admin.

Query parameters: `limit` (1..500, default 100), `before` (an event id: the page continues
below it; pass the previous page's `next_before`), and the filters `user` (a sub), `family`
(a session id, the access tokens' `sid`) and `type` (an action, e.g. `family.revoked`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions.admin import audit as admin_audit
from authserver.audit import AuditQuery
from authserver.errors import InvalidRequest
from authserver.http.admin import admin_only
from authserver.http.responses import no_store_json
from authserver.inputs import storable
from authserver.services import Services

_KNOWN = frozenset({"limit", "before", "user", "family", "type"})


@admin_only
async def audit(request: Request, found: Services, actor: str) -> Response:
    query = parse_query(request.query_params.multi_items())
    page = await admin_audit.audit_page(found, query)
    return no_store_json({"events": page.events, "next_before": page.next_before})


def parse_query(items: list[tuple[str, str]]) -> AuditQuery:
    seen: dict[str, str] = {}
    for name, value in items:
        if name not in _KNOWN:
            raise InvalidRequest(f"Unknown parameter {name!r}.")
        if name in seen:
            raise InvalidRequest(f"{name} is repeated.")
        if len(value) > 256:
            raise InvalidRequest(f"{name} is too long.")
        if not storable(value):  # a NUL reached Postgres as a 500
            raise InvalidRequest(f"{name} contains a character not allowed.")
        seen[name] = value
    limit = _whole(seen, "limit", 1, admin_audit.MAX_LIMIT)
    before = _whole(seen, "before", 1, 2**63 - 1)
    return AuditQuery(
        limit=admin_audit.DEFAULT_LIMIT if limit is None else limit,
        before=before,
        user=seen.get("user") or None,
        family=seen.get("family") or None,
        action=seen.get("type") or None,
    )


def _whole(seen: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = seen.get(name)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}.")
    return int(raw)

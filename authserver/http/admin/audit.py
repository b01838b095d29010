"""GET /admin/audit: the audit trail, newest first, for a bearer token with scope admin.

Query parameters: `limit` (1..500, default 100), `before` (an event id: the page continues
below it; pass the previous page's `next_before`), and the filters `user` (a sub), `family`
(a session id, the access tokens' `sid`) and `type` (an action, e.g. `family.revoked`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import admin
from authserver.actions.admin import audit as admin_audit
from authserver.audit import AuditQuery
from authserver.errors import InvalidRequest
from authserver.http.context import services
from authserver.http.forms import bearer_token
from authserver.http.responses import no_store_json
from authserver.inputs import storable

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
# Event ids are a 32-bit INTEGER (db/models.py): Postgres refuses a larger bound in the query
# (a 500), so a `before` past every possible id means "from the newest", as no `before` does.
MAX_EVENT_ID = 2**31 - 1
_KNOWN = frozenset({"limit", "before", "user", "family", "type"})


async def audit(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    query = parse_query(request.query_params.multi_items())
    events = await admin_audit.audit_events(found, query)
    next_before = events[-1]["id"] if len(events) == query.limit else None
    return no_store_json({"events": events, "next_before": next_before})


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
    limit = _whole(seen, "limit", 1, MAX_LIMIT)
    before = _whole(seen, "before", 1, 2**63 - 1)
    return AuditQuery(
        limit=DEFAULT_LIMIT if limit is None else limit,
        before=None if before is None or before > MAX_EVENT_ID else before,
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

"""/admin/keys, /admin/users, /admin/clients, /admin/sessions: bearer token with scope admin
(API.md, "Admin endpoints" and "Operator lifecycle")."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from authserver.actions import admin
from authserver.errors import InvalidRequest, UnsupportedMediaType
from authserver.http.forms import JSON, read_body
from authserver_verify.jose import reject_duplicate_members


def paging(request: Request, known: set[str]) -> tuple[int, str | None]:
    seen: dict[str, str] = {}
    for name, value in request.query_params.multi_items():
        if name not in known:
            raise InvalidRequest(f"Unknown parameter {name!r}.")
        if name in seen:
            raise InvalidRequest(f"{name} is repeated.")
        if len(value) > 256:
            raise InvalidRequest(f"{name} is too long.")
        seen[name] = value
    raw = seen.get("limit", str(admin.DEFAULT_PAGE))
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= admin.MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {admin.MAX_PAGE}.")
    return int(raw), seen.get("after") or None


async def json_object(request: Request) -> dict[str, Any]:
    """The JSON object body; an empty body is an empty object. Members keep their JSON types
    (lists, booleans), unlike the token endpoint's string-only fields."""
    body = await read_body(request)
    if not body:
        return {}
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != JSON:
        raise UnsupportedMediaType("Send application/json.")
    try:
        value = json.loads(bytes(body), object_pairs_hook=reject_duplicate_members)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("The JSON body is malformed or repeats a member.") from None
    if not isinstance(value, dict):
        raise InvalidRequest("The JSON body must be an object.")
    return value

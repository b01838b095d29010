"""/admin/keys, /admin/users, /admin/clients, /admin/sessions: bearer token with scope admin
(API.md, "Admin endpoints" and "Operator lifecycle")."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import admin
from authserver.errors import InvalidRequest, UnsupportedMediaType
from authserver.http.context import services
from authserver.http.forms import JSON, dpop_token, read_body
from authserver.services import Services
from authserver_verify.jose import reject_duplicate_members

AdminHandler = Callable[[Request, Services, str], Awaitable[Response]]


def admin_only(handler: AdminHandler) -> Callable[[Request], Awaitable[Response]]:
    """The admin API's one guard, before anything of the request is read: the access token
    (Bearer, or DPoP with a proof: RFC 9449 §7) checked by actions/admin.require_admin (401
    without a live token, 403 without the admin scope). The handler gets the services and the
    actor, and makes its one use-case call."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        found = services(request)
        actor = await admin.require_admin(found, *dpop_token(request))
        return await handler(request, found, actor)

    return guarded


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

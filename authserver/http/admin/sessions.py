"""/admin/users/{sub}/sessions and /admin/sessions/{sid}/revoke."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions.admin import sessions as admin_sessions
from authserver.http.admin import admin_only
from authserver.http.responses import no_content, no_store_json
from authserver.services import Services


@admin_only
async def user_sessions(request: Request, found: Services, actor: str) -> Response:
    return no_store_json(
        {"sessions": await admin_sessions.user_sessions(found, request.path_params["sub"])}
    )


@admin_only
async def revoke_session(request: Request, found: Services, actor: str) -> Response:
    await admin_sessions.revoke_session(found, actor, request.path_params["sid"])
    return no_content()

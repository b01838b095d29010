"""/admin/users/{sub}/sessions and /admin/sessions/{sid}/revoke."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import admin
from authserver.actions.admin import sessions as admin_sessions
from authserver.http.context import services
from authserver.http.forms import bearer_token
from authserver.http.responses import no_content, no_store_json


async def user_sessions(request: Request) -> Response:
    found = services(request)
    await admin.require_admin(found, bearer_token(request))
    return no_store_json(
        {"sessions": await admin_sessions.user_sessions(found, request.path_params["sub"])}
    )


async def revoke_session(request: Request) -> Response:
    found = services(request)
    actor = await admin.require_admin(found, bearer_token(request))
    await admin_sessions.revoke_session(found, actor, request.path_params["sid"])
    return no_content()

"""GET /sessions and DELETE /sessions/{sid}: a user's own sessions (their access token, as
Bearer or DPoP)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import my_sessions as sessions
from authserver.http.context import services
from authserver.http.forms import dpop_token
from authserver.http.responses import no_content, no_store_json


async def my_sessions(request: Request) -> Response:
    found = await sessions.my_sessions(services(request), *dpop_token(request))
    return no_store_json({"sessions": found})


async def end_my_session(request: Request) -> Response:
    token, presented = dpop_token(request)
    await sessions.end_my_session(services(request), token, request.path_params["sid"], presented)
    return no_content()

"""GET|POST /userinfo (OpenID Connect Core §5.3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import userinfo as identity
from authserver.http.context import services
from authserver.http.forms import dpop_token
from authserver.http.responses import no_store_json


async def userinfo(request: Request) -> Response:
    token, presented = dpop_token(request, "/userinfo")
    return no_store_json(await identity.userinfo(services(request), token, presented))
